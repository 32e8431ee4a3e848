"""External review of `diffusers_spatial.geometry`: fresh hand-computed cases per protocol, from
../shared/reference/benchmark-rules.md, and bad input through the public entry points."""

import json
import math

import numpy as np
import pytest

from diffusers_spatial.geometry import Detection, ImageScore, aggregate, bias_table, score_image, score_images

PROTOCOLS = ["visor", "t2i_compbench_2d", "t2i_compbench_3d", "geneval", "esplora"]


def det(label, score, box):
    return {"label": label, "score": score, "box": box}


# ----------------------------------------------------------------------------------------------------------------
# VISOR: 2 prompts x 4 images, hand-computed figures
# ----------------------------------------------------------------------------------------------------------------


def test_visor_figures_by_hand():
    p1, p2 = "a cat to the left of a dog", "a dog to the left of a cat"
    images = [
        [det("cat", 0.5, [0, 0, 10, 10]), det("dog", 0.5, [20, 0, 30, 10])],  # correct
        [det("cat", 0.5, [40, 0, 50, 10]), det("dog", 0.5, [20, 0, 30, 10])],  # both found, wrong side
        [det("cat", 0.05, [0, 0, 10, 10]), det("dog", 0.5, [20, 0, 30, 10])],  # cat below the 0.1 threshold
        # any pair: the low-score cat on the left passes although the confident one is on the right
        [det("cat", 0.11, [0, 0, 10, 10]), det("dog", 0.5, [20, 0, 30, 10]), det("cat", 0.9, [40, 0, 50, 10])],
        [det("dog", 0.5, [0, 0, 10, 10]), det("cat", 0.5, [20, 0, 30, 10])],  # correct
        [det("dog", 0.5, [0, 0, 10, 10]), det("cat", 0.5, [20, 0, 30, 10])],  # correct
        [],  # nothing
        [det("dog", 0.1, [0, 0, 1, 1]), det("cat", 0.9, [5, 0, 6, 1])],  # 0.1 is not > 0.1
    ]
    scores = score_images([p1] * 4 + [p2] * 4, images, protocol="visor")
    assert [s.correct for s in scores] == [True, False, False, True, True, True, False, False]
    assert [s.objects_found for s in scores] == [True, True, False, True, True, True, False, False]
    figures = aggregate("visor", scores, prompt_ids=[7, 7, 7, 7, 8, 8, 8, 8])
    # OA = 5/8, cond = 4/5, uncond = 4/8; each prompt has exactly 2 correct images
    assert figures["OA"] == pytest.approx(62.5)
    assert figures["VISOR_cond"] == pytest.approx(80.0)
    assert figures["VISOR_uncond"] == pytest.approx(50.0)
    assert [figures[f"VISOR_{n}"] for n in (1, 2, 3, 4)] == [100.0, 100.0, 0.0, 0.0]
    json.dumps(figures)
    # numpy prompt ids group the same way
    again = aggregate("visor", scores, prompt_ids=np.array([7, 7, 7, 7, 8, 8, 8, 8]))
    assert again["VISOR_2"] == 100.0 and again["n_prompts"] == 2


def test_visor_equal_centroids_do_not_hold():
    s = score_image(
        "a cat to the left of a dog",
        [det("cat", 0.5, [0, 0, 10, 10]), det("dog", 0.5, [0, 20, 10, 30])],
        protocol="visor",
    )
    assert s.objects_found and s.correct is False


# ----------------------------------------------------------------------------------------------------------------
# T2I-CompBench 2D
# ----------------------------------------------------------------------------------------------------------------

P2D = "a cat on the left of a dog"


def test_t2i_2d_formula_and_iou_penalty():
    s = score_image(
        P2D, [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [100, 0, 110, 10])], protocol="t2i_compbench_2d"
    )
    assert s.score == pytest.approx(0.25 * 0.9 + 0.25 * 0.8 + 0.5)
    # IoU 50/150 = 1/3 >= 0.1: position 0.1 / (1/3) = 0.3
    s = score_image(
        P2D, [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [5, 0, 15, 10])], protocol="t2i_compbench_2d"
    )
    assert s.score == pytest.approx(0.25 * 0.9 + 0.25 * 0.8 + 0.5 * 0.3)


def test_t2i_2d_below_half_becomes_zero():
    s = score_image(
        P2D, [det("cat", 0.5, [0, 0, 10, 10]), det("dog", 0.5, [5, 0, 15, 10])], protocol="t2i_compbench_2d"
    )
    assert s.details["raw_score"] == pytest.approx(0.25 + 0.15)
    assert s.score == 0.0 and s.correct is False
    one = score_image(P2D, [det("cat", 0.9, [0, 0, 10, 10])], protocol="t2i_compbench_2d")
    assert one.details["raw_score"] == pytest.approx(0.225) and one.score == 0.0


def test_t2i_2d_first_detection_rule():
    dets = [det("cat", 0.6, [200, 0, 210, 10]), det("cat", 0.99, [0, 0, 10, 10]), det("dog", 0.8, [100, 0, 110, 10])]
    s = score_image(P2D, dets, protocol="t2i_compbench_2d")
    assert s.details["subject_index"] == 0 and s.details["position"] == 0.0 and s.score == 0.0
    # below the 0.5 cut the first cat is skipped
    dets[0] = det("cat", 0.49, [200, 0, 210, 10])
    s = score_image(P2D, dets, protocol="t2i_compbench_2d")
    assert s.details["subject_index"] == 1 and s.score == pytest.approx(0.25 * 0.99 + 0.25 * 0.8 + 0.5)


def test_t2i_2d_dominant_axis_tie_scores_zero():
    # dx == dy: neither |dx| > |dy| nor the reverse
    s = score_image(
        P2D, [det("cat", 1.0, [0, 0, 10, 10]), det("dog", 1.0, [50, 50, 60, 60])], protocol="t2i_compbench_2d"
    )
    assert s.details["position"] == 0.0


@pytest.mark.parametrize("x, y", [(100, 400), (149, 400), (151, 400), (300, 400), (400, 100), (400, 300)])
def test_t2i_2d_next_to_150px(x, y):
    s = score_image(
        "a cat next to a dog",
        [det("cat", 1.0, [0, 0, 10, 10]), det("dog", 1.0, [x, y, x + 10, y + 10])],
        protocol="t2i_compbench_2d",
    )
    position = 1.0 if (x < 150 or y < 150) else 150 / max(x, y)
    assert s.details["position"] == pytest.approx(position)
    assert s.score == pytest.approx(0.5 + 0.5 * position)


def test_t2i_2d_person_mapping_and_unscored_wording():
    s = score_image(
        "a man on the left of a dog",
        [det("person", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [100, 0, 110, 10])],
        protocol="t2i_compbench_2d",
    )
    assert s.score == pytest.approx(0.925)
    s = score_image(
        "a cat on top of a dog",
        [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [0, 100, 10, 110])],
        protocol="t2i_compbench_2d",
    )
    assert s.details["position"] == 0.0 and s.score == 0.0
    s = score_image(
        "a cat to the left of a dog",
        [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [100, 0, 110, 10])],
        protocol="t2i_compbench_2d",
    )
    assert s.correct is None and s.score == 0.0 and not math.isnan(s.score)


# ----------------------------------------------------------------------------------------------------------------
# T2I-CompBench 3D
# ----------------------------------------------------------------------------------------------------------------

P3D = "a cat in front of a dog"
CAT3, DOG3 = [0, 20, 10, 30], [5, 20, 15, 30]  # IoU 1/3


def test_t2i_3d_transposed_crop_reads_rows_by_x():
    depth = np.zeros((40, 40))
    depth[:10, :] = 1.0  # rows 0..9 are near; the reference's crop depth[x1:x2, y1:y2] reads them for x in 0..10
    s = score_image(P3D, [det("cat", 0.9, CAT3), det("dog", 0.8, DOG3)], protocol="t2i_compbench_3d", depth=depth)
    assert s.details["position"] == pytest.approx((1 / 3) / 0.5)
    assert s.score == pytest.approx(0.25 * 0.9 + 0.25 * 0.8 + 0.5 * (1 / 3) / 0.5)
    corrected = score_image(
        P3D,
        [det("cat", 0.9, CAT3), det("dog", 0.8, DOG3)],
        protocol="t2i_compbench_3d",
        depth=depth,
        corrected_crop=True,
    )
    assert corrected.details["position"] == 0.0  # rows 20..30 are all far: no depth order


def test_t2i_3d_corrected_crop():
    depth = np.zeros((40, 40))
    depth[:, :10] = 1.0  # columns 0..9 near: the cat's box is all near, the dog's half
    kwargs = {"protocol": "t2i_compbench_3d", "depth": depth, "corrected_crop": True}
    s = score_image(P3D, [det("cat", 0.9, CAT3), det("dog", 0.8, DOG3)], **kwargs)
    assert s.correct is True and s.score == pytest.approx(0.25 * 0.9 + 0.25 * 0.8 + 0.5 * (1 / 3) / 0.5)
    behind = score_image("a dog behind a cat", [det("dog", 0.8, DOG3), det("cat", 0.9, CAT3)], **kwargs)
    assert behind.details["position"] == pytest.approx((1 / 3) / 0.5)


def test_t2i_3d_iou_gate_and_no_half_cut():
    depth = np.zeros((40, 40))
    depth[:10, :] = 1.0
    # boxes apart: 0 whatever the depth; the image score keeps 0.25 sA + 0.25 sB (< 0.5, not cut to 0)
    s = score_image(
        P3D,
        [det("cat", 0.9, [0, 0, 5, 5]), det("dog", 0.8, [30, 30, 39, 39])],
        protocol="t2i_compbench_3d",
        depth=depth,
    )
    assert s.details["position"] == 0.0 and s.score == pytest.approx(0.425) and s.correct is False


def test_t2i_3d_constant_and_bad_depth():
    dets = [det("cat", 0.9, CAT3), det("dog", 0.8, DOG3)]
    s = score_image(P3D, dets, protocol="t2i_compbench_3d", depth=np.ones((40, 40)))
    assert s.correct is None and "constant" in s.details["reason"] and math.isfinite(s.score)
    with pytest.raises(ValueError, match="depth is None"):
        score_image(P3D, dets, protocol="t2i_compbench_3d")
    with pytest.raises(ValueError, match="does not match image_size"):
        score_image(P3D, dets, protocol="t2i_compbench_3d", depth=np.ones((40, 40)), image_size=(30, 40))
    with pytest.raises(ValueError, match="non-finite"):
        score_image(P3D, dets, protocol="t2i_compbench_3d", depth=np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="corrected_crop must be True or False"):
        score_image(P3D, dets, protocol="t2i_compbench_3d", depth=np.random.rand(4, 4), corrected_crop="no")


# ----------------------------------------------------------------------------------------------------------------
# GenEval
# ----------------------------------------------------------------------------------------------------------------

PG = "a photo of a cat left of a dog"


def test_geneval_margin_and_direction():
    # offset 11, dims 20 -> revised 11 - 2 = 9, dx = -9 / 11 = -0.818 < -0.5
    s = score_image(PG, [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [11, 0, 21, 10])], protocol="geneval")
    assert s.correct is True and s.details["dx"] == pytest.approx(-9 / 11)
    # offset 2 < margin 2 -> no relation
    s = score_image(PG, [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [2, 0, 12, 10])], protocol="geneval")
    assert s.correct is False and s.details["relations_found"] == []
    # offset (-20, -30): revised (-18, -28) / 36.06 -> dx -0.499 (not left), dy -0.776 (above)
    s = score_image(PG, [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [20, 30, 30, 40])], protocol="geneval")
    assert s.correct is False and s.details["relations_found"] == ["above"]


def test_geneval_diagonal_satisfies_two():
    s = score_image(PG, [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [100, 100, 110, 110])], protocol="geneval")
    assert s.correct is True and s.details["relations_found"] == ["left_of", "above"]
    s = score_image(
        "a cat above a dog",
        [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [100, 100, 110, 110])],
        protocol="geneval",
    )
    assert s.correct is True


def test_geneval_top1_and_threshold():
    dets = [det("cat", 0.4, [200, 0, 210, 10]), det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [100, 0, 110, 10])]
    assert score_image(PG, dets, protocol="geneval").correct is True
    dets[0] = det("cat", 0.95, [200, 0, 210, 10])  # now the top cat is on the wrong side
    assert score_image(PG, dets, protocol="geneval").correct is False
    s = score_image(PG, [det("cat", 0.31, [0, 0, 10, 10]), det("dog", 0.3, [100, 0, 110, 10])], protocol="geneval")
    assert s.objects_found is False and s.correct is False


# ----------------------------------------------------------------------------------------------------------------
# esplora
# ----------------------------------------------------------------------------------------------------------------


def test_esplora_duplication_and_abstention():
    cat, dog = det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [100, 0, 110, 10])
    assert score_image("a cat to the left of a dog", [cat, dog]).correct is True
    hedged = score_image("a cat to the left of a dog", [cat, dog, det("cat", 0.8, [200, 0, 210, 10])])
    assert hedged.correct is False and hedged.details["hedging"] is True
    overlap = score_image("a cat to the left of a dog", [cat, det("dog", 0.8, [2, 0, 12, 10])])
    assert overlap.correct is None and overlap.details["reason"]
    figures = aggregate(
        "esplora",
        score_images(["a cat to the left of a dog"] * 3, [[cat, dog], [cat, det("dog", 0.8, [2, 0, 12, 10])], []]),
    )
    assert figures["accuracy"] == pytest.approx(1 / 3)
    assert figures["determined_accuracy"] == pytest.approx(1 / 2)
    assert figures["coverage"] == pytest.approx(2 / 3)


def test_esplora_depth_no_iou_gate_and_constant_map():
    depth = np.zeros((40, 40))
    depth[:, :20] = 1.0  # the left half is nearer
    dets = [det("cat", 0.9, [0, 10, 10, 20]), det("dog", 0.8, [25, 10, 35, 20])]  # apart: T2I 3D would give 0
    assert score_image(P3D, dets, depth=depth).correct is True
    assert score_image("a dog in front of a cat", dets[::-1], depth=depth).correct is False
    s = score_image(P3D, dets, depth=np.full((40, 40), 2.0))
    assert s.correct is None and "constant" in s.details["reason"]


# ----------------------------------------------------------------------------------------------------------------
# Bad input, every protocol
# ----------------------------------------------------------------------------------------------------------------


def _prompt(protocol):
    return {"t2i_compbench_2d": P2D, "t2i_compbench_3d": P3D}.get(protocol, "a cat to the left of a dog")


def _score(protocol, dets, **kwargs):
    if protocol == "t2i_compbench_3d":
        kwargs.setdefault("depth", np.linspace(0, 1, 400).reshape(20, 20))
    return score_image(_prompt(protocol), dets, protocol=protocol, **kwargs)


GOOD = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [100, 0, 110, 10])]

BAD_DETECTIONS = {
    "nan coordinate": ([det("cat", 0.9, [0, float("nan"), 10, 10])], "non-finite"),
    "inf coordinate": ([det("cat", 0.9, [0, 0, float("inf"), 10])], "non-finite"),
    "x2 < x1": ([det("cat", 0.9, [10, 0, 0, 10])], "x2 < x1"),
    "y2 < y1": ([det("cat", 0.9, [0, 10, 10, 0])], "y2 < y1"),
    "negative score": ([det("cat", -0.1, [0, 0, 10, 10])], r"confidence in \[0, 1\]"),
    "nan score": ([det("cat", float("nan"), [0, 0, 10, 10])], "finite"),
    "bool score": ([det("cat", True, [0, 0, 10, 10])], "must be a number"),
    "numpy bool score": ([det("cat", np.bool_(True), [0, 0, 10, 10])], "must be a number"),
    "string score": ([det("cat", "0.9", [0, 0, 10, 10])], "must be a number"),
    "three coordinates": ([det("cat", 0.9, [0, 0, 10])], "4 numbers"),
    "missing score": ([{"label": "cat", "box": [0, 0, 10, 10]}], "missing key"),
    "label none": ([det(None, 0.9, [0, 0, 10, 10])], "label"),
    "blank label": ([det("  ", 0.9, [0, 0, 10, 10])], "blank"),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", list(BAD_DETECTIONS))
def test_bad_detections_raise_a_clear_value_error(protocol, case):
    dets, message = BAD_DETECTIONS[case]
    with pytest.raises(ValueError, match=message):
        _score(protocol, dets + GOOD)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_accepted_input_forms_give_the_same_verdict(protocol):
    reference = _score(protocol, GOOD)
    forms = [
        [Detection("cat", 0.9, (0, 0, 10, 10)), Detection("dog", 0.8, (100, 0, 110, 10))],
        [Detection("cat", 0.9, (0, 0, 10, 10)), det("dog", 0.8, [100, 0, 110, 10])],
        (det("cat", 0.9, (0, 0, 10, 10)), det("dog", 0.8, (100, 0, 110, 10))),
        [
            det("cat", np.float64(0.9), np.array([0, 0, 10, 10])),
            det("dog", 0.8, [np.int32(100), 0, 110, np.float32(10)]),
        ],
        [{**det("cat", 0.9, [0, 0, 10, 10]), "extra": object()}, {**det("dog", 0.8, [100, 0, 110, 10]), "id": 3}],
        [det("Cats", 0.9, [0, 0, 10, 10]), det(" dog ", 0.8, [100, 0, 110, 10])],
    ]
    for dets in forms:
        s = _score(protocol, dets)
        assert (s.correct, s.objects_found) == (reference.correct, reference.objects_found)
        assert s.score == pytest.approx(reference.score)
        json.dumps(s.to_dict())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_and_unmatched_detections_are_determined_misses(protocol):
    for dets in ([], [det("bird", 0.9, [0, 0, 10, 10]), det("car", 0.9, [50, 0, 60, 10])]):
        s = _score(protocol, dets)
        assert s.objects_found is False and s.correct is False and s.score == 0.0
        assert "not detected" in s.details["reason"]
        json.dumps(s.to_dict())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ints_give_finite_scores(protocol):
    s = _score(protocol, [det("cat", 1, [0, 0, 10, 10]), det("dog", 1, [100, 0, 110, 10])])
    assert math.isfinite(s.score)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "depth, image_size, message",
    [
        (np.ones((2, 2, 2)), None, "2-D"),
        ("abc", None, "2-D"),
        (np.ones((20, 20), dtype=bool), None, "numeric"),
        (np.full((20, 20), np.inf), None, "non-finite"),
        (np.ones((20, 20)), (21, 20), "does not match image_size"),
    ],
)
def test_bad_depth_raises_for_every_protocol(protocol, depth, image_size, message):
    # also for protocols that do not read depth for this relation: a malformed map is never silently accepted
    with pytest.raises(ValueError, match=message):
        _score(protocol, GOOD, depth=depth, image_size=image_size)


@pytest.mark.parametrize("size", [(40.0, 40.0), (0, 40), (40, 40, 3), "40x40", (True, 4)])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="image_size"):
        score_image("a cat to the left of a dog", GOOD, image_size=size)


def test_numpy_image_size_is_accepted():
    s = score_image(P3D, GOOD, depth=np.random.rand(40, 120), image_size=(np.int64(120), np.int64(40)))
    assert math.isfinite(s.score)


@pytest.mark.parametrize("bad", ["", "   ", "a red car", None, "a cat left of a dog above a tree"])
def test_bad_prompt(bad):
    with pytest.raises(ValueError):
        score_image(bad, GOOD)


@pytest.mark.parametrize("bad", [None, {"label": "cat"}, "cat", (x for x in GOOD)])
def test_detections_not_a_list(bad):
    with pytest.raises(ValueError, match="list of detections"):
        score_image("a cat to the left of a dog", bad)


# ----------------------------------------------------------------------------------------------------------------
# aggregate / bias_table
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_aggregate_empty_is_json_without_nan(protocol):
    figures = aggregate(protocol, [])
    text = json.dumps(figures, allow_nan=False)
    assert "NaN" not in text and figures["n_images"] == 0


def test_aggregate_reads_json_lines_and_refuses_corrupt_records():
    scores = score_images(["a cat left of a dog", "a dog right of a cat"], [GOOD, GOOD], protocol="visor")
    rows = json.loads(json.dumps([s.to_dict() for s in scores]))
    assert aggregate("visor", rows) == aggregate("visor", scores)
    corrupt = [
        ({"score": float("nan")}, "finite"),
        ({"score": "1"}, "must be a number"),
        ({"relation": "sideways"}, "relation"),
        ({"correct": "yes"}, "correct"),
        ({"objects_found": 1}, "objects_found"),
        ({"details": "x"}, "details"),
        ({"subject": None}, "subject"),
    ]
    for change, message in corrupt:
        with pytest.raises(ValueError, match=message):
            aggregate("visor", [{**rows[0], **change}])
    with pytest.raises(ValueError, match="list of ImageScores"):
        aggregate("visor", scores[0])
    with pytest.raises(ValueError, match="other protocol"):
        aggregate("geneval", scores)
    with pytest.raises(ValueError, match="prompt_ids has 1"):
        aggregate("visor", scores, prompt_ids=[1])


def test_image_score_from_dict_round_trip_keeps_types():
    s = score_image("a cat to the left of a dog", GOOD, protocol="geneval")
    back = ImageScore.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == ImageScore.from_dict(s.to_dict())
    assert isinstance(back.score, float) and back.correct is True


def test_t2i_mean_counts_every_image():
    images = [
        [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [100, 0, 110, 10])],
        [det("cat", 0.9, [0, 0, 10, 10])],
        [],
    ]
    scores = score_images([P2D] * 3, images, protocol="t2i_compbench_2d")
    assert aggregate("t2i_compbench_2d", scores)["score"] == pytest.approx(0.925 / 3)


def test_bias_table_counterfactual_by_hand():
    left = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [50, 0, 60, 10])]
    right = [det("cat", 0.9, [50, 0, 60, 10]), det("dog", 0.9, [0, 0, 10, 10])]
    prompts = ["a cat to the left of a dog"] * 4 + ["a dog to the right of a cat"] * 2
    scores = score_images(prompts, [left, right, right, right, left, left], protocol="visor")
    table = bias_table(scores)
    json.dumps(table, allow_nan=False)
    assert table["relations"]["left_of"] == {"n": 4, "correct": 1, "rate": 0.25}
    assert table["relations"]["right_of"] == {"n": 2, "correct": 2, "rate": 1.0}
    assert table["orders"]["as_written"]["rate"] == 0.25 and table["orders"]["swapped"]["rate"] == 1.0
    pair = table["counterfactual"]["pairs"]["cat|left_of|dog"]
    assert pair["swapped"] == "dog|right_of|cat" and pair["consistency"] == pytest.approx(0.25)
