"""The `evaluate` module: loaded by path, and by its bare name offline from any folder (module-cache registration)."""

import importlib
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import evaluate
import evaluate.config
import pytest
from evaluate.loading import files_to_hash

from diffusers_spatial.metric import METRIC_NAME, module_path, register_evaluate_module
from diffusers_spatial.metric import _registration as registration

PREDICTIONS = [
    {
        "detections": [
            {"label": "dog", "score": 0.9, "box": [10, 40, 60, 90]},
            {"label": "bench", "score": 0.8, "box": [120, 30, 200, 100]},
        ],
        "image_size": [256, 128],
    }
]
REFERENCES = ["a dog to the left of a bench"]

# Runs in a fresh interpreter, in an empty folder, offline, with a fresh HF_HOME.
LOAD_BY_NAME = f"""
import json, sys
PREAMBLE
import evaluate
metric = evaluate.load("spatial_consistency")
results = metric.compute(predictions={PREDICTIONS!r}, references={REFERENCES!r}, protocols="visor")
print("RESULT", json.dumps(results["report"]["summary"]["visor"]))
"""


def _run_offline(tmp_path, preamble):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}
    env.pop("HF_MODULES_CACHE", None)
    script = LOAD_BY_NAME.replace("PREAMBLE", preamble)
    out = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :]), out.stderr


def test_module_path_loads_with_evaluate():
    assert (Path(module_path()) / f"{METRIC_NAME}.py").is_file()
    metric = evaluate.load(module_path())
    results = metric.compute(predictions=PREDICTIONS, references=REFERENCES, protocols="visor")
    assert results["visor_uncond"] == results["report"]["summary"]["visor"]["VISOR_uncond"] == 100.0


@pytest.mark.slow
def test_bare_name_offline_from_an_empty_folder_without_the_hub_notice(tmp_path):
    figures, stderr = _run_offline(tmp_path, "import diffusers_spatial")
    assert figures["OA"] == 100.0 and figures["VISOR_uncond"] == 100.0
    assert "Hugging Face Hub" not in stderr and "latest cached version" not in stderr


def test_nothing_runs_at_interpreter_start():
    site_packages = {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    hooks = [p for folder in site_packages for p in folder.glob("*.pth") if "diffusers_spatial_metric" in p.name]
    assert not hooks and not list(Path(registration.__file__).parents[1].rglob("*.pth"))


# ---------------------------------------------------------------------------------------------------------------
# The registration itself
# ---------------------------------------------------------------------------------------------------------------


def test_registration_lays_out_the_cache_entry_as_evaluate_does(tmp_path):
    target = register_evaluate_module(tmp_path)
    source = Path(module_path()) / f"{METRIC_NAME}.py"
    assert target.parent.name == files_to_hash([str(source)])  # the hash evaluate itself would use
    assert target.parent.parent == tmp_path / "evaluate_modules" / "metrics" / "evaluate-metric--spatial_consistency"
    assert target.read_bytes() == source.read_bytes()
    for folder in (tmp_path, target.parents[2], target.parents[1], target.parent):
        assert (folder / "__init__.py").is_file()
    meta = json.loads(target.with_suffix(".json").read_text())
    assert meta == {"original file path": str(source), "local file path": str(target)}
    assert register_evaluate_module(tmp_path) == target  # idempotent
    assert {p.name for p in target.parents[1].iterdir()} == {"__init__.py", target.parent.name}


def test_registration_makes_this_version_the_newest(tmp_path):
    entry = registration.cache_entry_dir(tmp_path)
    other = entry / ("f" * 64)
    other.mkdir(parents=True)
    (other / f"{METRIC_NAME}.py").write_text("# another version\n")
    future = time.time() + 3600
    os.utime(other / f"{METRIC_NAME}.py", (future, future))
    target = register_evaluate_module(tmp_path)
    assert target.stat().st_mtime > future  # evaluate takes the newest hash


def test_registration_can_be_switched_off_and_never_breaks_start_up(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(OSError):
        register_evaluate_module(blocked)
    assert register_evaluate_module(blocked, quiet=True) is None
    monkeypatch.setenv(registration.DISABLE_ENV, "1")
    assert register_evaluate_module(tmp_path / "cache") is None
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HF_HOME": "/tmp/some-hf-home"},
        {"XDG_CACHE_HOME": "/tmp/xdg"},
        {"HF_HOME": "~/hf", "HF_MODULES_CACHE": "/tmp/modules"},
    ],
)
def test_modules_cache_location_matches_evaluate(monkeypatch, env):
    for name in ("HF_HOME", "XDG_CACHE_HOME", "HF_MODULES_CACHE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        importlib.reload(evaluate.config)
        assert registration.hf_modules_cache() == Path(evaluate.config.HF_MODULES_CACHE)
    finally:
        monkeypatch.undo()
        importlib.reload(evaluate.config)
