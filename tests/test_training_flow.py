"""End to end: `accelerate launch examples/train_esplora_flow.py` on tiny SD3.x and FLUX.1 pipelines built from configs.

Each run is a real subprocess on the CPU. Checked: the LoRA is saved in the family's format and loads into the plain
diffusers pipeline (`load_lora_weights`), changing its images; a run stopped at a checkpoint and resumed ends with
the same LoRA as an uninterrupted one; cached text embeddings (text encoders freed) give the same loss curve.
"""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from safetensors.torch import load_file
from test_training_helpers import FLOW_SCRIPT, make_spatial_imagefolder, run_training, tail

from diffusers_spatial.utils.tiny_models import make_tiny_flux, make_tiny_sd3

pytestmark = pytest.mark.slow

LORA = "pytorch_lora_weights.safetensors"
FAMILIES = {"sd3": (make_tiny_sd3, StableDiffusion3Pipeline, {}), "flux": (make_tiny_flux, FluxPipeline, {})}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def workspace(request, tmp_path_factory):
    make, pipeline_cls, _ = FAMILIES[request.param]
    root = tmp_path_factory.mktemp(f"flow-{request.param}")
    make(root / "base")
    make_spatial_imagefolder(root / "data", n=8)
    return root, pipeline_cls


def flow_args(root, output_dir, *extra, steps=4):
    return [
        "--pretrained_model_name_or_path", str(root / "base"), "--train_data_dir", str(root / "data"),
        "--resolution", "32", "--train_batch_size", "2", "--max_train_steps", str(steps), "--checkpointing_steps", "2",
        "--learning_rate", "1e-3", "--seed", "0", "--report_to", "none", "--max_sequence_length", "16",
        "--random_flip", "--output_dir", str(root / output_dir), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def full_run(workspace):
    root, _ = workspace
    process = run_training(FLOW_SCRIPT, flow_args(root, "full"), root)
    assert process.returncode == 0, tail(process)
    return root / "full"


def test_lora_is_the_familys_and_loads_into_plain_diffusers(full_run, workspace):
    root, pipeline_cls = workspace
    lora = load_file(full_run / LORA)
    assert lora and all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in lora)
    summary = json.loads((full_run / "training_summary.json").read_text())
    assert summary["global_step"] == 4 and all(map(torch.isfinite, torch.tensor(summary["losses"])))
    assert pipeline_cls.__name__ in (full_run / "README.md").read_text()

    pipe = pipeline_cls.from_pretrained(root / "base")
    pipe.set_progress_bar_config(disable=True)

    def generate():
        generator = torch.Generator().manual_seed(0)
        kwargs = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np", "max_sequence_length": 16}
        return pipe("a dog to the left of a cat", generator=generator, **kwargs).images

    before = generate()
    pipe.load_lora_weights(full_run)
    assert abs(generate() - before).max() > 1e-5


def test_resume_matches_uninterrupted_run(full_run, workspace):
    root, _ = workspace
    first = run_training(FLOW_SCRIPT, flow_args(root, "resumed", steps=2), root)
    assert first.returncode == 0, tail(first)
    resumed = run_training(FLOW_SCRIPT, flow_args(root, "resumed", "--resume_from_checkpoint", "latest"), root)
    assert resumed.returncode == 0, tail(resumed)
    assert "Resuming from checkpoint" in resumed.stdout
    expected, got = load_file(full_run / LORA), load_file(root / "resumed" / LORA)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_cached_text_embeddings_follow_the_same_loss_curve(full_run, workspace):
    root, _ = workspace
    args = flow_args(root, "cached", "--cache_text_embeddings", "--cache_latents")
    process = run_training(FLOW_SCRIPT, args, root)
    assert process.returncode == 0, tail(process)
    assert "Text-embedding cache:" in process.stdout
    expected = json.loads((full_run / "training_summary.json").read_text())["losses"]
    got = json.loads((root / "cached" / "training_summary.json").read_text())["losses"]
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_other_families_are_sent_to_their_script(tmp_path):
    from diffusers_spatial.utils import make_tiny_sd

    make_tiny_sd(tmp_path / "base")
    make_spatial_imagefolder(tmp_path / "data", n=2)
    process = run_training(FLOW_SCRIPT, flow_args(tmp_path, "out", steps=1), tmp_path)
    assert process.returncode != 0 and "train_esplora.py" in process.stdout
