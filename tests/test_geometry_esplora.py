"""Golden cases for the "esplora" protocol (ours): margins, every instance, depth without an IoU gate, fallback."""

import numpy as np
import pytest

from diffusers_spatial.geometry import Detection, aggregate, score_image, score_images


def det(label, score, box, mask=None):
    d = {"label": label, "score": score, "box": box}
    if mask is not None:
        d["mask"] = mask
    return d


CAT = det("cat", 0.9, [0, 0, 100, 100])


def test_clear_left_and_normalised_offset():
    # offset -150 over half-extents (100 + 100) / 2 = 100 -> u = -1.5: disjoint, on the left
    s = score_image("a cat to the left of a dog", [CAT, det("dog", 0.8, [150, 0, 250, 100])])
    assert (s.correct, s.score, s.objects_found) == (True, 1.0, True)
    assert s.details["offset"] == pytest.approx(1.5)
    assert score_image("a cat to the right of a dog", [CAT, det("dog", 0.8, [150, 0, 250, 100])]).correct is False


@pytest.mark.parametrize("dog_x1", [40, 25, 10])  # overlaps of 60%, 75%, 90%
def test_touching_or_overlapping_boxes_are_undetermined(dog_x1):
    s = score_image("a cat to the left of a dog", [CAT, det("dog", 0.8, [dog_x1, 0, dog_x1 + 100, 100])])
    assert s.correct is None and s.score == 0.0 and "overlap" in s.details["reason"]
    # VISOR calls all of these "left of"
    assert score_image(
        "a cat to the left of a dog", [CAT, det("dog", 0.8, [dog_x1, 0, dog_x1 + 100, 100])], protocol="visor"
    ).correct


def test_margin_option():
    dets = [CAT, det("dog", 0.8, [70, 0, 170, 100])]  # u = -0.7
    assert score_image("a cat to the left of a dog", dets).correct is True
    assert score_image("a cat to the left of a dog", dets, margin=0.6).correct is True
    assert score_image("a cat to the left of a dog", dets, margin=0.8).correct is None


def test_touching_boxes_count_and_half_overlap_is_the_edge():
    touching = [CAT, det("dog", 0.8, [100, 0, 200, 100])]  # u = -1
    assert score_image("a cat to the left of a dog", touching).correct is True
    half = [CAT, det("dog", 0.8, [50, 0, 150, 100])]  # u = -0.5: each centre on the other's edge
    assert score_image("a cat to the left of a dog", half).correct is None


def test_size_normalisation_small_object_on_a_large_one():
    # cat centre x 25, sofa centre x 155: 130 px apart, u = -130 / 155 = -0.84, but the cat's centre is inside the
    # sofa's extent: it sits on the sofa's end
    dets = [det("cat", 0.9, [20, 145, 30, 155]), det("couch", 0.9, [5, 0, 305, 300])]
    assert score_image("a cat left of a couch", dets).correct is None
    assert score_image("a cat left of a couch", dets, protocol="visor").correct is True


def test_dominant_axis():
    stack = [CAT, det("dog", 0.8, [0, 200, 100, 300])]  # u = (0, -2): separated vertically only
    s = score_image("a cat left of a dog", stack)
    assert s.correct is False and s.details["pairs_violated"] == 1
    assert score_image("a cat above a dog", stack).correct is True
    diagonal = [CAT, det("dog", 0.8, [150, 300, 250, 400])]  # u = (-1.5, -3): mostly above
    assert score_image("a cat left of a dog", diagonal).correct is False
    assert score_image("a cat above a dog", diagonal).correct is True


def test_hedging_an_object_drawn_on_both_sides():
    dets = [CAT, det("dog", 0.8, [150, 0, 250, 100]), det("cat", 0.85, [300, 0, 400, 100])]
    s = score_image("a cat to the left of a dog", dets)
    assert s.correct is False and s.details["hedging"] is True
    assert (s.details["pairs_holding"], s.details["pairs_violated"]) == (1, 1)
    assert "both sides" in s.details["reason"]
    for protocol in ("visor", "t2i_compbench_2d"):  # "any pair" / "first box" rules let it pass
        assert score_image("a cat on the left of a dog", dets, protocol=protocol).correct is True
    # a faint second cat (below the 0.3 threshold) does not count
    dets[2] = det("cat", 0.2, [300, 0, 400, 100])
    assert score_image("a cat to the left of a dog", dets).correct is True


def test_every_instance_on_the_right_side_passes():
    dets = [CAT, det("cat", 0.7, [0, 200, 100, 300]), det("dog", 0.8, [150, 100, 250, 200])]
    # both cats: |u_x| = 1.5, |u_y| = 1.0 -> left dominates for each
    s = score_image("two cats to the left of a dog", dets)
    assert s.correct is True and s.details["pairs"] == 2 and s.details["subject_count"] == 2


def test_same_class_needs_two_instances():
    one = [CAT]
    s = score_image("a cat to the left of a cat", one)
    assert s.objects_found is False and s.correct is False and "two instances" in s.details["reason"]
    two = [CAT, det("cat", 0.9, [200, 0, 300, 100])]
    assert score_image("a cat to the left of a cat", two).correct is True
    stacked = [CAT, det("cat", 0.9, [0, 200, 100, 300])]
    assert score_image("a cat to the left of a cat", stacked).correct is False


def test_next_to_separation():
    near = score_image("a cat next to a dog", [CAT, det("dog", 0.8, [150, 0, 250, 100])])  # separation 1.5
    assert near.correct is True and near.details["separation"] == pytest.approx(1.5)
    middle = score_image("a cat next to a dog", [CAT, det("dog", 0.8, [250, 0, 350, 100])])  # 2.5
    assert middle.correct is None
    far = score_image("a cat next to a dog", [CAT, det("dog", 0.8, [400, 0, 500, 100])])  # 4.0
    assert far.correct is False


def test_depth_median_without_overlap_gate():
    depth = np.zeros((100, 300))
    depth[:, :100] = 1.0  # the cat's area is near
    dets = [CAT, det("dog", 0.8, [200, 0, 300, 100])]  # no overlap at all
    s = score_image("a cat in front of a dog", dets, depth=depth)
    assert s.correct is True and s.details["depth_source"] == "depth_map" and s.details["confidence"] == "high"
    assert s.details["depth_difference"] == pytest.approx(1.0)  # (1 - 0) / range 1
    assert score_image("a cat behind a dog", dets, depth=depth).correct is False
    t2i = score_image("a cat in front of a dog", dets, protocol="t2i_compbench_3d", depth=depth, corrected_crop=True)
    assert t2i.details["position"] == 0.0  # the reference's IoU gate


def test_depth_excludes_the_occluder_and_uses_masks():
    depth = np.zeros((100, 100))
    depth[10:90, 10:90] = 0.2  # a far dog filling most of the frame
    depth[40:90, 40:70] = 0.9  # a near cat in front of it
    dets = [det("cat", 0.9, [40, 40, 70, 90]), det("dog", 0.9, [10, 10, 90, 90])]
    s = score_image("a cat in front of a dog", dets, depth=depth)
    assert s.correct is True and s.details["depth_difference"] == pytest.approx(0.7 / 0.9)
    # a box that is mostly background says "far", the mask finds the object
    mask = np.zeros((100, 100), dtype=bool)
    mask[45:50, 45:50] = True
    depth2 = np.zeros((100, 100))
    depth2[45:50, 45:50] = 1.0
    depth2[:, 90:] = 0.5
    dets2 = [det("cat", 0.9, [0, 0, 80, 80], mask=mask), det("dog", 0.9, [90, 0, 100, 100])]
    assert score_image("a cat in front of a dog", dets2, depth=depth2).correct is True
    dets2[0] = det("cat", 0.9, [0, 0, 80, 80])
    assert score_image("a cat in front of a dog", dets2, depth=depth2).correct is False
    obj = Detection("cat", 0.9, (0, 0, 80, 80), mask=mask)  # dataclass with a mask
    assert score_image("a cat in front of a dog", [obj, dets2[1]], depth=depth2).correct is True


def test_depth_within_noise_and_constant_maps_are_undetermined():
    depth = np.zeros((100, 300))
    depth[:, :100] = 0.51
    depth[:, 200:] = 0.50
    depth[0, 150] = 1.0  # range p5..p95 = 0.51 - 0 -> difference 0.01 / 0.51 < 0.05
    dets = [CAT, det("dog", 0.8, [200, 0, 300, 100])]
    s = score_image("a cat in front of a dog", dets, depth=depth)
    assert s.correct is None and "noise" in s.details["reason"]
    flat = score_image("a cat in front of a dog", dets, depth=np.full((100, 300), 2.0))
    assert flat.correct is None and "constant depth map" in flat.details["reason"]
    with pytest.raises(ValueError, match="non-finite"):
        score_image("a cat in front of a dog", dets, depth=np.full((100, 300), np.nan))
    with pytest.raises(ValueError, match="mask shape"):
        score_image(
            "a cat in front of a dog", [det("cat", 0.9, [0, 0, 10, 10], mask=np.ones((5, 5))), dets[1]], depth=depth
        )


def test_geometric_fallback_without_depth():
    lower = [det("cat", 0.9, [0, 200, 100, 300]), det("dog", 0.9, [200, 100, 300, 200])]
    s = score_image("a cat in front of a dog", lower)  # cat's bottom 100 px lower: ground contact says nearer
    assert s.correct is True
    assert s.details["depth_source"] == "geometric_fallback" and s.details["confidence"] == "low"
    assert s.details["ground_offset"] == pytest.approx(1.0)
    assert score_image("a cat behind a dog", lower).correct is False
    # overlapping, larger and lower: occlusion and ground contact agree
    occluding = [det("cat", 0.9, [0, 0, 200, 210]), det("dog", 0.9, [100, 50, 160, 150])]
    assert score_image("a cat in front of a dog", occluding).correct is True
    # lower but much smaller and overlapping: the cues disagree -> undetermined
    conflict = [det("cat", 0.9, [100, 150, 120, 260]), det("dog", 0.9, [0, 0, 200, 200])]
    assert score_image("a cat in front of a dog", conflict).correct is None


def test_missing_objects_and_empty_lists_are_wrong_not_undetermined():
    s = score_image("a cat to the left of a dog", [])
    assert s.correct is False and s.objects_found is False and "['cat', 'dog']" in s.details["reason"]
    s = score_image("a cat to the left of a dog", [det("bird", 0.9, [0, 0, 1, 1])])
    assert s.correct is False and s.details["subject_count"] == 0


def test_aggregate_counts_undetermined_as_not_correct():
    dog = det("dog", 0.8, [150, 0, 250, 100])
    overlap = det("dog", 0.8, [50, 0, 150, 100])
    hedge = [CAT, dog, det("cat", 0.9, [300, 0, 400, 100])]
    scores = score_images(["a cat to the left of a dog"] * 4, [[CAT, dog], [CAT, overlap], hedge, []])
    assert [s.correct for s in scores] == [True, None, False, False]
    figures = aggregate("esplora", scores)
    assert figures["accuracy"] == pytest.approx(1 / 4)
    assert figures["determined_accuracy"] == pytest.approx(1 / 3)
    assert figures["coverage"] == pytest.approx(3 / 4)
    assert figures["hedging_rate"] == pytest.approx(1 / 4)
    assert figures["undetermined"] == 1 and figures["low_confidence"] == 0
