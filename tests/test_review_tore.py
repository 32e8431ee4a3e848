"""External review of `diffusers_spatial.tore.Tore` against issue 5's rule, on calibration tables not seen before."""

import json

import numpy as np
import pytest

from diffusers_spatial.geometry import aggregate, bias_table, score_images
from diffusers_spatial.relations import parse_spatial_prompt
from diffusers_spatial.tore import Tore

RATES = {"left_of": 0.31, "right_of": 0.62, "above": 0.55, "below": 0.48, "in_front_of": 0.40, "behind": 0.22}


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("a cat to the left of a dog", "a dog to the right of a cat"),  # 0.62 > 0.31 + 0.1
        ("a cat to the right of a dog", "a cat to the right of a dog"),
        ("a cat below a dog", "a cat below a dog"),  # 0.55 - 0.48 = 0.07 is not more than 0.1
        ("a cat above a dog", "a cat above a dog"),
        ("a cat behind a dog", "a dog in front of a cat"),  # 0.40 > 0.22 + 0.1
        ("a cat in front of a dog", "a cat in front of a dog"),
        ("a cat next to a dog", "a cat next to a dog"),  # no rate for next_to: kept
        (
            "A photo of two cats on the left of a bench, at night",
            "A photo of a bench to the right of two cats, at night",
        ),
    ],
)
def test_rewrite_against_the_issue_table(prompt, expected):
    tore = Tore(success_rates=RATES, tau=0.1)
    assert tore.rewrite(prompt) == expected
    decision = tore.decide(prompt)
    assert decision.rewritten == (expected != prompt)
    if decision.rewritten:
        assert decision.prompt == parse_spatial_prompt(prompt).swapped()


@pytest.mark.parametrize(
    "written, swapped, tau, rewrites",
    [
        (0.3, 0.3, 0.0, False),  # tie
        (0.3, 0.31, 0.0, True),
        (0.3, 0.5, 0.2, False),  # exactly tau: not MORE than tau
        (0.3, 0.51, 0.2, True),
        (0.0, 1.0, 1.0, False),  # tau = 1 never rewrites
        (0.0, 1.0, 0.99, True),
        (0.7, 0.2, 0.0, False),  # the written form is better
    ],
)
def test_margin_rule(written, swapped, tau, rewrites):
    tore = Tore(success_rates={"left_of": written, "right_of": swapped}, tau=tau)
    assert tore.decide("a cat to the left of a dog").rewritten is rewrites


def test_unknown_relations_keep():
    assert Tore(success_rates={"left_of": 0.1}).rewrite("a cat left of a dog") == "a cat left of a dog"
    assert Tore(success_rates={"right_of": 0.9}).rewrite("a cat left of a dog") == "a cat left of a dog"
    assert Tore().rewrite("a cat left of a dog") == "a cat left of a dog"


@pytest.mark.parametrize("prompt", ["", "a red car", "left of a dog", "a cat left of a dog above a tree", "a cat"])
def test_unreadable_prompts_pass_through(prompt):
    tore = Tore(success_rates={r: 0.0 if r in ("left_of", "below") else 1.0 for r in RATES})
    decision = tore.decide(prompt)
    assert decision.prompt == prompt and not decision.rewritten and decision.source == "none"


@pytest.mark.parametrize("tau", [-0.01, 1.01, float("nan"), float("inf")])
def test_tau_outside_unit_interval_is_rejected(tau):
    with pytest.raises(ValueError, match="tau"):
        Tore(success_rates=RATES, tau=tau)


@pytest.mark.parametrize("tau", ["0.1", None, True])
def test_tau_not_a_number_is_rejected(tau):
    with pytest.raises(TypeError, match="tau"):
        Tore(success_rates=RATES, tau=tau)


def test_bad_rates_are_rejected():
    with pytest.raises(ValueError, match="sideways"):
        Tore(success_rates={"sideways": 0.5})
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        Tore(success_rates={"left_of": 1.5})
    with pytest.raises(ValueError, match="min_count"):
        Tore(success_rates=RATES, min_count=0)


def test_numpy_values_are_accepted():
    tore = Tore(success_rates={"left_of": np.float32(0.2), "right_of": np.float64(0.8)}, tau=np.float64(0.1))
    assert tore.rewrite("a cat left of a dog") == "a dog to the right of a cat"
    json.dumps(tore.to_dict())


def test_list_inputs():
    tore = Tore(success_rates=RATES, tau=0.1)
    prompts = ["a cat to the left of a dog", "a red car", "a cat above a dog"]
    assert tore.rewrite(prompts) == ["a dog to the right of a cat", "a red car", "a cat above a dog"]
    assert tore(prompts) == tore.rewrite(prompts)
    assert tore.rewrite([]) == []


TRIPLETS = {"cat|left_of|dog": {"n": 5, "rate": 0.1}, "dog|right_of|cat": {"n": 50, "rate": 0.9}}


def test_min_count_triplet_fallback():
    relation_rates = {"left_of": 0.6, "right_of": 0.4}
    # the written triplet has 5 < 10 samples: both sides fall back to relation rates (0.4 vs 0.6: kept)
    d = Tore(success_rates=relation_rates, triplet_rates=TRIPLETS, min_count=10).decide("a cat left of a dog")
    assert d.source == "relation" and not d.rewritten and (d.rate_original, d.rate_swapped) == (0.6, 0.4)
    # both triplets have >= 5: triplet rates decide (0.9 vs 0.1: swap)
    d = Tore(success_rates=relation_rates, triplet_rates=TRIPLETS, min_count=5).decide(
        "two cats to the left of the dogs"
    )
    assert d.source == "triplet" and d.prompt == "the dogs to the right of two cats"
    assert (d.count_original, d.count_swapped) == (5, 50)
    # no relation rates and too few triplet samples: kept
    d = Tore(triplet_rates=TRIPLETS, min_count=6).decide("a cat left of a dog")
    assert d.source == "none" and not d.rewritten


def test_rule_is_stable():
    tore = Tore(success_rates=RATES, tau=0.0)
    for prompt in ["a cat to the left of a dog", "a cat behind a dog", "a cat below a dog"]:
        once = tore.rewrite(prompt)
        assert tore.rewrite(once) == once


def _det(label, box):
    return {"label": label, "score": 0.9, "box": box}


CAT_LEFT = [_det("cat", [0, 0, 10, 10]), _det("dog", [50, 0, 60, 10])]
CAT_RIGHT = [_det("cat", [50, 0, 60, 10]), _det("dog", [0, 0, 10, 10])]
PROMPTS = ["a cat to the left of a dog"] * 4 + ["a dog to the right of a cat"] * 4
DETECTIONS = [CAT_RIGHT] * 3 + [CAT_LEFT] + [CAT_LEFT] * 4  # left_of 1/4, right_of 4/4


@pytest.mark.parametrize("protocol", ["visor", "geneval", "esplora"])
def test_from_bias_table_and_aggregate(protocol, tmp_path):
    scores = score_images(PROMPTS, DETECTIONS, protocol=protocol)
    table = bias_table(scores)
    tore = Tore.from_report(table, tau=0.1, min_count=4)
    assert tore.success_rates == {"left_of": 0.25, "right_of": 1.0}
    assert tore.triplet_rates == {"cat|left_of|dog": {"n": 4, "rate": 0.25}, "dog|right_of|cat": {"n": 4, "rate": 1.0}}
    assert tore.decide("a cat to the left of a dog").source == "triplet"
    assert tore.rewrite("a cat to the left of a dog") == "a dog to the right of a cat"
    report = aggregate(protocol, scores)
    assert Tore.from_report(report, tau=0.1, min_count=4) == tore
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert Tore.from_report(str(path), tau=0.1, min_count=4) == tore
    assert Tore.from_report(path, tau=0.1, min_count=4) == tore


def test_from_metric_report():
    from diffusers_spatial.metric import evaluate_detections

    report = evaluate_detections(DETECTIONS, PROMPTS, progress=False)
    report = json.loads(json.dumps(report))
    for protocol in (None, "visor", "geneval", "esplora"):
        tore = Tore.from_report(report, protocol=protocol, tau=0.1, min_count=4)
        assert tore.success_rates == {"left_of": 0.25, "right_of": 1.0}
        assert tore.rewrite("a cat to the left of a dog") == "a dog to the right of a cat"
    with pytest.raises(ValueError, match="no bias table for protocol"):
        Tore.from_report(report, protocol="nope")


def test_from_report_refuses_what_is_not_a_table(tmp_path):
    with pytest.raises(ValueError, match="no bias table"):
        Tore.from_report({"accuracy": 0.5})
    with pytest.raises(ValueError, match="folder"):
        Tore.from_report(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Tore.from_report(bad)


def test_save_and_load_round_trip(tmp_path):
    tore = Tore(success_rates=RATES, triplet_rates=TRIPLETS, tau=0.15, min_count=5)
    tore.save_pretrained(tmp_path / "tore")
    assert (tmp_path / "tore" / "tore_config.json").is_file()
    loaded = Tore.from_pretrained(tmp_path / "tore")
    assert loaded == tore
    assert Tore.from_pretrained(tmp_path / "tore" / "tore_config.json") == tore
    assert (loaded.tau, loaded.min_count) == (0.15, 5)
    for prompt in ["a cat to the left of a dog", "a cat behind a dog", "a cat below a dog", "a red car"]:
        assert loaded.decide(prompt) == tore.decide(prompt)
