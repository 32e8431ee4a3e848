"""Golden cases for the "esplora" protocol (ours): margins, every instance, depth without an IoU gate, fallback."""

import numpy as np
import pytest

from diffusers_spatial.geometry import Detection, aggregate, score_image, score_images
from diffusers_spatial.geometry.protocols import EsploraConfig


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
    # same_object_iou=1.0: at 90% overlap (IoU 0.82) the default would merge the two as one object labelled twice
    s = score_image(
        "a cat to the left of a dog", [CAT, det("dog", 0.8, [dog_x1, 0, dog_x1 + 100, 100])], same_object_iou=1.0
    )
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


# One object labelled twice (per-class NMS keeps a dog box also as a weaker "cat"): same_object_iou merges them.
DOG = det("dog", 0.8, [0, 200, 100, 300])
DOG_AS_CAT = det("cat", 0.4, [2, 201, 101, 300])  # IoU ~0.97 with DOG
CAT_ABOVE = det("cat", 0.9, [0, 0, 100, 100])


def test_duplicate_label_on_one_object_is_merged():
    s = score_image("a cat above a dog", [CAT_ABOVE, DOG, DOG_AS_CAT])
    assert s.correct is True and s.details["hedging"] is False
    assert s.details["merged_duplicates"] == 1 and s.details["subject_count"] == 1 and s.details["pairs"] == 1
    unmerged = score_image("a cat above a dog", [CAT_ABOVE, DOG, DOG_AS_CAT], same_object_iou=1.0)
    assert unmerged.correct is None and unmerged.details["merged_duplicates"] == 0  # the old failure mode
    # order-independent, and the roles swap: "a dog below a cat" keeps the dog, drops the weaker "cat"
    assert score_image("a cat above a dog", [DOG_AS_CAT, DOG, CAT_ABOVE]).details == s.details
    below = score_image("a dog below a cat", [CAT_ABOVE, DOG, DOG_AS_CAT])
    assert below.correct is True and below.details["merged_duplicates"] == 1
    # no real cat: the duplicate is dropped and the cat is missing (wrong, not a hedge)
    alone = score_image("a cat above a dog", [DOG, DOG_AS_CAT])
    assert alone.correct is False and alone.objects_found is False
    assert alone.details["merged_duplicates"] == 1 and "weaker label of the same object" in alone.details["reason"]
    # next_to would otherwise hold between the object and itself
    assert score_image("a cat next to a dog", [DOG, DOG_AS_CAT]).correct is False
    assert score_image("a cat next to a dog", [DOG, DOG_AS_CAT], same_object_iou=1.0).correct is True


def test_duplicate_tie_break():
    # the higher score wins whichever noun it is: here the box is a "cat" 0.8 also labelled "dog" 0.4
    cat_box, dog_box = det("cat", 0.8, [0, 200, 100, 300]), det("dog", 0.4, [2, 201, 101, 300])
    s = score_image("a cat above a dog", [cat_box, dog_box, det("dog", 0.9, [0, 400, 100, 500])])
    assert s.correct is True and s.details["merged_duplicates"] == 1 and s.details["object_count"] == 1
    # equal scores: which label is right cannot be told -> undetermined, nothing dropped
    tie = score_image("a cat above a dog", [CAT_ABOVE, DOG, det("cat", 0.8, [2, 201, 101, 300])])
    assert tie.correct is None and tie.score == 0.0 and tie.details["merged_duplicates"] == 0
    assert "equal scores" in tie.details["reason"]
    assert score_image("a cat next to a dog", [DOG, det("cat", 0.8, [2, 201, 101, 300])]).correct is None
    # several weaker labels on one box are all dropped
    chain = [CAT_ABOVE, DOG, DOG_AS_CAT, det("cat", 0.3, [1, 200, 100, 301])]
    assert score_image("a cat above a dog", chain).details["merged_duplicates"] == 2


def test_below_the_iou_threshold_nothing_merges():
    # IoU of [0, 200, 100, 300] and [40, 200, 140, 300] = 60 / 140 = 0.43: two objects side by side
    beside = [CAT_ABOVE, DOG, det("cat", 0.4, [40, 200, 140, 300])]
    s = score_image("a cat above a dog", beside)
    assert s.details["merged_duplicates"] == 0 and s.details["subject_count"] == 2 and s.correct is None
    merged = score_image("a cat above a dog", beside, same_object_iou=0.4)
    assert merged.details["merged_duplicates"] == 1 and merged.correct is True
    # the threshold is inclusive
    half = [CAT_ABOVE, DOG, det("cat", 0.4, [0, 200, 50, 300])]  # IoU 0.5
    assert score_image("a cat above a dog", half, same_object_iou=0.5).details["merged_duplicates"] == 1
    assert score_image("a cat above a dog", half, same_object_iou=0.51).details["merged_duplicates"] == 0


def test_same_noun_prompt_is_not_merged():
    # two dogs on nearly the same box (IoU ~0.97) in "a dog left of a dog": never merged across one label
    dets = [DOG, det("dog", 0.4, [2, 201, 101, 300]), det("dog", 0.9, [300, 200, 400, 300])]
    s = score_image("a dog to the left of a dog", dets)
    assert s.correct is True and s.details["merged_duplicates"] == 0 and s.details["subject_count"] == 3
    assert score_image("a dog to the left of a dog", dets, same_object_iou=0.1).details == s.details


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 1.01, 2, float("nan"), float("inf"), True, "0.7", None])
def test_same_object_iou_validation(value):
    with pytest.raises(ValueError, match="same_object_iou"):
        score_image("a cat above a dog", [CAT_ABOVE, DOG], same_object_iou=value)
    with pytest.raises(ValueError, match="same_object_iou"):
        EsploraConfig(same_object_iou=value)


def test_same_object_iou_batch_matches_single_images():
    prompts = ["a cat above a dog", "a dog below a cat", "a cat next to a dog", "a dog left of a dog"]
    lists = [[CAT_ABOVE, DOG, DOG_AS_CAT], [DOG_AS_CAT, DOG], [], [DOG, det("dog", 0.4, [2, 201, 101, 300])]]
    batch = score_images(prompts, lists)
    assert batch == [score_image(p, d) for p, d in zip(prompts, lists)]
    assert [s.details["merged_duplicates"] for s in batch] == [1, 1, 0, 0]


def test_at_most_max_instances_per_noun_count_and_the_cut_is_counted():
    # 17 confident dogs on the left of the cat, the weakest on its right: the 16 strongest decide
    dogs = [det("dog", 0.9 - 0.01 * i, [i, 0, i + 20, 20]) for i in range(16)]
    stray = det("dog", 0.5, [500, 0, 520, 20])
    cat = det("cat", 0.9, [200, 0, 220, 20])
    s = score_image("a dog to the left of a cat", [stray, *dogs, cat])
    assert s.correct is True and s.details["instances_cut"] == 1 and s.details["pairs"] == 16
    full = score_image("a dog to the left of a cat", [stray, *dogs, cat], max_instances=17)
    assert full.correct is False and full.details["instances_cut"] == 0
    # a detector returning thousands of boxes costs at most 16 x 16 pair judgements
    many = [det("dog", 0.5, [i % 100, 0, i % 100 + 20, 20]) for i in range(5000)]
    assert score_image("a dog to the left of a cat", [*many, cat]).details["pairs"] == 16
    with pytest.raises(ValueError, match="max_instances"):
        EsploraConfig(max_instances=1)


def test_top_k_keeps_the_highest_scores_per_image():
    from diffusers_spatial.geometry.segments import top_k

    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.7, 0.2, 0.8])
    image = np.array([0, 0, 0, 0, 1, 1, 1])
    flags = np.array([True, True, True, True, True, False, True])
    assert top_k(flags, scores, image, 2).tolist() == [False, True, True, False, True, False, True]  # tie: earlier
    assert not top_k(np.zeros(3, bool), scores[:3], image[:3], 2).any()
