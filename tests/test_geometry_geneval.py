"""Golden cases for the "geneval" protocol, expected figures computed by hand from the rules."""

import numpy as np
import pytest

from diffusers_spatial.geometry import GenEvalConfig, aggregate, score_image, score_images
from diffusers_spatial.geometry.protocols.geneval import relative_position


def det(label, score, box):
    return {"label": label, "score": score, "box": box}


def test_margin_of_a_tenth_of_the_summed_dimensions():
    # offset x = 5 - 17 = -12; dims 10 + 10 = 20 -> revised -max(12 - 2, 0) = -10; dx = -10 / 12 = -0.833
    dets = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [12, 0, 22, 10])]
    s = score_image("a photo of a cat left of a dog", dets, protocol="geneval")
    assert s.correct is True and s.score == 1.0
    assert s.details["dx"] == pytest.approx(-10 / 12) and s.details["relations_found"] == ["left_of"]
    # offset x = 50 - 55 = -5 < 0.1 * (100 + 100) = 20 -> no relation at all
    dets = [det("cat", 0.9, [0, 0, 100, 100]), det("dog", 0.9, [5, 0, 105, 100])]
    s = score_image("a photo of a cat left of a dog", dets, protocol="geneval")
    assert s.correct is False and s.details["relations_found"] == [] and "no relation" in s.details["reason"]


def test_diagonal_layout_satisfies_two_relations():
    # offset (-100, -100), dims (20, 20) -> revised (-98, -98) / 141.42 = (-0.693, -0.693): left AND above
    dets = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [100, 100, 110, 110])]
    for prompt in ("a photo of a cat left of a dog", "a photo of a cat above a dog"):
        assert score_image(prompt, dets, protocol="geneval").correct is True
    s = score_image("a photo of a cat right of a dog", dets, protocol="geneval")
    assert s.correct is False and sorted(s.details["relations_found"]) == ["above", "left_of"]


def test_direction_threshold_half():
    # point boxes, offset (-100, -200): dx = -100 / 223.6 = -0.447 (not left), dy = -0.894 (above)
    dets = [det("cat", 0.9, [0, 0, 0, 0]), det("dog", 0.9, [100, 200, 100, 200])]
    assert score_image("a cat left of a dog", dets, protocol="geneval").correct is False
    assert score_image("a cat above a dog", dets, protocol="geneval").correct is True
    assert score_image("a cat left of a dog", dets, protocol="geneval", direction_threshold=0.4).correct is True


def test_only_the_most_confident_instance_counts():
    dets = [
        det("cat", 0.5, [0, 0, 10, 10]),  # left of the dog, but not the top cat
        det("dog", 0.9, [100, 0, 110, 10]),
        det("cat", 0.9, [200, 0, 210, 10]),  # top cat: right of the dog
    ]
    s = score_image("a cat left of a dog", dets, protocol="geneval")
    assert s.correct is False and s.details["subject_index"] == 2
    assert score_image("a cat left of a dog", dets, protocol="visor").correct is True  # any pair


def test_threshold_is_strict_and_ties_do_not_depend_on_order():
    dets = [det("cat", 0.3, [0, 0, 10, 10]), det("dog", 0.9, [100, 0, 110, 10])]
    assert score_image("a cat left of a dog", dets, protocol="geneval").objects_found is False
    tied = [det("cat", 0.8, [200, 0, 210, 10]), det("cat", 0.8, [0, 0, 10, 10]), det("dog", 0.9, [100, 0, 110, 10])]
    a = score_image("a cat left of a dog", tied, protocol="geneval")
    b = score_image("a cat left of a dog", tied[::-1], protocol="geneval")
    assert a.correct is b.correct is True  # tie broken by the smaller box, whatever the order


def test_same_class_compares_the_top_box_with_itself():
    dets = [det("dog", 0.9, [0, 0, 10, 10]), det("dog", 0.8, [100, 0, 110, 10])]
    assert score_image("a dog left of a dog", dets, protocol="geneval").correct is False


def test_relative_position_vectorised():
    a = np.array([[0, 0, 10, 10], [0, 0, 100, 100]], dtype=float)
    b = np.array([[12, 0, 22, 10], [5, 0, 105, 100]], dtype=float)
    rel = relative_position(a, b, GenEvalConfig())
    assert rel["left_of"].tolist() == [True, False] and not rel["above"].any()


def test_aggregate_accuracy_and_prompt_accuracy():
    good = [det("cat", 0.9, [0, 0, 10, 10]), det("dog", 0.9, [100, 0, 110, 10])]
    prompts = ["a cat left of a dog"] * 4 + ["a cat right of a dog"] * 4
    dets = [good, [], good, good, good, good, [], []]
    scores = score_images(prompts, dets, protocol="geneval")
    figures = aggregate("geneval", scores)
    assert figures["accuracy"] == pytest.approx(3 / 8)  # images 1, 3, 4 of the first prompt
    assert figures["prompt_accuracy"] == pytest.approx(1 / 2)
    unscored = score_images(["a cat behind a dog"], [good], protocol="geneval")
    assert unscored[0].correct is None
    assert aggregate("geneval", scores + unscored)["accuracy"] == pytest.approx(3 / 8)  # not counted
