"""End to end: `accelerate launch examples/train_esplora.py` (and the SDXL script) on tiny models built from configs.

Each run is a real subprocess on the CPU: the same script, arguments and loading code a user with a GPU runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training_helpers import (
    BIN,
    SD_SCRIPT,
    SDXL_SCRIPT,
    launch_command,
    make_spatial_imagefolder,
    run_training,
    tail,
    training_env,
)

from diffusers_spatial.utils import make_tiny_sd, make_tiny_sdxl

pytestmark = pytest.mark.slow

LORA = "pytorch_lora_weights.safetensors"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("esplora")
    make_tiny_sd(root / "tiny-sd")
    make_spatial_imagefolder(root / "data", n=8)
    return root


def base_args(workspace: Path, output_dir: str, *extra: str, steps: int = 6) -> list[str]:
    return [
        "--pretrained_model_name_or_path",
        str(workspace / "tiny-sd"),
        "--train_data_dir",
        str(workspace / "data"),
        "--resolution",
        "32",
        "--train_batch_size",
        "2",
        "--max_train_steps",
        str(steps),
        "--checkpointing_steps",
        "2",
        "--learning_rate",
        "1e-3",
        "--seed",
        "0",
        "--report_to",
        "none",
        "--output_dir",
        str(workspace / output_dir),
        *extra,
    ]


# Text-encoder LoRA and spatially safe flips on; the 8-row dataset gives 4 batches per epoch, so the 6 steps cross
# an epoch boundary and checkpoint-2 is mid-epoch.
TRAINING = ("--train_text_encoder", "--random_flip", "--center_crop")


@pytest.fixture(scope="module")
def full_run(workspace):
    args = base_args(
        workspace,
        "full",
        *TRAINING,
        "--checkpoints_total_limit",
        "2",
        "--validation_suite",
        "sr2d",
        "--validation_num_pairs",
        "1",
        "--num_validation_images",
        "1",
        "--validation_inference_steps",
        "2",
    )
    process = run_training(SD_SCRIPT, args, workspace)
    assert process.returncode == 0, tail(process)
    return workspace / "full", process


def test_outputs_and_checkpoints(full_run):
    out, _ = full_run
    assert (out / LORA).is_file()
    # --checkpoints_total_limit 2 keeps the newest two of checkpoint-2/4/6.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    checkpoint = out / "checkpoint-6"
    for name in (LORA, "optimizer.bin", "scheduler.bin", "random_states_0.pkl", "training_state.json"):
        assert (checkpoint / name).is_file(), name
    assert json.loads((checkpoint / "training_state.json").read_text())["global_step"] == 6
    # The checkpoint's LoRA is the final one (saved at the same step).
    final, saved = load_file(out / LORA), load_file(checkpoint / LORA)
    assert final.keys() == saved.keys()
    assert all(torch.equal(final[k], saved[k]) for k in final)
    assert any(k.startswith("unet.") for k in final) and any(k.startswith("text_encoder.") for k in final)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_step"] == 6 and len(summary["losses"]) == 6
    assert summary["samples_per_second"] > 0 and summary["peak_rss_mib"] > 0


def test_lora_loads_into_plain_diffusers_and_changes_output(full_run, workspace):
    from diffusers import StableDiffusionPipeline

    out, _ = full_run
    pipe = StableDiffusionPipeline.from_pretrained(workspace / "tiny-sd", safety_checker=None)
    pipe.set_progress_bar_config(disable=True)

    def generate():
        generator = torch.Generator().manual_seed(0)
        kwargs = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np", "generator": generator}
        return pipe("a dog to the left of a cat", **kwargs).images

    before = generate()
    pipe.load_lora_weights(out)  # the user's call: plain diffusers, default weight name
    after = generate()
    assert abs(after - before).max() > 1e-4
    pipe.unload_lora_weights()
    assert abs(generate() - before).max() < 1e-5

    # diffusers-spatial's pipeline reads the same file (fused into the weights by default).
    pipelines = pytest.importorskip("diffusers_spatial.pipelines")
    spatial = pipelines.SpatialLoRAPipeline.from_pretrained(workspace / "tiny-sd", spatial_lora=out)
    spatial.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    kwargs = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np", "generator": generator}
    assert abs(spatial("a dog to the left of a cat", **kwargs).images - after).max() < 1e-3


def test_validation_is_scored_and_carded(full_run):
    out, process = full_run
    record = json.loads((out / "validation" / "test-000006.json").read_text())
    assert len(record["prompts"]) == 8  # sr2d, 1 pair: 4 relations x 2 object orders
    metrics = record["metrics"]
    assert {"accuracy", "objects_found", "coverage"} <= metrics.keys()
    assert {f"accuracy/{r}" for r in ("left_of", "right_of", "above", "below")} <= metrics.keys()
    assert all(v["protocol"] == "esplora" for v in record["verdicts"])
    assert (out / "validation" / "test-000006.png").is_file()
    card = (out / "README.md").read_text()
    for text in ("lora", "esplora", "Spatial accuracy", "accuracy/left_of", "image_0.png", "load_lora_weights"):
        assert text in card, text
    assert (out / "image_0.png").is_file()
    assert "Relation-balanced sampling" in process.stdout


def test_resume_after_kill_matches_uninterrupted_run(full_run, workspace):
    """Kill a run (SIGKILL) once checkpoint-2 exists, resume with `latest`: the same LoRA as the full run."""
    args = base_args(workspace, "killed", *TRAINING)
    killed = workspace / "killed"
    with subprocess.Popen(
        launch_command(SD_SCRIPT, args),
        env=training_env(workspace),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as process:
        deadline = time.monotonic() + 600
        while not (killed / "checkpoint-2").is_dir():
            assert process.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (killed / LORA).exists(), "the run finished before it was killed; the test proves nothing"

    resumed = run_training(SD_SCRIPT, [*args, "--resume_from_checkpoint", "latest"], workspace)
    assert resumed.returncode == 0, tail(resumed)
    assert "Resuming from checkpoint" in resumed.stdout
    expected, got = load_file(workspace / "full" / LORA), load_file(killed / LORA)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_cached_latents_follow_the_same_loss_curve(full_run, workspace):
    args = base_args(workspace, "cached", *TRAINING, "--cache_latents", "--checkpointing_steps", "100")
    process = run_training(SD_SCRIPT, args, workspace)
    assert process.returncode == 0, tail(process)
    assert "Latent cache:" in process.stdout
    uncached = json.loads((workspace / "full" / "training_summary.json").read_text())["losses"]
    cached = json.loads((workspace / "cached" / "training_summary.json").read_text())["losses"]
    torch.testing.assert_close(torch.tensor(cached), torch.tensor(uncached), rtol=1e-4, atol=1e-6)


def test_nan_loss_stops_with_message_and_checkpoint(workspace):
    # A learning rate of 1e30 makes the LoRA's output overflow after the first update: a real divergence.
    args = base_args(
        workspace, "nan", "--learning_rate", "1e30", "--checkpointing_steps", "100", "--cache_text_embeddings"
    )
    process = run_training(SD_SCRIPT, args, workspace)
    assert process.returncode != 0
    assert (
        "Training stopped: the loss is nan" in process.stdout or "Training stopped: the loss is inf" in process.stdout
    )
    checkpoints = sorted((workspace / "nan").glob("checkpoint-*"))
    assert len(checkpoints) == 1, tail(process)
    assert str(checkpoints[0]) in process.stdout
    weights = load_file(checkpoints[0] / LORA)
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (workspace / "nan" / LORA).exists()


def test_bad_datasets_fail_before_training(workspace, tmp_path):
    missing = run_training(SD_SCRIPT, [*base_args(workspace, "bad1"), "--caption_column", "text"], workspace)
    assert missing.returncode != 0
    assert "--caption_column 'text' is not a column of the dataset" in missing.stdout, tail(missing)
    assert "prompt" in missing.stdout  # the columns that do exist are listed

    data = make_spatial_imagefolder(tmp_path / "broken", n=4)
    (data / "001.png").write_bytes(b"not a png")
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    rows[2]["prompt"] = "   "
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = base_args(workspace, "bad2")
    args[args.index("--train_data_dir") + 1] = str(data)
    broken = run_training(SD_SCRIPT, args, workspace)
    assert broken.returncode != 0
    assert "2 problem(s) with the training data" in broken.stdout, tail(broken)
    assert "row 1, file" in broken.stdout and "001.png" in broken.stdout and "unreadable image" in broken.stdout
    assert "row 2: empty caption in column 'prompt'" in broken.stdout
    assert "Running training" not in broken.stdout
    assert not list((workspace / "bad2").glob("checkpoint-*"))


def test_sdxl_end_to_end_with_text_encoder_lora(workspace):
    from diffusers import StableDiffusionXLPipeline

    make_tiny_sdxl(workspace / "tiny-sdxl")
    args = base_args(
        workspace,
        "sdxl",
        "--train_text_encoder",
        "--random_flip",
        "--cache_latents",
        "--validation_prompt",
        "a dog to the left of a cat",
        "--num_validation_images",
        "1",
        "--validation_inference_steps",
        "2",
        "--validation_scoring",
        "off",
        steps=4,
    )
    args[args.index("--pretrained_model_name_or_path") + 1] = str(workspace / "tiny-sdxl")
    process = run_training(SDXL_SCRIPT, args, workspace)
    assert process.returncode == 0, tail(process)
    out = workspace / "sdxl"
    keys = load_file(out / LORA).keys()
    assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder", "text_encoder_2"}
    assert (out / "checkpoint-4" / LORA).is_file() and (out / "README.md").is_file()

    pipe = StableDiffusionXLPipeline.from_pretrained(workspace / "tiny-sdxl")
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}
    before = pipe("a dog to the left of a cat", generator=torch.Generator().manual_seed(0), **kwargs).images
    pipe.load_lora_weights(out)
    after = pipe("a dog to the left of a cat", generator=torch.Generator().manual_seed(0), **kwargs).images
    assert abs(after - before).max() > 1e-4


def test_two_cpu_processes_with_text_encoder_lora_and_latent_cache(workspace):
    """Real data parallelism on the CPU (gloo): torchrun, as platform-notes prescribe; the cache built in shares."""
    args = base_args(workspace, "ddp", "--cache_latents", "--train_text_encoder", steps=4)
    env = training_env(workspace) | {"ACCELERATE_USE_CPU": "1"}
    process = subprocess.run(
        [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()), str(SD_SCRIPT), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, tail(process)
    assert "Num processes: 2" in process.stdout
    out = workspace / "ddp"
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_step"] == 4
    assert summary["samples_seen"] == 4 * 2 * 2  # steps x batch size x processes
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in (out / "checkpoint-4").iterdir()}
    weights = load_file(out / LORA)
    assert any(k.startswith("text_encoder.") for k in weights)
    assert all(torch.isfinite(w).all() for w in weights.values())
