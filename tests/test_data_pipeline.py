"""End-to-end curation with the embedded detector: resume equivalence, bad input accounting, synthetic round."""

import json
import signal
import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from diffusers_spatial.data import CurationConfig, curate, make_perception, synthetic_round, write_webdataset_shard
from diffusers_spatial.data.sample import sample_rows
from diffusers_spatial.data.schema import SHARD_REASONS, SKIP_REASONS, SPATIAL_FEATURES
from diffusers_spatial.data.writer import read_manifest

SHARDS, ROWS_PER_SHARD = 4, 3
CONFIG = CurationConfig(batch_size=2)


@pytest.fixture(scope="module")
def perception():
    return make_perception(CONFIG)


@pytest.fixture(scope="module")
def shard_input(tmp_path_factory):
    """4 img2dataset shards of real-photo collages and darknet photos (3 rows each)."""
    folder = tmp_path_factory.mktemp("input")
    rows = [r for r in sample_rows() if r["image"] is not None and r["caption"]][: SHARDS * ROWS_PER_SHARD]
    for i in range(SHARDS):
        write_webdataset_shard(folder, f"{i:05d}", rows[i * ROWS_PER_SHARD : (i + 1) * ROWS_PER_SHARD])
    return folder


@pytest.fixture(scope="module")
def reference(shard_input, perception, tmp_path_factory):
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    stats = curate(shard_input, out, CONFIG, perception=perception, progress=False)
    return out, stats


def _rows(folder):
    """Every written row (image bytes included), by key, read through the manifest's file list."""
    rows = {}
    for entry in read_manifest(folder).values():
        for file in entry["files"]:
            for row in pq.read_table(folder / file["path"]).to_pylist():
                assert row["key"] not in rows, f"duplicated row {row['key']}"
                rows[row["key"]] = row
    return rows


def _data_files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in (folder / "data").rglob("*") if p.is_file())


def _assert_same_output(folder, reference_folder):
    assert _data_files(folder) == _data_files(reference_folder)
    assert _rows(folder) == _rows(reference_folder)
    assert json.loads((folder / ".curation" / "stats.json").read_text()) == json.loads(
        (reference_folder / ".curation" / "stats.json").read_text()
    )


def test_reference_run_accounts_for_every_row(reference):
    out, stats = reference
    assert stats["shards"] == SHARDS and stats["rows_in"] == SHARDS * ROWS_PER_SHARD
    assert stats["rows_out"] > 0
    assert stats["rows_in"] == stats["rows_out"] + sum(stats["skipped"].values())
    assert set(stats["skipped"]) == set(SKIP_REASONS) and set(stats["shard_issues"]) == set(SHARD_REASONS)
    assert stats["rows_out"] == len(_rows(out)) == sum(stats["rows_by_config"].values())
    assert (out / ".curation" / "plots" / "relation_balance.png").stat().st_size > 0
    assert (out / "README.md").read_text().startswith("---\n")


def test_rerunning_a_finished_run_changes_nothing(reference, shard_input, perception, tmp_path):
    out, _ = reference
    before = {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*.parquet")}
    curate(shard_input, out, CONFIG, perception=perception, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*.parquet")} == before


def test_injected_interruption_mid_shard_then_resume_gives_the_same_rows(reference, shard_input, perception, tmp_path):
    calls = {"n": 0}

    class Interrupting:
        """The real perception, interrupted on its 4th call (in the second shard, after a batch was written)."""

        def run(self, images, prompts):
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt
            return perception.run(images, prompts)

    with pytest.raises(KeyboardInterrupt):
        curate(shard_input, tmp_path, CONFIG, perception=Interrupting(), progress=False)
    done = read_manifest(tmp_path)
    assert 1 <= len(done) < SHARDS
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # the aborted shard left nothing
    curate(shard_input, tmp_path, CONFIG, perception=perception, progress=False)
    _assert_same_output(tmp_path, reference[0])


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from diffusers_spatial.data import CurationConfig, curate, make_perception

    mode, source, out = sys.argv[1:]
    config = CurationConfig(batch_size=2)
    perception = make_perception(config)
    real_run, calls = perception.run, []

    def run(images, prompts):
        calls.append(1)
        if mode == "mid-shard" and len(calls) == 4:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup: the shard's temporary files stay behind
        return real_run(images, prompts)

    def after_shard(entry):
        if mode == "after-first-shard":
            os.kill(os.getpid(), signal.SIGKILL)

    perception.run = run
    curate(source, out, config, perception=perception, progress=False, on_shard_done=after_shard)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["after-first-shard", "mid-shard"])
def test_killed_process_then_resume_gives_the_same_rows(mode, reference, shard_input, perception, tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(_KILLER)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(script), mode, str(shard_input), str(out)], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    done = read_manifest(out)
    assert 1 <= len(done) < SHARDS
    if mode == "mid-shard":
        assert [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # killed inside a shard
    curate(shard_input, out, CONFIG, perception=perception, progress=False)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    _assert_same_output(out, reference[0])


def test_resume_with_other_settings_is_refused(reference, shard_input, perception):
    out, _ = reference
    with pytest.raises(ValueError, match=r"min_confidence: was 0.3, now 0.5"):
        curate(shard_input, out, CurationConfig(min_confidence=0.5), perception=perception, progress=False)
    # batch_size changes speed, not rows: allowed
    curate(shard_input, out, CurationConfig(batch_size=5), perception=perception, progress=False)


def test_bad_input_is_counted_per_reason_never_fatal(tmp_path, perception):
    good = next(
        r for r in sample_rows() if r["image"] is not None and r.get("depth") is None and "studio" in r["caption"]
    )
    source = tmp_path / "in"
    rows = [
        dict(good),
        {**good, "caption": ""},
        {**good, "caption": "un chien à gauche d'un chat"},
        {**good, "caption": "a dog left of a cat above a tree"},
        {**good, "image": good["image"][:200]},
        {**good, "image": b"not an image at all"},
        {**good, "image": None},
        {**good, "caption": "a dog in front of a cat"},
    ]
    write_webdataset_shard(source, "00000", rows)
    write_webdataset_shard(source, "00001", rows[:4])
    cut = source / "00001.tar"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    write_webdataset_shard(source, "00002", [])
    write_webdataset_shard(source, "00003", rows[:2])
    (source / "00003.parquet").write_bytes(b"PAR1 truncated")
    write_webdataset_shard(source, "00004", rows[:2])
    (source / "00004.tar").unlink()

    stats = curate(source, tmp_path / "out", CONFIG, perception=perception, progress=False)
    skipped = stats["skipped"]
    assert skipped["empty_caption"] >= 1 and skipped["non_english"] >= 1 and skipped["several_relations"] >= 1
    assert skipped["corrupt_image"] == 2 and skipped["no_depth_for_3d"] >= 1
    assert skipped["missing_image"] == 1 + 2  # the failed download + the two rows of the shard without tar
    assert skipped["truncated_tar"] >= 1
    assert stats["shard_issues"] == {"corrupt_parquet": 1, "empty_shard": 1, "missing_tar": 1, "truncated_tar": 1}
    assert stats["rows_in"] == stats["rows_out"] + sum(skipped.values())
    assert stats["shards"] == 5


@pytest.mark.slow
def test_synthetic_round_keeps_verified_generations(tmp_path):
    """A real tiny diffusers pipeline generates; a deterministic stand-in detector judges its noise images."""
    from PIL import Image

    from diffusers_spatial.perception import Perception
    from diffusers_spatial.utils import make_tiny_sd

    class BrightSideDetector:
        """Puts a dog on the brighter half of the image and a cat on the other (a pure function of the pixels)."""

        name, labels = "bright-side", ("dog", "cat")

        def detect(self, images, queries=None):
            out = []
            for image in images:
                pixels = np.asarray(image.convert("L"), dtype=np.float32)
                w, h = image.size
                left, right = [0, 0, w * 0.4, h], [w * 0.6, 0, w, h]
                dog_left = pixels[:, : w // 2].mean() >= pixels[:, w // 2 :].mean()
                dog, cat = (left, right) if dog_left else (right, left)
                out.append([{"label": "dog", "score": 0.9, "box": dog}, {"label": "cat", "score": 0.8, "box": cat}])
            return out

    pipe = make_tiny_sd()
    pipe.set_progress_bar_config(disable=True)
    perception = Perception(detector=BrightSideDetector(), progress=False)
    prompts = ["a dog to the left of a cat", "a cat to the left of a dog", "a dog and a cat"]
    kwargs = {"num_inference_steps": 2, "height": 64, "width": 64}
    stats = synthetic_round(
        pipe,
        prompts,
        tmp_path,
        seeds=range(4),
        perception=perception,
        pipeline_kwargs=kwargs,
        shard_size=5,
        generation_batch_size=3,
        generator_name="tiny-sd",
        progress=False,
    )
    assert stats["rows_in"] == 12 and stats["skipped"]["no_relation"] == 4
    assert stats["rows_out"] + stats["skipped"]["relation_false"] == 8 and 0 < stats["rows_out"] < 8
    ds = datasets.load_dataset(str(tmp_path), "synthetic", split="train")
    assert len(ds) == stats["rows_out"]
    for row in ds:  # each kept image shows what its prompt says, by the detector's own rule
        ((dog, _),) = [(d["box"], d) for d in BrightSideDetector().detect([row["image"]])[0] if d["label"] == "dog"]
        assert (dog[0] == 0) == (row["subject"] == "dog")
    assert ds.features == SPATIAL_FEATURES
    assert set(ds["source"]) == {"synthetic"} and set(ds["prompt_origin"]) == {"generation"}
    assert all(o.startswith("tiny-sd#seed=") for o in ds["origin"])
    # An image depends on (prompt, seed) only: regenerate one alone and compare pixels.
    row = ds[0]
    seed = int(row["origin"].split("=")[1])
    import torch

    alone = pipe(prompt=[row["prompt"]], generator=[torch.Generator().manual_seed(seed)], **kwargs).images[0]
    # CPU kernels round differently for a batch of 3 and of 1: one 8-bit level on a few pixels, nothing more.
    difference = np.abs(np.asarray(alone).astype(int) - np.asarray(row["image"].convert("RGB")).astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.001, (difference.max(), (difference > 0).mean())
    assert isinstance(row["image"], Image.Image)
