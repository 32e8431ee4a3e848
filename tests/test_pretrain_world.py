"""examples/pretrain_world.py: the three stages end to end (a few steps each), the output loads as an SD pipeline,
and a resumed UNet stage ends with exactly the weights of an uninterrupted one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel

from diffusers_spatial.world import WorldConfig

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "pretrain_world.py"
TINY = [
    "--text_encoder_steps", "3", "--text_encoder_batch_size", "8",
    "--vae_steps", "2", "--vae_batch_size", "4",
    "--train_batch_size", "4", "--checkpointing_steps", "2",
    "--eval_steps", "2", "--eval_num_pairs", "1", "--eval_inference_steps", "2",
    "--seed", "0",
]  # fmt: skip


def pretrain(output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--output_dir", str(output_dir), *TINY, *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return process


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "base"
    pretrain(out, "--max_train_steps", "4")
    return out


@pytest.mark.slow
def test_every_stage_runs_and_the_output_is_a_diffusers_pipeline(pretrained):
    for part in ("model_index.json", "text_encoder", "tokenizer", "vae", "unet", "scheduler", "README.md"):
        assert (pretrained / part).exists(), part
    assert WorldConfig.load(pretrained) == WorldConfig()
    pipe = StableDiffusionPipeline.from_pretrained(pretrained, use_safetensors=True)
    assert pipe.vae.config.scaling_factor != 0.18215  # set from the world's latents
    image = pipe("a red circle to the left of a blue square", num_inference_steps=2).images[0]
    assert image.size == (32, 32)
    curve = [json.loads(line) for line in (pretrained / "learning_curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [2, 4]
    assert {"accuracy", "objects_found", "accuracy/left_of", "seconds_per_step", "peak_memory_mb"} <= set(curve[0])
    assert (pretrained / "learning_curve.png").is_file()
    for stage in ("text_encoder", "vae", "unet"):
        timing = json.loads((pretrained / "training" / stage / "timing.jsonl").read_text().splitlines()[0])
        assert timing["seconds"] > 0 and timing["peak_memory_mb"] > 0
    held_out = json.loads((pretrained / "training" / "text_encoder" / "eval.json").read_text())
    assert 0.0 <= held_out["mirror_accuracy"] <= 1.0
    card = (pretrained / "README.md").read_text()
    assert "not a general text-to-image model" in card and "learning_curve.png" in card


@pytest.mark.slow
def test_a_finished_stage_is_not_trained_again(pretrained):
    stamp = (pretrained / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    process = pretrain(pretrained, "--max_train_steps", "4")
    assert "exists, skipping" in process.stdout + process.stderr
    assert (pretrained / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_resumed_unet_stage_ends_with_the_uninterrupted_weights(pretrained, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(pretrained, resumed, ignore=shutil.ignore_patterns("unet", "training"))
    shutil.copytree(pretrained / "training" / "text_encoder", resumed / "training" / "text_encoder")
    pretrain(resumed, "--stage", "unet", "--max_train_steps", "2")
    shutil.rmtree(resumed / "unet")  # as if the run had been stopped after step 2
    pretrain(resumed, "--stage", "unet", "--max_train_steps", "4", "--resume_from_checkpoint", "latest")
    expected = UNet2DConditionModel.from_pretrained(pretrained / "unet").state_dict()
    got = UNet2DConditionModel.from_pretrained(resumed / "unet").state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_stage_order_and_world_mismatch_are_refused(tmp_path):
    command = [sys.executable, str(SCRIPT), "--output_dir", str(tmp_path), "--stage", "unet"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert process.returncode != 0 and "needs the text_encoder and vae stages" in process.stderr
    WorldConfig(relations=("left_of", "right_of")).save(tmp_path)
    process = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert process.returncode != 0 and "describes another world" in process.stderr
