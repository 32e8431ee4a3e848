"""`diffusers-spatial demo`, the README's first command: the whole loop offline on a tiny random model, resumable.

The sample dataset is built from real photos (scikit-image and Debian's darknet package: `make system-deps`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_docs_quickstart import check_flags

from diffusers_spatial.cli import main as cli_main
from diffusers_spatial.commands import demo
from diffusers_spatial.metric import read_results
from diffusers_spatial.photos import PhotoUnavailableError, photo_path


def _photos_installed() -> bool:
    try:
        photo_path("dog")
    except PhotoUnavailableError:
        return False
    return True


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The command a user types, as a subprocess: `diffusers-spatial demo --out OUT`."""
    if not _photos_installed():
        pytest.skip("the darknet photos of the sample dataset are not installed (make system-deps)")
    out = tmp_path_factory.mktemp("demo") / "out"
    command = [sys.executable, "-m", "diffusers_spatial.cli", "demo", "--out", str(out), "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return out, process.stdout


@pytest.mark.slow
def test_demo_runs_the_whole_loop(demo_run):
    out, printed = demo_run
    assert (out / "dataset" / "stats.json").is_file()
    assert (out / "tiny-sd" / "model_index.json").is_file()
    assert (out / "esplora" / "pytorch_lora_weights.safetensors").is_file()
    report = json.loads((out / "bench" / "report.json").read_text())
    assert list(report["variants"]) == ["baseline", "tore", "lora", "lora_tore"]
    assert report["settings"]["lora"] == str(out / "esplora") and report["settings"]["detector"] == "embedded"
    for name in ("report.md", "comparison.png", "per_relation.png", "grid.png"):
        assert (out / "bench" / name).is_file(), name
    # Every variant scored every image with the embedded detector (a tiny model's noise shows no objects).
    for variant in report["variants"].values():
        assert variant["counts"]["images"] == 16
    # The trained LoRA changes what the model draws from the same noise.
    baseline, lora = out / "bench" / "baseline" / "images", out / "bench" / "lora" / "images"
    names = sorted(p.name for p in baseline.glob("*.png"))
    assert len(names) == 16
    assert not any(
        np.array_equal(np.asarray(Image.open(baseline / n)), np.asarray(Image.open(lora / n))) for n in names
    )


@pytest.mark.slow
def test_demo_says_it_is_a_tiny_random_model_everywhere(demo_run):
    out, printed = demo_run
    notice = demo.TINY_MODEL_NOTICE
    assert "TINY RANDOM MODEL" in notice and "meaningless" in notice
    markdown = (out / "bench" / "report.md").read_text()
    assert markdown.splitlines()[2] == f"> **{notice}**"  # right under the title
    assert json.loads((out / "bench" / "report.json").read_text())["notice"] == notice
    for variant in ("baseline", "tore", "lora", "lora_tore", "calibration-baseline", "calibration-lora"):
        assert (out / "bench" / variant / "eval" / "report.md").read_text().startswith(f"> **{notice}**")
    assert printed.count(notice) >= 2  # before the table and after the tiny model's last figure
    tiny_part, _, real_part = printed.partition("[demo] 5/5 the metric on REAL photos")
    assert tiny_part.rstrip().endswith(notice) and real_part  # real-photo figures come after, apart
    assert "variant" in printed and "+LoRA+TORE" in printed


@pytest.mark.slow
def test_demo_shows_the_real_run(demo_run):
    out, printed = demo_run
    real = "diffusers-spatial bench --model stable-diffusion-v1-5/stable-diffusion-v1-5 --lora esplora-sd15"
    train = "accelerate launch --mixed_precision fp16 examples/train_esplora.py --pretrained_model_name_or_path "
    train += "stable-diffusion-v1-5/stable-diffusion-v1-5"
    markdown = (out / "bench" / "report.md").read_text()
    for text in (printed, markdown):
        assert real in text and train in text
        assert "--suite sr2d --num-pairs 50 --images-per-prompt 4" in text and "--dtype float16" in text
    # Both commands parse with the parsers that will read them (the bench CLI, the training script).
    shown = [line for line in printed.splitlines() if line.startswith((real, train))]
    assert len(shown) == 2
    for line in shown:
        check_flags(shlex.split(line))


@pytest.mark.slow
def test_demo_resumes_without_redoing_anything(demo_run, capsys):
    out, _ = demo_run
    log = out / "esplora" / "train.log"
    stamps = {p: p.stat().st_mtime_ns for p in [log, *out.glob("bench/*/eval/results*.jsonl")]}
    assert len(stamps) == 7
    assert cli_main(["demo", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "1/5 sample dataset: already built" in printed
    assert "2/5 tiny random model: already in" in printed
    assert "3/5 ESPLoRA: already trained" in printed
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(read_results(out / "bench" / "lora_tore" / "eval")) == 16


def test_missing_training_script_is_skipped_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "training_script", lambda: tmp_path / "examples" / "train_esplora.py")
    args = cli_args(tmp_path)
    assert demo._train_lora(tmp_path / "tiny-sd", tmp_path / "dataset", tmp_path / "esplora", args) is None
    printed = capsys.readouterr().out
    assert "SKIPPED" in printed and "installed from a wheel" in printed and "without a LoRA" in printed


def test_training_script_is_found_in_the_checkout():
    assert demo.training_script().is_file()


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="is not a folder"):
        cli_main(["demo", "--out", str(tmp_path / "file")])


def cli_args(tmp_path):
    from diffusers_spatial.cli import build_parser

    return build_parser().parse_args(["demo", "--out", str(tmp_path)])
