"""Golden cases for "t2i_compbench_2d" / "t2i_compbench_3d", expected figures computed by hand from the rules."""

import numpy as np
import pytest

from diffusers_spatial.geometry import aggregate, score_image, score_images

T2D, T3D = "t2i_compbench_2d", "t2i_compbench_3d"


def det(label, score, box):
    return {"label": label, "score": score, "box": box}


# ------------------------------------------------------------------------------------------------ 2D


def test_2d_clear_left_scores_formula():
    # dx = 250 - 50 = 200 > 0, dy = 0, IoU 0 -> position 1 -> 0.25 * 0.9 + 0.25 * 0.8 + 0.5 = 0.925
    dets = [det("cat", 0.9, [0, 0, 100, 100]), det("dog", 0.8, [200, 0, 300, 100])]
    s = score_image("a cat on the left of a dog", dets, protocol=T2D)
    assert s.score == pytest.approx(0.925) and s.correct is True
    assert s.details["relation_word"] == "on the left of" and s.details["position"] == 1.0
    wrong = score_image("a cat on the right of a dog", dets, protocol=T2D)
    assert wrong.score == 0.0 and wrong.correct is False  # 0.425 < 0.5 -> 0


def test_2d_iou_penalty_and_the_half_step():
    # overlap 50 x 100 = 5000, union 15000 -> IoU 1/3 >= 0.1 -> position 0.1 / (1/3) = 0.3
    dets = [det("cat", 0.9, [0, 0, 100, 100]), det("dog", 0.8, [50, 0, 150, 100])]
    s = score_image("a cat on the left of a dog", dets, protocol=T2D)
    assert s.details["position"] == pytest.approx(0.3)
    assert s.score == pytest.approx(0.425 + 0.15)  # 0.575 stays
    low = [det("cat", 0.6, [0, 0, 100, 100]), det("dog", 0.6, [50, 0, 150, 100])]
    s = score_image("a cat on the left of a dog", low, protocol=T2D)
    assert s.details["raw_score"] == pytest.approx(0.45) and s.score == 0.0 and s.correct is False
    # IoU just below 0.1 scores the full 1: overlap 9 x 100 = 900, union 19100 -> IoU 0.047
    near = [det("cat", 0.9, [0, 0, 100, 100]), det("dog", 0.8, [91, 0, 191, 100])]
    assert score_image("a cat on the left of a dog", near, protocol=T2D).details["position"] == 1.0


def test_2d_dominant_axis_and_single_object():
    # dx = 20, dy = 100: |dx| < |dy| -> position 0 -> 0.425 -> 0
    dets = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [20, 100, 30, 110])]
    s = score_image("a cat on the left of a dog", dets, protocol=T2D)
    assert s.details["position"] == 0.0 and s.score == 0.0
    assert score_image("a cat on the top of a dog", dets, protocol=T2D).details["position"] == 1.0  # dy > 0
    assert score_image("a dog on the bottom of a cat", dets, protocol=T2D).details["position"] == 1.0
    only_cat = score_image("a cat on the left of a dog", dets[:1], protocol=T2D)
    assert only_cat.details["raw_score"] == pytest.approx(0.225) and only_cat.score == 0.0  # 0.25 * 0.9
    assert only_cat.objects_found is False and only_cat.correct is False


def test_2d_near_uses_150_px():
    cat = det("cat", 0.9, [0, 0, 100, 100])  # centre (50, 50)
    far = det("dog", 0.8, [350, 250, 450, 350])  # centre (400, 300): |dx| 350, |dy| 250
    s = score_image("a cat near a dog", [cat, far], protocol=T2D)
    assert s.details["relation_word"] == "near"
    assert s.details["position"] == pytest.approx(150 / 350)
    assert s.score == pytest.approx(0.425 + 0.5 * 150 / 350)
    row = det("dog", 0.8, [350, 50, 450, 150])  # |dy| = 50 < 150 -> 1
    assert score_image("a cat next to a dog", [cat, row], protocol=T2D).details["position"] == 1.0
    assert score_image("a cat near a dog", [cat, far], protocol=T2D, distance_threshold=400).details["position"] == 1


def test_2d_first_detection_of_each_class():
    dets = [
        det("dog", 0.9, [0, 0, 10, 10]),  # first dog: left of the cat
        det("cat", 0.8, [100, 0, 110, 10]),
        det("dog", 0.95, [200, 0, 210, 10]),  # more confident, but second
    ]
    s = score_image("a cat on the left of a dog", dets, protocol=T2D)
    assert s.details["object_index"] == 0 and s.correct is False
    assert score_image("a cat on the right of a dog", dets, protocol=T2D).correct is True
    # a detection under 0.5 is not kept, so the next dog is the first one
    dets[0] = det("dog", 0.49, [0, 0, 10, 10])
    assert score_image("a cat on the left of a dog", dets, protocol=T2D).details["object_index"] == 2


def test_2d_on_top_of_scores_zero_and_missing_word_is_undetermined():
    dets = [det("cat", 1.0, [0, 0, 10, 10]), det("dog", 1.0, [0, 100, 10, 110])]
    s = score_image("a cat on top of a dog", dets, protocol=T2D)
    assert s.details["relation_word"] == "on top of" and s.details["position"] == 0.0
    assert s.score == 0.5 and s.correct is False and "no rule" in s.details["note"]  # 0.25 + 0.25 is not < 0.5
    s = score_image("a cat to the left of a dog", dets, protocol=T2D)  # no word of the reference's list
    assert s.correct is None and s.details["relation_word"] is None and "no relation word" in s.details["reason"]


def test_2d_person_rewrite_only_for_nouns():
    dets = [det("person", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [100, 0, 110, 10])]
    assert score_image("a woman on the left of a dog", dets, protocol=T2D).correct is True
    assert score_image("two men on the left of a dog", dets, protocol=T2D).correct is True
    assert score_image("a woman on the left of a dog", dets, protocol="visor").objects_found is False


def test_2d_exact_label_match():
    dets = [det("teddy bear", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [100, 0, 110, 10])]
    assert score_image("a bear on the left of a dog", dets, protocol=T2D).objects_found is False


def test_2d_reference_resize():
    # centres (50, 50) and (910, 950): |dx| = 860, |dy| = 900 pixels
    cat, dog = det("cat", 0.9, [0, 0, 100, 100]), det("dog", 0.9, [860, 900, 960, 1000])
    # a 1024 x 1024 image is seen at 479 x 479: |dy| = 900 * 479 / 1024 = 421.0 -> position 150 / 421.0
    s = score_image("a cat near a dog", [cat, dog], protocol=T2D, image_size=(1024, 1024), reference_resize=True)
    assert s.details["position"] == pytest.approx(150 / (900 * 479 / 1024))
    with pytest.raises(ValueError, match="needs image_size"):
        score_image("a cat near a dog", [cat, dog], protocol=T2D, reference_resize=True)


def test_2d_aggregate_is_the_mean():
    dets = [det("cat", 0.9, [0, 0, 100, 100]), det("dog", 0.8, [200, 0, 300, 100])]
    scores = score_images(["a cat on the left of a dog", "a cat on the right of a dog"], [dets, dets], protocol=T2D)
    assert aggregate(T2D, scores)["score"] == pytest.approx((0.925 + 0.0) / 2)


# ------------------------------------------------------------------------------------------------ 3D


def ramp(size=100):
    """depth[row, col] = col / 99: nearer to the right."""
    return np.tile(np.arange(size, dtype=np.float64) / (size - 1), (size, 1))


def test_3d_transposition_quirk_vs_corrected_crop():
    # overlap 20 x 20 = 400; areas 2000 and 3000; union 4600 -> IoU 2/23; position if right order: (2/23)/0.5
    dets = [det("cat", 0.9, [10, 40, 50, 90]), det("dog", 0.8, [30, 10, 90, 60])]
    # reference crop depth[x1:x2, y1:y2] reads the ramp along y: cat cols 40..89 vs dog cols 10..59 -> cat nearer
    s = score_image("a cat in front of a dog", dets, protocol=T3D, depth=ramp())
    assert s.details["position"] == pytest.approx(4 / 23)
    assert s.score == pytest.approx(0.425 + 2 / 23) and s.correct is True
    # corrected crop depth[y1:y2, x1:x2]: cat cols 10..49 vs dog cols 30..89 -> dog nearer
    c = score_image("a cat in front of a dog", dets, protocol=T3D, depth=ramp(), corrected_crop=True)
    assert c.details["position"] == 0.0 and c.score == pytest.approx(0.425) and c.correct is False
    assert score_image("a cat behind a dog", dets, protocol=T3D, depth=ramp(), corrected_crop=True).correct is True


def test_3d_iou_gate():
    depth = np.zeros((100, 100))
    depth[:, :50] = 1.0  # columns 0..49 near
    cat = det("cat", 0.9, [0, 0, 40, 100])
    far_dog = det("dog", 0.9, [60, 0, 100, 100])  # no overlap: always 0, the users' complaint
    s = score_image("a cat in front of a dog", [cat, far_dog], protocol=T3D, depth=depth, corrected_crop=True)
    assert s.details["position"] == 0.0 and s.score == pytest.approx(0.45)
    big = det("cat", 0.9, [0, 0, 100, 100])
    half = det("dog", 0.9, [50, 0, 100, 100])  # IoU exactly 0.5 -> 0.5 / 0.5 = 1 (the rule's <= 0.5 branch)
    s = score_image("a cat in front of a dog", [big, half], protocol=T3D, depth=depth, corrected_crop=True)
    assert s.details["position"] == pytest.approx(1.0)
    inside = det("dog", 0.9, [40, 0, 100, 100])  # IoU 0.6 > 0.5 -> 1
    s = score_image("a cat in front of a dog", [big, inside], protocol=T3D, depth=depth, corrected_crop=True)
    assert s.details["position"] == 1.0 and s.score == pytest.approx(0.95)


def test_3d_substring_match_and_scan_rule():
    depth = ramp()
    dets = [
        det("cat", 0.9, [0, 0, 10, 10]),
        det("wildcat", 0.7, [20, 20, 30, 30]),  # "cat" is a substring: a match
        det("dog", 0.8, [0, 0, 50, 50]),
        det("cat", 0.95, [60, 60, 70, 70]),
    ]
    s = score_image("a cat in front of a dog", dets, protocol=T3D, depth=depth)
    # scanning stops at index 2 (both seen); the last cat seen by then is index 1
    assert (s.details["subject_index"], s.details["object_index"]) == (1, 2)
    assert s.score == pytest.approx(0.25 * 0.7 + 0.25 * 0.8 + 0.5 * s.details["position"])
    only = score_image("a bear behind a dog", [det("teddy bear", 0.9, [0, 0, 5, 5])], protocol=T3D, depth=depth)
    assert only.details["subject_found"] is True and only.score == pytest.approx(0.225)  # kept: no < 0.5 step


def test_3d_quantisation_min_max_and_constant_map():
    dets = [det("cat", 0.9, [0, 0, 100, 100]), det("dog", 0.9, [0, 0, 100, 90])]  # IoU 0.9
    depth = np.full((100, 100), 7.0)
    depth[90:, :] = 7.001  # only the cat's extra rows are nearer
    s = score_image("a cat in front of a dog", dets, protocol=T3D, depth=depth, corrected_crop=True)
    assert s.details["position"] == 1.0  # min-max stretches the tiny step to 1
    flat = score_image("a cat in front of a dog", dets, protocol=T3D, depth=np.full((100, 100), 3.0))
    assert flat.correct is None and "constant depth" in flat.details["reason"]
    assert flat.score == pytest.approx(0.45)  # the formula still applies, position 0


def test_3d_needs_a_depth_map_of_the_right_shape():
    dets = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [0, 0, 10, 9])]
    with pytest.raises(ValueError, match="depth is None"):
        score_image("a cat in front of a dog", dets, protocol=T3D)
    with pytest.raises(ValueError, match=r"does not match image_size"):
        score_image("a cat in front of a dog", dets, protocol=T3D, depth=np.ones((64, 48)), image_size=(64, 48))
    s = score_image("a cat on the left of a dog", dets, protocol=T3D)  # no 3D word: no depth needed
    assert s.correct is None and s.details["relation_word"] is None


def test_3d_hidden_is_behind_and_aggregate_keeps_every_score():
    dets = [det("cat", 0.9, [10, 40, 50, 90]), det("dog", 0.8, [30, 10, 90, 60])]
    hidden = score_image("a dog hidden by a cat", dets, protocol=T3D, depth=ramp())
    assert hidden.details["relation_word"] == "hidden" and hidden.relation == "behind"
    assert hidden.details["position"] == pytest.approx(4 / 23)  # dog's crop is farther under the quirk
    scores = score_images(
        ["a dog hidden by a cat", "a cat in front of a dog"], [dets, dets], protocol=T3D, depths=[ramp()] * 2
    )
    assert aggregate(T3D, scores)["score"] == pytest.approx(0.425 + 2 / 23)


def test_score_is_none_when_no_prompt_has_a_relation_word_of_the_benchmark():
    from diffusers_spatial.geometry import aggregate, score_images

    outside = score_images(["a cat above a dog"] * 2, [[], []], protocol="t2i_compbench_2d")  # "above": not its word
    assert aggregate("t2i_compbench_2d", outside)["score"] is None  # was 0.00, read as a measured failure
    inside = score_images(["a cat on the left of a dog"] * 2, [[], []], protocol="t2i_compbench_2d")
    assert aggregate("t2i_compbench_2d", inside)["score"] == 0.0
