"""TORE calibration end to end on a tiny SD pipeline: generate, judge with the real `Perception` + `geometry` (a
detector whose boxes follow the generated pixels), build the bias table and the `Tore`, resume, refuse bad input."""

import json

import numpy as np
import pytest

from diffusers_spatial.geometry import bias_table
from diffusers_spatial.perception import Perception
from diffusers_spatial.pipelines import SpatialLoRAPipeline
from diffusers_spatial.tore import PerceptionScorer, Tore, calibrate
from diffusers_spatial.utils import make_tiny_sd

PROMPTS = [
    "a cat to the left of a dog",
    "a dog to the right of a cat",
    "a cat to the right of a dog",
    "a dog to the left of a cat",
]
GENERATE = {"images_per_prompt": 3, "num_inference_steps": 2, "height": 32, "width": 32, "progress": False}


class BrightSideDetector:
    """Finds the cat in the brighter half of the image and the dog in the other: boxes follow the pixels."""

    name = "bright-side"
    labels = ["cat", "dog"]

    def __init__(self):
        self.calls = 0

    def detect(self, images, queries=None):
        self.calls += len(images)
        found = []
        for image in images:
            pixels = np.asarray(image.convert("L"), dtype=np.float64)
            height, width = pixels.shape
            left = [0, 0, width // 2 - 1, height - 1]
            right = [width // 2, 0, width - 1, height - 1]
            cat, dog = (
                (left, right) if pixels[:, : width // 2].mean() > pixels[:, width // 2 :].mean() else (right, left)
            )
            found.append([{"label": "cat", "score": 0.9, "box": cat}, {"label": "dog", "score": 0.9, "box": dog}])
        return found


@pytest.fixture(scope="module")
def pipe():
    return make_tiny_sd(seed=3)


def _scorer(detector=None):
    return PerceptionScorer(Perception(detector=detector or BrightSideDetector(), progress=False), protocol="visor")


def test_calibrate_builds_the_table_and_tore_and_resumes(pipe, tmp_path):
    detector = BrightSideDetector()
    result = calibrate(pipe, PROMPTS, tmp_path, scorer=_scorer(detector), tau=0.05, min_count=3, **GENERATE)
    assert len(result.scores) == 12 and detector.calls == 12
    # The verdicts are the geometry's on the detector's boxes: "cat left of dog" is right iff the left half is brighter.
    for score in result.scores:
        assert score.protocol == "visor" and score.correct is not None
    table = result.bias_table
    assert table == bias_table(result.scores)
    assert sum(e["n"] for e in table["relations"].values()) == 12
    assert result.tore == Tore.from_report(table, tau=0.05, min_count=3)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"images", "generations.jsonl", "scores.jsonl", "bias_table.json", "tore_config.json"} <= files
    assert Tore.from_pretrained(tmp_path) == result.tore
    assert json.loads((tmp_path / "bias_table.json").read_text()) == json.loads(json.dumps(table))

    # Every triplet has 3 >= min_count samples and its twin is in the suite: triplet statistics decide.
    assert result.tore.decide("a cat to the left of a dog").source == "triplet"

    # Resume: nothing is generated or scored again, same result.
    again_detector = BrightSideDetector()
    again = calibrate(pipe, PROMPTS, tmp_path, scorer=_scorer(again_detector), tau=0.05, min_count=3, **GENERATE)
    assert again_detector.calls == 0 and again.tore == result.tore

    # A run killed mid-scoring: a truncated last line and missing lines are scored again, the rest kept.
    lines = (tmp_path / "scores.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "scores.jsonl").write_text("".join(lines[:5]) + lines[5][:20])
    resumed_detector = BrightSideDetector()
    resumed = calibrate(pipe, PROMPTS, tmp_path, scorer=_scorer(resumed_detector), tau=0.05, min_count=3, **GENERATE)
    assert resumed_detector.calls == 7 and resumed.tore == result.tore


def test_calibrate_refuses_bad_input_before_work(pipe, tmp_path):
    with pytest.raises(ValueError, match=r"exactly one relation; 2 are not: \[1\] 'a red car'"):
        calibrate(pipe, [PROMPTS[0], "a red car", "a cat left of a dog above a tree"], tmp_path, scorer=_scorer())
    with pytest.raises(ValueError, match=r"tau must be in \[0, 1\]"):
        calibrate(pipe, PROMPTS, tmp_path, scorer=_scorer(), tau=2.0)
    with_tore = SpatialLoRAPipeline.from_pipe(pipe, tore=Tore(success_rates={"left_of": 0.1, "right_of": 0.9}))
    with pytest.raises(ValueError, match="TORE is active"):
        calibrate(with_tore, PROMPTS, tmp_path, scorer=_scorer())
    assert not (tmp_path / "generations.jsonl").exists()

    calibrate(pipe, PROMPTS[:2], tmp_path, scorer=_scorer(), **{**GENERATE, "images_per_prompt": 1})

    class OtherScorer:
        name = "other"

        def __call__(self, images, prompts):
            raise AssertionError("must not be called")

    with pytest.raises(ValueError, match="scored with other settings"):
        calibrate(pipe, PROMPTS[:2], tmp_path, scorer=OtherScorer(), **{**GENERATE, "images_per_prompt": 1})


def test_images_without_the_objects(pipe, tmp_path):
    class SeesNothing:
        name, labels = "blind", ["cat", "dog"]

        def detect(self, images, queries=None):
            return [[] for _ in images]

    result = calibrate(
        pipe, PROMPTS[:2], tmp_path, scorer=_scorer(SeesNothing()), **{**GENERATE, "images_per_prompt": 2}
    )
    assert [(s.objects_found, s.correct) for s in result.scores] == [(False, False)] * 4  # VISOR: wrong, not unknown
    assert result.tore.success_rates == {"left_of": 0.0, "right_of": 0.0}
    assert result.tore.rewrite(PROMPTS[0]) == PROMPTS[0]  # a tie keeps the prompt as written
