"""Golden cases for the "visor" protocol, with expected figures computed by hand from the published rules."""

import pytest

from diffusers_spatial.geometry import aggregate, score_image, score_images


def det(label, score, box):
    return {"label": label, "score": score, "box": box}


def test_left_of_uses_centroids_without_margin():
    # centroids x: cat 5, dog 6 -> 5 - 6 < 0 -> left, even though the boxes overlap almost entirely
    dets = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [1, 0, 11, 10])]
    s = score_image("a cat to the left of a dog", dets, protocol="visor")
    assert (s.correct, s.score, s.objects_found) == (True, 1.0, True)
    assert score_image("a cat to the right of a dog", dets, protocol="visor").correct is False


def test_equal_centroids_satisfy_nothing():
    dets = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [0, 0, 10, 10])]
    for prompt in ("a cat left of a dog", "a cat right of a dog", "a cat above a dog", "a cat below a dog"):
        assert score_image(prompt, dets, protocol="visor").correct is False


def test_above_below_use_y_down():
    dets = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [0, 20, 10, 30])]
    assert score_image("a cat above a dog", dets, protocol="visor").correct is True
    assert score_image("a cat below a dog", dets, protocol="visor").correct is False
    assert score_image("a dog below a cat", dets, protocol="visor").correct is True


def test_any_pair_passes_and_threshold_is_strict():
    cat = det("cat", 0.9, [50, 0, 60, 10])  # x centre 55
    dog_left = det("dog", 0.9, [0, 0, 10, 10])  # 5
    dog_right = det("dog", 0.2, [80, 0, 90, 10])  # 85
    assert score_image("a cat left of a dog", [cat, dog_left, dog_right], protocol="visor").correct is True
    faint = dict(dog_right, score=0.1)  # not > 0.1: dropped
    assert score_image("a cat left of a dog", [cat, dog_left, faint], protocol="visor").correct is False
    assert score_image("a cat left of a dog", [cat, faint], protocol="visor").objects_found is False
    # a caller's threshold overrides 0.1
    assert score_image("a cat left of a dog", [cat, faint], protocol="visor", score_threshold=0.05).correct is True


def test_unscored_relation_is_undetermined():
    dets = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [20, 0, 30, 10])]
    s = score_image("a cat behind a dog", dets, protocol="visor")
    assert s.correct is None and s.score == 0.0
    assert s.details["supported"] is False and "behind" in s.details["reason"]


def test_label_override_and_normalisation():
    dets = [det("Dogs ", 0.9, [0, 0, 10, 10]), det("cat", 0.9, [20, 0, 30, 10])]
    s = score_image("a puppy to the left of a cat", dets, protocol="visor", subject_label="dog")
    assert s.correct is True and s.subject == "puppy" and s.details["subject_label"] == "dog"
    assert score_image("a puppy to the left of a cat", dets, protocol="visor").objects_found is False


def _golden_set():
    """Two prompts x 4 images. Hand count: both detected 5/8, correct 3/8; P1 has 2 correct, P2 has 1."""
    p1, p2 = "a cat to the left of a dog", "a dog above a cat"
    images = [
        (p1, [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [20, 0, 30, 10])]),  # both, correct
        (p1, [det("cat", 0.9, [0, 0, 10, 10])]),  # dog missing
        (p1, [det("cat", 0.9, [50, 0, 60, 10]), det("dog", 0.9, [0, 0, 10, 10]), det("dog", 0.2, [80, 0, 90, 10])]),
        (p1, [det("cat", 0.9, [50, 0, 60, 10]), det("dog", 0.9, [0, 0, 10, 10]), det("dog", 0.05, [80, 0, 90, 10])]),
        (p2, [det("dog", 0.9, [0, 0, 10, 10]), det("cat", 0.9, [0, 20, 10, 30])]),  # both, correct
        (p2, [det("dog", 0.9, [0, 20, 10, 30]), det("cat", 0.9, [0, 0, 10, 10])]),  # both, wrong
        (p2, []),  # nothing
        (p2, [det("dog", 0.1, [0, 0, 10, 10]), det("cat", 0.9, [0, 20, 10, 30])]),  # dog at 0.1: not kept
    ]
    return [p for p, _ in images], [d for _, d in images]


def test_golden_per_image_verdicts():
    prompts, dets = _golden_set()
    scores = score_images(prompts, dets, protocol="visor")
    assert [s.objects_found for s in scores] == [True, False, True, True, True, True, False, False]
    assert [s.correct for s in scores] == [True, False, True, False, True, False, False, False]


def test_golden_aggregate_figures():
    prompts, dets = _golden_set()
    figures = aggregate("visor", score_images(prompts, dets, protocol="visor"))
    assert figures["OA"] == pytest.approx(62.5)  # 100 * 5 / 8
    assert figures["VISOR_cond"] == pytest.approx(60.0)  # 100 * 3 / 5
    assert figures["VISOR_uncond"] == pytest.approx(37.5)  # 60 * 62.5 / 100 = 100 * 3 / 8
    assert [figures[f"VISOR_{k}"] for k in range(1, 5)] == pytest.approx([100.0, 50.0, 0.0, 0.0])
    assert figures["n_prompts"] == 2 and figures["n_images"] == 8
    # subject found in 6/8 images (cat in all of P1; dog in images 1-2 of P2), object in 6/8
    assert figures["object_accuracy"] == pytest.approx({"subject": 0.75, "object": 0.75, "both": 0.625})


def test_prompt_ids_group_images():
    prompts, dets = _golden_set()
    scores = score_images(prompts, dets, protocol="visor")
    # all 8 images under one id: 3 correct images -> VISOR_1..3 = 100, VISOR_4 = 0
    figures = aggregate("visor", scores, prompt_ids=["same"] * 8)
    assert [figures[f"VISOR_{k}"] for k in range(1, 5)] == [100.0, 100.0, 100.0, 0.0]
    with pytest.raises(ValueError, match="prompt_ids has 3 entries for 8"):
        aggregate("visor", scores, prompt_ids=[1, 2, 3])


def test_aggregate_with_no_detection_at_all_has_no_nan():
    scores = score_images(["a cat left of a dog"] * 4, [[]] * 4, protocol="visor")
    figures = aggregate("visor", scores)
    assert figures["OA"] == 0.0 and figures["VISOR_cond"] is None and figures["VISOR_uncond"] == 0.0
    assert figures["VISOR_1"] == 0.0
    empty = aggregate("visor", [])
    assert empty["OA"] is None and empty["n_images"] == 0
