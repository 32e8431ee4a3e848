"""Validation prompts, spatial scoring of validation images, tracker logging and the model card."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
from PIL import Image

from diffusers_spatial.pipelines.families import SDXL
from diffusers_spatial.training.model_card import save_model_card
from diffusers_spatial.training.validation import (
    ValidationResult,
    load_validation_prompts,
    load_validation_scorer,
    run_validation,
)


def test_validation_prompts_from_flags_files_and_suites(tmp_path):
    assert load_validation_prompts("a dog left of a cat", ["a cup above a book", "a dog left of a cat"], None) == [
        "a dog left of a cat",
        "a cup above a book",
    ]
    (tmp_path / "p.txt").write_text("a cat below a table\n\n a car left of a tree \n")
    assert load_validation_prompts(None, [str(tmp_path / "p.txt")], None) == [
        "a cat below a table",
        "a car left of a tree",
    ]
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "a dog above a bed"}) + "\n")
    assert load_validation_prompts(None, [str(tmp_path / "p.jsonl")], None) == ["a dog above a bed"]
    suite = load_validation_prompts(None, None, "sr2d", num_pairs=1, seed=0)
    assert len(suite) == 8
    with pytest.raises(ValueError, match="does not exist"):
        load_validation_prompts(None, [str(tmp_path / "missing.txt")], None)
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ValueError, match="holds no prompts"):
        load_validation_prompts(None, [str(tmp_path / "empty.json")], None)


def test_scorer_modes():
    assert load_validation_scorer("off") is None
    with pytest.raises(ValueError, match="auto, on or off"):
        load_validation_scorer("sometimes")
    with pytest.raises(ValueError, match="nope"):
        load_validation_scorer("auto", protocol="nope")  # a typo is an error, not "unavailable"


@pytest.fixture(scope="module")
def scorer():
    return load_validation_scorer("on", protocol="esplora")


def test_scorer_judges_a_real_photo(scorer):
    from diffusers_spatial.photos import PhotoUnavailableError, load_photo

    try:
        photo = load_photo("dog")  # darknet's dog.jpg: dog lower left, bicycle centre, truck upper right
    except PhotoUnavailableError as err:
        pytest.skip(f"real photo unavailable: {err}")
    prompts = ["a dog to the left of a truck", "a dog to the right of a truck", "a photo of a dog"]
    scores = scorer([photo, photo, photo], prompts)
    assert [s.prompt for s in scores] == prompts[:2]  # the non-spatial prompt is not scored
    assert [s.correct for s in scores] == [True, False]
    metrics = scorer.metrics(scores)
    assert metrics["accuracy"] == 0.5 and metrics["objects_found"] == 1.0
    assert metrics["accuracy/left_of"] == 1.0 and metrics["accuracy/right_of"] == 0.0


def test_run_validation_scores_and_saves(scorer, tmp_path):
    from diffusers_spatial.utils import make_tiny_sd

    pipe = make_tiny_sd()
    prompts = ["a dog to the left of a cat", "a cup above a book"]
    result = run_validation(
        pipe, prompts, num_images_per_prompt=2, num_inference_steps=2, resolution=32, seed=0, scorer=scorer
    )
    assert [len(row) for row in result.images] == [2, 2]
    assert len(result.verdicts) == 4 and {v["relation"] for v in result.verdicts} == {"left_of", "above"}
    assert result.metrics["num_images"] == 4.0 and "accuracy/above" in result.metrics
    again = run_validation(pipe, prompts[:1], num_images_per_prompt=2, num_inference_steps=2, resolution=32, seed=0)
    assert np.array_equal(np.asarray(again.images[0][0]), np.asarray(result.images[0][0]))  # comparable runs
    grid_path = result.save(tmp_path, "validation-000010")
    assert Image.open(grid_path).size == (64, 64)
    assert json.loads((tmp_path / "validation-000010.json").read_text())["metrics"] == result.metrics


def test_result_goes_to_the_trackers():
    added, logged = [], []
    writer = types.SimpleNamespace(add_images=lambda tag, images, step, dataformats: added.append((tag, images.shape)))
    tracker = types.SimpleNamespace(name="tensorboard", writer=writer)
    accelerator = types.SimpleNamespace(trackers=[tracker], log=lambda values, step: logged.append((values, step)))
    result = ValidationResult(
        ["a dog left of a cat"], [[Image.new("RGB", (8, 8))] * 2], metrics={"accuracy": 0.5, "accuracy/left_of": 0.5}
    )
    result.log(accelerator, tag="validation", step=7)
    assert logged == [({"validation/accuracy": 0.5, "validation/accuracy/left_of": 0.5}, 7)]
    assert added == [("validation", (1, 8, 16, 3))]


def test_model_card(tmp_path):
    result = ValidationResult(
        ["a dog to the left of a cat"],
        [[Image.new("RGB", (8, 8), "red")]],
        metrics={"accuracy": 0.25, "accuracy/left_of": 0.5, "num_images": 4.0},
    )
    args = types.SimpleNamespace(
        resolution=512, rank=16, learning_rate=1e-4, validation_protocol="esplora", mixed_precision=None
    )
    path = save_model_card(
        tmp_path,
        repo_id="me/esplora-sd15",
        base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        dataset_name="me/spatial-dataset",
        validation=result,
        training_args=args,
        mixed_precision="bf16",  # from the accelerate config: the flag was not given
    )
    card = path.read_text()
    assert card.startswith("---\n") and "base_model: stable-diffusion-v1-5/stable-diffusion-v1-5" in card
    assert "datasets:\n- me/spatial-dataset" in card and "- lora" in card
    assert "| accuracy/left_of | 50.0% |" in card and "| images scored | 4 |" in card
    assert "![a dog to the left of a cat](./image_0.png)" in card and (tmp_path / "image_0.png").is_file()
    assert 'pipe.load_lora_weights("me/esplora-sd15")' in card and "- rank: 16" in card
    assert "- mixed_precision: bf16" in card and "mixed_precision: None" not in card
    bare = save_model_card(tmp_path / "bare", repo_id="x", base_model="m", dataset_name=None, family=SDXL)
    assert "No validation scores" in bare.read_text() and "StableDiffusionXLPipeline" in bare.read_text()


def test_generation_is_seeded_per_prompt():
    calls = []

    class FakePipeline:
        device = torch.device("cpu")

        def __call__(self, prompt, generator, **kwargs):
            calls.append(torch.rand(1, generator=generator).item())
            return types.SimpleNamespace(images=[Image.new("RGB", (4, 4))] * kwargs["num_images_per_prompt"])

    run_validation(FakePipeline(), ["a", "b"], num_images_per_prompt=1, seed=3)
    assert calls[0] == calls[1]  # every prompt starts from the same seed
