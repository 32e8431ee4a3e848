"""The comparison table of docs/metrics.md: the same cases through all five protocols (the page quotes these)."""

import numpy as np
import pytest

from diffusers_spatial.geometry import score_image


def d(label, score, box):
    return {"label": label, "score": score, "box": box}


NEAR_LEFT = np.zeros((200, 400))
NEAR_LEFT[:, :150] = 1.0  # the left part of the scene is near
RAMP = np.tile(np.arange(100, dtype=float) / 99, (100, 1))  # nearer to the right

PROTOCOLS = ("visor", "t2i_compbench_2d", "geneval", "t2i_compbench_3d", "esplora")
# case: (prompt, detections, depth, expected `correct` per protocol in PROTOCOLS order; "error" = ValueError)
CASES = {
    "A clear layout": (
        "a cat on the left of a dog",
        [d("cat", 0.9, [0, 0, 100, 100]), d("dog", 0.9, [200, 0, 300, 100])],
        None,
        (True, True, True, None, True),
    ),
    "B boxes nearly coincide": (
        "a cat on the left of a dog",
        [d("cat", 0.9, [0, 0, 100, 100]), d("dog", 0.9, [2, 0, 102, 100])],
        None,
        (True, True, False, None, None),
    ),
    "C cat on both sides": (
        "a cat on the left of a dog",
        [d("cat", 0.9, [0, 0, 100, 100]), d("dog", 0.9, [150, 0, 250, 100]), d("cat", 0.8, [300, 0, 400, 100])],
        None,
        (True, True, True, None, False),
    ),
    "D vertical stack": (
        "a cat on the left of a dog",
        [d("cat", 0.9, [0, 0, 100, 100]), d("dog", 0.9, [10, 200, 110, 300])],
        None,
        (True, False, False, None, False),
    ),
    "E small on large": (
        "a cat on the left of a couch",
        [d("cat", 0.9, [20, 145, 30, 155]), d("couch", 0.9, [5, 0, 305, 300])],
        None,
        (True, True, True, None, None),
    ),
    "F same class": (
        "a dog on the left of a dog",
        [d("dog", 0.9, [0, 0, 100, 100]), d("dog", 0.9, [200, 0, 300, 100])],
        None,
        (True, False, False, None, True),
    ),
    "G in front, boxes apart": (
        "a cat in front of a dog",
        [d("cat", 0.9, [0, 0, 100, 100]), d("dog", 0.9, [200, 0, 300, 100])],
        NEAR_LEFT,
        (None, None, None, False, True),
    ),
    "H transposed crop": (
        "a cat in front of a dog",
        [d("cat", 0.9, [10, 40, 50, 90]), d("dog", 0.9, [30, 10, 90, 60])],
        RAMP,
        (None, None, None, True, False),
    ),
    "I no depth map": (
        "a cat in front of a dog",
        [d("cat", 0.9, [0, 200, 100, 300]), d("dog", 0.9, [200, 100, 300, 200])],
        None,
        (None, None, None, "error", True),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_comparison_table(case):
    prompt, dets, depth, expected = CASES[case]
    for protocol, want in zip(PROTOCOLS, expected):
        if want == "error":
            with pytest.raises(ValueError, match="depth is None"):
                score_image(prompt, dets, protocol=protocol, depth=depth)
            continue
        got = score_image(prompt, dets, protocol=protocol, depth=depth)
        assert got.correct is want, (case, protocol, got.details)


def test_esplora_explains_its_verdicts():
    assert score_image(*CASES["C cat on both sides"][:2]).details["hedging"] is True
    fallback = score_image(*CASES["I no depth map"][:2])
    assert (fallback.details["depth_source"], fallback.details["confidence"]) == ("geometric_fallback", "low")
    assert "overlap" in score_image(*CASES["B boxes nearly coincide"][:2]).details["reason"]
