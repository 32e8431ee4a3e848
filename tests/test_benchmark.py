"""`diffusers_spatial.benchmark` / `diffusers-spatial bench`: the four-way comparison on a tiny model, end to end.

The end-to-end run uses a tiny random SD built from configs and a random LoRA, generated and loaded through the same
code a user runs. Its detector is `ChecksumDetector`, a deterministic stand-in that "sees" the prompt's two objects in a
layout picked by a checksum of the pixels: its verdicts depend on the pixels, so they differ between images and
variants, TORE's calibration has real rates to act on, and the comparison has real changes to count. (The
embedded detector finds nothing in a tiny model's noise; `test_cli_bench_without_lora` and the demo test run it.)
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusers_spatial.benchmark import (
    BenchConfig,
    bench_command,
    compare_variants,
    format_summary,
    run_bench,
    select_grid_keys,
    split_suite,
)
from diffusers_spatial.cli import main as cli_main
from diffusers_spatial.generation import read_manifest
from diffusers_spatial.metric import read_results
from diffusers_spatial.suites import build_suite
from diffusers_spatial.tore import Tore
from diffusers_spatial.utils import make_tiny_lora, make_tiny_sd


class ChecksumDetector:
    """Open-vocabulary stand-in for a detector: it always finds the two queried objects, side by side or stacked, in
    one of four layouts picked by a checksum of the pixels. Its verdicts are a deterministic function of the image,
    so any change of pixels (another seed, the LoRA, a TORE rewrite) can change them."""

    name = "test-checksum"
    labels = None

    def __init__(self):
        self.images_seen = 0

    def detect(self, images, queries=None):
        self.images_seen += len(images)
        out = []
        for image, nouns in zip(images, queries):
            w, h = image.size
            side = min(w, h) / 4
            a, b = (w / 2 - 1.5 * side, h / 2 - side / 2), (w / 2 + 0.5 * side, h / 2 - side / 2)  # a left of b
            c, d = (w / 2 - side / 2, h / 2 - 1.5 * side), (w / 2 - side / 2, h / 2 + 0.5 * side)  # c above d
            layout = [(a, b), (b, a), (c, d), (d, c)][int(np.asarray(image, dtype=np.int64).sum()) % 4]
            out.append(
                [
                    {"label": noun, "score": 0.9, "box": [x, y, x + side, y + side]}
                    for noun, (x, y) in zip(nouns, layout)
                ]
            )
        return out


TINY = {"num_pairs": 1, "images_per_prompt": 1, "num_inference_steps": 2, "height": 32, "width": 32}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-models")
    pipe = make_tiny_sd(root / "tiny-sd")
    make_tiny_lora(pipe, root / "tiny-lora", rank=4, seed=3)
    return root


def tiny_config(models: Path, detector, **overrides) -> BenchConfig:
    settings = {
        "model": str(models / "tiny-sd"),
        "lora": str(models / "tiny-lora"),
        "batch_size": 8,
        "detector": detector,
        "protocols": "visor,geneval,esplora",
        "notice": "TINY RANDOM MODEL (test)",
        "grid_rows": 4,
        **TINY,
        **overrides,
    }
    return BenchConfig(**settings)


@pytest.fixture(scope="module")
def bench_run(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    detector = ChecksumDetector()
    report = run_bench(tiny_config(models, detector), out, progress=False)
    return out, report, detector


# ------------------------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_four_way_report(bench_run):
    out, report, _ = bench_run
    assert list(report["variants"]) == ["baseline", "tore", "lora", "lora_tore"]
    for name in ("report.md", "report.json", "comparison.png", "per_relation.png", "grid.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))

    markdown = (out / "report.md").read_text()
    assert markdown.index("TINY RANDOM MODEL (test)") < markdown.index("## Comparison")
    table = markdown.split("## Comparison")[1].split("\n\n")[1].splitlines()
    assert table[0].startswith("| variant | visor VISOR_uncond (%) | geneval accuracy | esplora accuracy |")
    assert [row.split("|")[1].strip() for row in table[2:]] == ["baseline", "+TORE", "+LoRA", "+LoRA+TORE"]
    assert "## Accuracy per relation (esplora)" in markdown
    assert report["calibration"]["method"] == "seed" and "another seed (1" in markdown

    # Each variant's headline figures are its own metric report's.
    for name, variant in report["variants"].items():
        own = json.loads((out / variant["folder"] / "eval" / "report.json").read_text())
        for protocol in ("visor", "geneval", "esplora"):
            figure = report["comparison"]["headline"][name][protocol]
            assert figure["value"] == own["summary"][protocol][figure["figure"]]
        per_relation = report["comparison"]["per_relation"][name]
        assert {r: {k: v for k, v in stats.items() if k != "interval"} for r, stats in per_relation.items()} == (
            own["protocols"]["esplora"]["per_relation"]
        )
        for stats in per_relation.values():  # a 95% interval around every rate
            assert stats["interval"][0] <= stats["rate"] <= stats["interval"][1]
    assert "TINY RANDOM MODEL (test)" in format_summary(report)


@pytest.mark.slow
def test_paired_counts_match_per_image_verdicts(bench_run):
    out, report, _ = bench_run

    def verdicts(folder):
        return {r["key"]: r["scores"]["esplora"]["correct"] for r in read_results(out / folder / "eval")}

    base = verdicts("baseline")
    assert len(base) == 8 and len(set(base.values())) > 1, "the stand-in detector should give mixed verdicts"
    changes = 0
    for name in ("tore", "lora", "lora_tore"):
        other = verdicts(name)
        paired = report["comparison"]["paired"][name]
        assert paired["fixed"] == sum(not base[k] and other[k] for k in base)
        assert paired["broken"] == sum(base[k] and not other[k] for k in base)
        assert paired["n"] == 8
        changes += paired["fixed"] + paired["broken"]
    assert changes, "some verdict should change between variants"

    # The LoRA changes the pixels (same seeds otherwise): its images differ from the baseline's.
    def pixels(variant, key):
        return np.asarray(Image.open(out / variant / "images" / key))

    assert not any(np.array_equal(pixels("baseline", k), pixels("lora", k)) for k in base)


@pytest.mark.slow
def test_tore_is_calibrated_on_held_out_images_and_applied(bench_run):
    out, report, _ = bench_run
    evaluation = read_manifest(out / "baseline")
    calibration = read_manifest(out / "calibration-baseline")
    assert {g.settings["seed"] for g in evaluation} == {0} and {g.settings["seed"] for g in calibration} == {1}
    assert {g.prompt_id for g in evaluation} == {g.prompt_id for g in calibration}
    assert not {g.seed for g in evaluation} & {g.seed for g in calibration}  # other noise for every image

    for model, variant in (("baseline", "tore"), ("lora", "lora_tore")):
        calibration_report = json.loads((out / f"calibration-{model}" / "eval" / "report.json").read_text())
        tore = Tore.from_pretrained(out / f"tore-{model}")
        assert tore == Tore.from_report(calibration_report, tau=0.0, min_count=10)
        generated = read_manifest(out / variant)
        assert [g.prompt_used for g in generated] == [tore.rewrite(g.prompt) for g in generated]
        rewritten = {g.prompt_id for g in generated if g.prompt_used != g.prompt}
        assert report["variants"][variant]["prompts_rewritten"] == len(rewritten)
        # The evaluation scores the prompt as written, whatever TORE asked the model for.
        assert {r["prompt"] for r in read_results(out / variant / "eval")} == {g.prompt for g in generated}
    assert any(report["variants"][v]["prompts_rewritten"] for v in ("tore", "lora_tore")), "TORE never rewrote"


@pytest.mark.slow
def test_plots_are_pngs(bench_run):
    out, _, _ = bench_run
    for name in ("comparison.png", "per_relation.png", "grid.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 400 and image.height > 300, name
    with Image.open(out / "grid.png") as grid:  # 4 rows x 4 variants
        assert grid.height > grid.width * 0.8


@pytest.mark.slow
def test_resume_does_no_extra_work(bench_run, models, monkeypatch):
    out, report, _ = bench_run

    def no_model(*args, **kwargs):
        raise AssertionError("a finished bench must not load the pipeline again")

    monkeypatch.setattr("diffusers_spatial.generation.load_generation_pipeline", no_model)
    # Generation rewrites its manifests at the end of every call (with the same content); results are appended.
    content = {p: p.read_text() for p in out.rglob("*.jsonl")}
    results = {p: p.stat().st_mtime_ns for p in out.rglob("results*.jsonl")}
    images = {p: p.stat().st_mtime_ns for p in out.rglob("*.png") if "images" in p.parts}
    detector = ChecksumDetector()
    again = run_bench(tiny_config(models, detector), out, progress=False)
    assert detector.images_seen == 0
    assert {p: p.read_text() for p in content} == content
    assert {p: p.stat().st_mtime_ns for p in results} == results and len(results) == 6
    assert {p: p.stat().st_mtime_ns for p in images} == images and len(images) == 6 * 8
    assert again == report


@pytest.mark.slow
def test_resume_after_a_lost_stage(bench_run, models, tmp_path):
    """Deleting one variant's results re-scores only that variant; its images are kept."""
    out, report, _ = bench_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for path in (copy / "lora" / "eval").glob("results*.jsonl"):
        path.unlink()
    detector = ChecksumDetector()
    again = run_bench(tiny_config(models, detector), copy, progress=False)
    assert detector.images_seen == 8
    assert again["comparison"] == report["comparison"]


@pytest.mark.slow
def test_a_given_tore_is_used_as_it_is(bench_run, models, tmp_path):
    out, _, _ = bench_run
    given = Tore.from_pretrained(out / "tore-baseline")
    config = tiny_config(models, ChecksumDetector(), lora=None, tore=str(out / "tore-baseline"))
    report = run_bench(config, tmp_path / "given", progress=False)
    assert list(report["variants"]) == ["baseline", "tore"]
    assert report["calibration"]["method"] == "given" and not report["calibration"]["stages"]
    assert not list(tmp_path.glob("given/calibration-*"))
    assert "was given" in (tmp_path / "given" / "report.md").read_text()
    generated = read_manifest(tmp_path / "given" / "tore")
    assert [g.prompt_used for g in generated] == [given.rewrite(g.prompt) for g in generated]


@pytest.mark.slow
def test_changed_settings_are_refused(bench_run, models):
    out, _, _ = bench_run
    with pytest.raises(ValueError, match="num_inference_steps"):
        run_bench(tiny_config(models, ChecksumDetector(), num_inference_steps=3), out, progress=False)


# ------------------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_bench_without_lora(models, tmp_path, capsys):
    """No --lora: baseline and +TORE only, with the embedded detector and the `facts` calibration split."""
    out = tmp_path / "cli"
    args = ["bench", "--model", str(models / "tiny-sd"), "--suite", "sr2d", "--num-pairs", "1"]
    args += ["--images-per-prompt", "1", "--steps", "2", "--height", "32", "--width", "32", "--batch-size", "8"]
    args += ["--protocol", "esplora", "--calibration", "facts", "--no-progress", "--out", str(out)]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "+TORE" in printed and "+LoRA" not in printed
    report = json.loads((out / "report.json").read_text())
    assert list(report["variants"]) == ["baseline", "tore"]
    assert report["calibration"]["method"] == "facts"
    evaluated = {json.loads(line)["fact_id"] for line in (out / "suite.jsonl").read_text().splitlines()}
    calibrated = {json.loads(line)["fact_id"] for line in (out / "calibration_suite.jsonl").read_text().splitlines()}
    assert evaluated and calibrated and not evaluated & calibrated
    assert report["command"].startswith(f"diffusers-spatial bench --model {models / 'tiny-sd'}")
    assert "--calibration facts" in report["command"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--calibration-seed", "0"], "calibrated on the very images"),
        (["--protocol", "visr"], "unknown protocol"),
        (["--tau", "2"], "tau must be in"),
        (["--lora", "no/such/lora/dir/x"], "neither an existing path nor a Hub id"),
        (["--dtype", "float16", "--device", "cpu"], "float16 does not run on the CPU"),
    ],
)
def test_cli_refuses_bad_input_before_any_work(tmp_path, extra, message, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as raised:
        cli_main(["bench", "--model", str(tmp_path), "--out", str(out), *extra])
    assert message in str(raised.value)
    assert not out.exists()


# ------------------------------------------------------------------------------------------------------------------
# Pure parts
# ------------------------------------------------------------------------------------------------------------------


def test_seed_split_uses_the_same_prompts_and_another_seed():
    split = split_suite(BenchConfig(model="m", num_pairs=2, seed=5))
    assert split.evaluation == split.calibration == build_suite("sr2d", num_pairs=2, seed=0)
    assert split.calibration_seed == 6 and split.method == "seed"


@pytest.mark.parametrize("suite", ["sr2d", "3d", "geneval_position", "heldout"])
def test_facts_split_holds_out_object_pairs(suite):
    split = split_suite(BenchConfig(model="m", suite=suite, num_pairs=3, calibration="facts"))
    # The evaluation prompts are the suite's own first pairs, whichever calibration is used.
    assert split.evaluation == build_suite(suite, num_pairs=3, seed=0)
    pairs = lambda prompts: {frozenset((p.subject, p.object)) for p in prompts}  # noqa: E731
    assert len(pairs(split.evaluation)) == 3 and len(pairs(split.calibration)) == 3
    assert not pairs(split.evaluation) & pairs(split.calibration)
    assert not {p.prompt_id for p in split.evaluation} & {p.prompt_id for p in split.calibration}


def test_facts_split_needs_pairs_left_over():
    with pytest.raises(ValueError, match="none is left for calibration='facts'"):
        split_suite(BenchConfig(model="m", suite="heldout", num_pairs=66, calibration="facts"))
    split = split_suite(BenchConfig(model="m", suite="heldout", num_pairs=None, calibration="facts"))
    assert len(split.evaluation) == len(split.calibration) == 33 * 12  # 66 pairs halved, 6 relations x 2 orders


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"suite": "sr3d"}, "unknown suite"),
        ({"num_pairs": 0}, "num_pairs must be an integer >= 1"),
        ({"height": 30}, "multiple of 8"),
        ({"calibration": "none"}, "calibration must be one of"),
        ({"lora_tore_calibration": "x"}, "lora_tore_calibration"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number"),
        ({"min_count": 0}, "min_count"),
        ({"dtype": "float8"}, "dtype must be one of"),
    ],
)
def test_config_refuses_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        BenchConfig(model="m", **overrides)


def test_compare_variants_counts_paired_changes():
    def report(accuracy, per_relation):
        return {
            "summary": {"esplora": {"accuracy": accuracy}, "visor": {"VISOR_uncond": 100 * accuracy}},
            "protocols": {"esplora": {"per_relation": per_relation}},
            "counts": {"images": 4},
        }

    left = {"left_of": {"n": 4, "correct": 1, "rate": 0.25}}
    verdicts = {
        "baseline": {"a": True, "b": False, "c": False, "d": None},
        "lora": {"a": False, "b": True, "c": True, "d": True},
    }
    table = compare_variants({"baseline": report(0.25, left), "lora": report(0.75, left)}, verdicts, "esplora")
    assert table["reference"] == "baseline"
    assert table["headline"]["lora"]["visor"] == {"figure": "VISOR_uncond", "value": 75.0}
    paired = table["paired"]
    assert paired["baseline"] == {
        "n": 3, "fixed": 0, "broken": 0, "both_right": 1, "both_wrong": 2, "delta": 0.0, "interval": [0.0, 0.0],
        "p_value": 1.0,
    }  # fmt: skip
    lora = paired["lora"]
    assert {k: lora[k] for k in ("n", "fixed", "broken", "both_right", "both_wrong")} == {
        "n": 3, "fixed": 2, "broken": 1, "both_right": 0, "both_wrong": 0,
    }  # fmt: skip
    assert lora["delta"] == 1 / 3 and lora["interval"][0] < 0 < 1 / 3 < lora["interval"][1] and lora["p_value"] == 1.0
    assert table["accuracy"]["lora"] == {
        "correct": 3,
        "n": 4,
        "rate": 0.75,
        "interval": pytest.approx([0.301, 0.954], abs=1e-3),
    }
    assert {k: v for k, v in table["per_relation"]["lora"]["left_of"].items() if k != "interval"} == left["left_of"]


def test_grid_selection_prefers_disagreements_then_mixes_outcomes():
    verdicts = {
        "baseline": {"s1": True, "s2": True, "f1": False, "f2": False, "d1": False, "u": None},
        "tore": {"s1": True, "s2": True, "f1": False, "f2": False, "d1": True, "u": None},
    }
    assert select_grid_keys(verdicts, max_rows=5) == ["d1", "s1", "f1", "s2", "f2"]
    assert select_grid_keys(verdicts, max_rows=10) == ["d1", "s1", "f1", "s2", "f2", "u"]


def test_bench_command_round_trips_through_the_cli_parser(monkeypatch):
    from diffusers_spatial.cli import build_parser
    from diffusers_spatial.commands import bench as bench_cli

    monkeypatch.setattr(bench_cli, "check_source", lambda value, flag: None)  # the round trip is about the flags
    config = BenchConfig(
        model="m",
        lora="l",
        suite="3d",
        num_pairs=None,
        calibration="facts",
        calibration_seed=7,
        tau=0.1,
        protocols="esplora,visor",
        primary_protocol="visor",
        height=64,
        width=64,
        dtype="bfloat16",
    )
    args = build_parser().parse_args(shlex.split(bench_command(config, "runs/x"))[1:])
    assert args.out == "runs/x"
    assert bench_cli.config_from_args(args) == config


@pytest.mark.slow
def test_two_processes_share_the_stages_and_one_writes_the_report(models, tmp_path):
    """`torchrun --nproc_per_node 2` (CPU, gloo): each stage is split between the processes, the report is whole."""
    out = tmp_path / "ddp"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(port), "-m", "diffusers_spatial.cli"]
    command += ["bench", "--model", str(models / "tiny-sd"), "--num-pairs", "1", "--images-per-prompt", "1"]
    command += ["--steps", "2", "--height", "32", "--width", "32", "--protocol", "esplora", "--no-progress"]
    command += ["--out", str(out)]
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert process.stdout.count("+TORE") == 1, "only the main process prints the summary"
    report = json.loads((out / "report.json").read_text())
    assert report["variants"]["baseline"]["counts"]["images"] == 8
    assert len(read_manifest(out / "baseline")) == 8 and len(read_results(out / "tore" / "eval")) == 8
    assert not list(out.rglob("generations-*-of-*.jsonl"))  # the per-process manifests were merged
