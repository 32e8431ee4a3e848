"""Property tests: mirror symmetry, converse consistency, detection-order invariance, batch = single, no NaN.

Coordinates are integers, so centroids and flips are exact in floating point and the properties hold exactly.
"""

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffusers_spatial.geometry import score_image, score_images

WIDTH, HEIGHT = 60, 40  # the image the boxes live in (boxes may stick out of it)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LABELS = ["cat", "dog", "bird"]
SCORES = [0.05, 0.1, 0.2, 0.3, 0.35, 0.5, 0.7, 0.9, 1.0]


@st.composite
def box(draw, min_size=0):
    x1 = draw(st.integers(-5, WIDTH))
    y1 = draw(st.integers(-5, HEIGHT))
    return [x1, y1, x1 + draw(st.integers(min_size, 30)), y1 + draw(st.integers(min_size, 30))]


@st.composite
def detections(draw, min_size=0, unique_scores=False):
    n = draw(st.integers(0, 7))
    labels = draw(st.lists(st.sampled_from(LABELS), min_size=n, max_size=n))
    boxes = [draw(box(min_size)) for _ in range(n)]
    if unique_scores:  # GenEval breaks score ties by box position, which a mirror changes
        scores = draw(st.permutations([0.31 + 0.08 * k for k in range(n)]))
    else:
        scores = draw(st.lists(st.sampled_from(SCORES), min_size=n, max_size=n))
    return [{"label": lab, "score": s, "box": b} for lab, s, b in zip(labels, scores, boxes)]


def mirror(dets):
    return [dict(d, box=[WIDTH - d["box"][2], d["box"][1], WIDTH - d["box"][0], d["box"][3]]) for d in dets]


def same_verdict(a, b):
    return (a.correct, a.score, a.objects_found) == (b.correct, b.score, b.objects_found)


PLANAR = {
    "visor": ("a cat to the left of a dog", "a cat to the right of a dog", "a dog to the right of a cat"),
    "geneval": (
        "a photo of a cat left of a dog",
        "a photo of a cat right of a dog",
        "a photo of a dog right of a cat",
    ),
    "esplora": ("a cat to the left of a dog", "a cat to the right of a dog", "a dog to the right of a cat"),
    "t2i_compbench_2d": ("a cat on the left of a dog", "a cat on the right of a dog", "a dog on the right of a cat"),
}


@SETTINGS
@given(dets=detections(unique_scores=True), protocol=st.sampled_from(sorted(PLANAR)))
def test_mirror_swaps_left_and_right(dets, protocol):
    left, right, _ = PLANAR[protocol]
    a = score_image(left, dets, protocol=protocol)
    b = score_image(right, mirror(dets), protocol=protocol)
    assert same_verdict(a, b)


@SETTINGS
@given(dets=detections(), protocol=st.sampled_from(sorted(PLANAR)))
def test_converse_prompt_same_verdict(dets, protocol):
    left, _, converse = PLANAR[protocol]
    assert same_verdict(score_image(left, dets, protocol=protocol), score_image(converse, dets, protocol=protocol))
    above = score_image("a cat above a dog", dets, protocol=protocol)
    below = score_image("a dog below a cat", dets, protocol=protocol)
    assert same_verdict(above, below)


def _depth_from_seed(seed: int) -> np.ndarray:
    """A blocky map (4 x 4 px cells of 4 levels), constant for seed 0."""
    if seed == 0:
        return np.full((HEIGHT, WIDTH), 0.5)
    cells = np.random.default_rng(seed).integers(0, 4, (HEIGHT // 4, WIDTH // 4)).astype(float)
    return np.kron(cells, np.ones((4, 4)))


depth_maps = st.integers(0, 1000).map(_depth_from_seed)


@SETTINGS
@given(dets=detections(min_size=1), depth=st.one_of(st.none(), depth_maps))
def test_depth_relations_converse_and_mirror(dets, depth):
    front = score_image("a cat in front of a dog", dets, depth=depth)
    assert same_verdict(front, score_image("a dog behind a cat", dets, depth=depth))
    flipped = None if depth is None else np.fliplr(depth)
    assert same_verdict(front, score_image("a cat in front of a dog", mirror(dets), depth=flipped))
    if depth is not None:
        t2i = score_image("a cat in front of a dog", dets, protocol="t2i_compbench_3d", depth=depth)
        assert same_verdict(t2i, score_image("a dog behind a cat", dets, protocol="t2i_compbench_3d", depth=depth))


@SETTINGS
@given(dets=detections(), data=st.data(), protocol=st.sampled_from(["visor", "geneval", "esplora"]))
def test_detection_order_does_not_matter(dets, data, protocol):
    shuffled = data.draw(st.permutations(dets))
    for prompt in ("a cat to the left of a dog", "a cat below a dog", "a cat next to a dog", "a cat behind a dog"):
        assert same_verdict(
            score_image(prompt, dets, protocol=protocol), score_image(prompt, shuffled, protocol=protocol)
        )


PROMPTS = [
    "a cat on the left of a dog",
    "a dog on the bottom of a bird",
    "a cat near a dog",
    "a bird on top of a cat",
    "a cat in front of a dog",
    "a dog hidden by a cat",
    "a cat to the left of a cat",
]


@SETTINGS
@given(
    batch=st.lists(st.tuples(st.sampled_from(PROMPTS), detections(), depth_maps), min_size=1, max_size=4),
    protocol=st.sampled_from(["visor", "t2i_compbench_2d", "t2i_compbench_3d", "geneval", "esplora"]),
)
def test_batch_equals_single_and_never_nan(batch, protocol):
    prompts, dets, depths = zip(*batch)
    many = score_images(list(prompts), list(dets), protocol=protocol, depths=list(depths))
    for s, prompt, d, depth in zip(many, prompts, dets, depths):
        one = score_image(prompt, d, protocol=protocol, depth=depth)
        assert one == s
        assert math.isfinite(s.score) and 0.0 <= s.score <= 1.0
        assert s.correct in (True, False, None)
        assert s.correct is None or s.details.get("reason") or s.correct
        json.dumps(s.to_dict(), allow_nan=False)
