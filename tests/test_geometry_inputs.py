"""Records, the public API surface, and bad input: a clear ValueError naming the problem, or an explicit verdict."""

import json
import math

import numpy as np
import pytest

import diffusers_spatial.geometry as geometry
from diffusers_spatial.geometry import PROTOCOLS, Detection, ImageScore, score_image, score_images
from diffusers_spatial.relations import parse_spatial_prompt

GOOD = [{"label": "cat", "score": 0.9, "box": [0, 0, 10, 10]}, {"label": "dog", "score": 0.9, "box": [50, 0, 60, 10]}]


def test_public_api():
    for name in ("score_image", "score_images", "aggregate", "bias_table", "Detection", "ImageScore", "PROTOCOLS"):
        assert name in geometry.__all__ and hasattr(geometry, name)
    assert set(PROTOCOLS) == {"visor", "t2i_compbench_2d", "t2i_compbench_3d", "geneval", "esplora"}


def test_detection_dataclass_and_spatial_prompt_inputs():
    dets = [Detection("cat", 0.9, (0, 0, 10, 10)), Detection.from_dict(GOOD[1])]
    prompt = parse_spatial_prompt("a photo of a cat to the left of a dog")
    s = score_image(prompt, dets, protocol="visor")
    assert s.correct is True and s.prompt == "a photo of a cat to the left of a dog"
    assert (s.relation, s.subject, s.object, s.protocol) == ("left_of", "cat", "dog", "visor")
    assert dets[0].to_dict() == {"label": "cat", "score": 0.9, "box": [0.0, 0.0, 10.0, 10.0]}
    with pytest.raises(ValueError, match="x2 < x1"):
        Detection("cat", 0.9, (10, 0, 0, 10))
    with pytest.raises(ValueError, match="missing key"):
        Detection.from_dict({"label": "cat"})


def test_image_score_round_trip_is_json():
    for protocol in PROTOCOLS:
        depth = np.random.default_rng(0).random((20, 70)) if protocol.endswith("3d") else None
        s = score_image("a cat in front of a dog", GOOD, protocol=protocol, depth=depth)
        text = json.dumps(s.to_dict(), allow_nan=False)
        assert ImageScore.from_dict(json.loads(text)) == s


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a cat and a dog", "no relation phrase"),
        ("left of a dog", "no subject"),
        ("a cat left of a dog above a tree", "2 relation phrases"),
        (None, "must be a str"),
        (42, "must be a str"),
    ],
)
def test_bad_prompts(prompt, match):
    with pytest.raises(ValueError, match=match):
        score_image(prompt, GOOD)


@pytest.mark.parametrize(
    ("detection", "match"),
    [
        ({"label": "cat", "score": 0.9, "box": [10, 0, 0, 10]}, r"x2 < x1: \[10, 0, 0, 10\]"),
        ({"label": "cat", "score": 0.9, "box": [0, 10, 10, 0]}, "y2 < y1"),
        ({"label": "cat", "score": 0.9, "box": [0, 0, float("nan"), 10]}, "non-finite"),
        ({"label": "cat", "score": 0.9, "box": [0, 0, float("inf"), 10]}, "non-finite"),
        ({"label": "cat", "score": 0.9, "box": [0, 0, 10]}, "4 numbers"),
        ({"label": "cat", "score": 0.9, "box": "0 0 1 1"}, "4 numbers"),
        ({"label": "cat", "score": 0.9, "box": [0, None, 1, 1]}, "4 numbers"),
        ({"label": "cat", "score": -0.1, "box": [0, 0, 1, 1]}, r"score must be a confidence in \[0, 1\], got -0.1"),
        ({"label": "cat", "score": 5.0, "box": [0, 0, 1, 1]}, r"confidence in \[0, 1\], got 5.0"),
        ({"label": "cat", "score": float("nan"), "box": [0, 0, 1, 1]}, "score must be finite"),
        ({"label": "cat", "score": "high", "box": [0, 0, 1, 1]}, "score must be a number"),
        ({"label": "cat", "score": True, "box": [0, 0, 1, 1]}, "score must be a number"),
        ({"label": 7, "score": 0.5, "box": [0, 0, 1, 1]}, "label must be a string, got 7"),
        ({"label": "  ", "score": 0.5, "box": [0, 0, 1, 1]}, "blank"),
        ({"score": 0.5, "box": [0, 0, 1, 1]}, r"missing key\(s\) \['label'\]"),
        ("cat", "must be a dict or a Detection"),
    ],
)
@pytest.mark.parametrize("protocol", ["visor", "esplora"])
def test_bad_detections_name_the_detection(detection, match, protocol):
    with pytest.raises(ValueError, match=match) as info:
        score_image("a cat left of a dog", [GOOD[0], detection], protocol=protocol)
    if not isinstance(detection, str):
        assert "image 0 detection 1" in str(info.value)


def test_bad_containers_and_options():
    with pytest.raises(ValueError, match="list of detections"):
        score_image("a cat left of a dog", GOOD[0])
    with pytest.raises(ValueError, match="image 1: detections must be a list"):
        score_images(["a cat left of a dog"] * 2, [GOOD, "cat"])
    with pytest.raises(ValueError, match="2 prompts but 1 detection lists"):
        score_images(["a cat left of a dog"] * 2, [GOOD])
    with pytest.raises(ValueError, match="unknown protocol 'clip'"):
        score_image("a cat left of a dog", GOOD, protocol="clip")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['threshold'\]"):
        score_image("a cat left of a dog", GOOD, threshold=0.2)
    with pytest.raises(ValueError, match="score_threshold must be a finite number >= 0, got -1"):
        score_image("a cat left of a dog", GOOD, score_threshold=-1)
    with pytest.raises(ValueError, match="iou_threshold must be a finite number > 0"):
        score_image("a cat on the left of a dog", GOOD, protocol="t2i_compbench_2d", iou_threshold=0)
    with pytest.raises(ValueError, match="image_size must be"):
        score_image("a cat left of a dog", GOOD, image_size=(0, 10))
    far_away = {"label": "cat", "score": 0.9, "box": [500, 0, 600, 10]}
    with pytest.raises(ValueError, match=r"image 0 detection 1: box .* lies entirely outside the image \(100 x 50\)"):
        score_image("a cat left of a dog", [GOOD[0], far_away], image_size=(100, 50))
    touching = {"label": "dog", "score": 0.9, "box": [90, 0, 120, 10]}  # partly outside: detectors do that
    assert score_image("a cat left of a dog", [GOOD[0], touching], image_size=(100, 50)).objects_found
    with pytest.raises(ValueError, match="subject_label must be"):
        score_images(["a cat left of a dog"], [GOOD], subject_label=["cat", "dog"])


@pytest.mark.parametrize(
    ("depth", "match"),
    [
        (np.ones((10, 20)), r"depth shape \(10, 20\) does not match image_size"),
        (np.ones((10, 70, 3)), "2-D"),
        (np.array([]).reshape(0, 0), "non-empty"),
        (np.array([["a"]]), "numeric"),
        (np.full((20, 70), np.inf), "non-finite"),
    ],
)
def test_bad_depth_maps(depth, match):
    for protocol in ("esplora", "t2i_compbench_3d"):
        with pytest.raises(ValueError, match=match):
            score_image("a cat in front of a dog", GOOD, protocol=protocol, depth=depth, image_size=(70, 20))


def test_explicit_verdicts_instead_of_errors():
    # no detection / labels matching neither object: a determined failure with a reason
    for dets in ([], [{"label": "bird", "score": 0.9, "box": [0, 0, 1, 1]}]):
        for protocol in ("visor", "t2i_compbench_2d", "geneval", "esplora"):
            s = score_image("a cat on the left of a dog", dets, protocol=protocol)
            assert s.objects_found is False and s.correct is False and s.score == 0.0, protocol
    # a constant depth map: undetermined with a reason
    s = score_image("a cat in front of a dog", GOOD, depth=np.zeros((20, 70)))
    assert s.correct is None and s.details["reason"]
    # zero-size and out-of-image boxes are not errors
    odd = [
        {"label": "cat", "score": 0.9, "box": [5, 5, 5, 5]},
        {"label": "dog", "score": 0.9, "box": [500, 500, 600, 600]},
    ]
    for protocol in PROTOCOLS:
        depth = np.arange(20 * 70, dtype=float).reshape(20, 70)
        s = score_image("a cat in front of a dog", odd, protocol=protocol, depth=depth)
        assert math.isfinite(s.score)


def test_docstring_examples_run():
    import doctest
    import importlib

    for name in ("", ".types", ".scoring", ".aggregate", ".bias"):
        module = importlib.import_module(f"diffusers_spatial.geometry{name}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_metrics_page_examples_run():
    import doctest
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 5
