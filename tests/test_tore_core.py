"""TORE's rewrite rule: exact cases (ties, tau edges, min_count fallback, unknown and unreadable prompts),
properties, validation, construction from bias tables, and save / load."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusers_spatial.relations import CONVERSE, RELATIONS, parse_spatial_prompt
from diffusers_spatial.tore import Tore, ToreDecision

RATES = {"left_of": 0.31, "right_of": 0.62, "above": 0.55, "below": 0.48, "in_front_of": 0.40, "behind": 0.22}


def test_issue_example_rates():
    tore = Tore(success_rates=RATES, tau=0.1)
    assert tore.rewrite("a cat to the left of a dog") == "a dog to the right of a cat"  # 0.62 > 0.31 + 0.1
    assert tore.rewrite("a cat to the right of a dog") == "a cat to the right of a dog"
    assert tore.rewrite("a cat above a dog") == "a cat above a dog"  # 0.48 < 0.55
    assert tore.rewrite("a cat below a dog") == "a cat below a dog"  # 0.55 - 0.48 = 0.07 <= 0.1
    assert tore.rewrite("a cat behind a dog") == "a dog in front of a cat"  # 0.40 - 0.22 = 0.18 > 0.1
    assert tore.rewrite("a cat in front of a dog") == "a cat in front of a dog"


def test_swap_is_exactly_spatial_prompt_swapped():
    tore = Tore(success_rates={"left_of": 0.1, "right_of": 0.9})
    for prompt in [
        "A photo of two red cats on the left side of a wooden bench, in the snow",
        "a cat is directly to the left of a dog.",
        "an oil painting of a traffic light left of a fire hydrant at night",
    ]:
        assert tore.rewrite(prompt) == parse_spatial_prompt(prompt).swapped()


@pytest.mark.parametrize(
    ("written", "swapped", "tau", "rewritten"),
    [
        (0.5, 0.5, 0.0, False),  # tie keeps the prompt as written
        (0.5, 0.500001, 0.0, True),  # strictly better, tau 0
        (0.6, 0.5, 0.0, False),  # written better
        (0.3, 0.4, 0.1, False),  # exceeds by exactly tau: not MORE than tau (decimal arithmetic, not binary)
        (0.3, 0.41, 0.1, True),
        (0.2, 0.7, 0.5, False),  # margin exactly tau again
        (0.0, 1.0, 1.0, False),  # tau = 1 never rewrites, even from 0 to 1
        (0.0, 1.0, 0.999, True),
        (0.0, 0.0, 0.0, False),
        (1.0, 1.0, 0.0, False),
    ],
)
def test_tau_edges_and_ties(written, swapped, tau, rewritten):
    tore = Tore(success_rates={"above": written, "below": swapped}, tau=tau)
    decision = tore.decide("a kite above a tree")
    assert decision.rewritten is rewritten
    assert decision.prompt == ("a tree below a kite" if rewritten else "a kite above a tree")
    assert decision.source == "relation"
    assert (decision.rate_original, decision.rate_swapped) == (written, swapped)


def _pair_tore(written_n, swapped_n, min_count=5, tau=0.0):
    # Relation rates say "keep"; triplet rates say "swap": the source that decides is visible in the outcome.
    return Tore(
        success_rates={"left_of": 0.8, "right_of": 0.2},
        triplet_rates={
            "cat|left_of|dog": {"n": written_n, "rate": 0.1},
            "dog|right_of|cat": {"n": swapped_n, "rate": 0.9},
        },
        tau=tau,
        min_count=min_count,
    )


@pytest.mark.parametrize(
    ("written_n", "swapped_n", "source", "rewritten"),
    [
        (5, 5, "triplet", True),  # both at exactly min_count: triplets decide
        (50, 9, "triplet", True),
        (4, 5, "relation", False),  # written triplet one short: relation rates for BOTH variants
        (5, 4, "relation", False),  # swapped triplet one short
        (100, 0, "relation", False),  # n = 0 entries are ignored
    ],
)
def test_min_count_fallback(written_n, swapped_n, source, rewritten):
    decision = _pair_tore(written_n, swapped_n).decide("a cat to the left of a dog")
    assert (decision.source, decision.rewritten) == (source, rewritten)
    if source == "triplet":
        assert (decision.rate_original, decision.rate_swapped) == (0.1, 0.9)
        assert (decision.count_original, decision.count_swapped) == (written_n, swapped_n)
    else:
        assert (decision.rate_original, decision.rate_swapped) == (0.8, 0.2)
        assert "both sides" in decision.reason


def test_triplets_use_singular_head_nouns():
    tore = _pair_tore(10, 10)
    decision = tore.decide("a photo of three cats to the left of two big dogs")
    assert decision.source == "triplet" and decision.rewritten
    assert decision.prompt == "a photo of two big dogs to the right of three cats"


def test_only_one_triplet_present_falls_back_to_relation_rates():
    tore = Tore(
        success_rates={"left_of": 0.5, "right_of": 0.9},
        triplet_rates={"cat|left_of|dog": {"n": 1000, "rate": 0.99}},
        min_count=10,
    )
    decision = tore.decide("a cat to the left of a dog")
    assert decision.source == "relation" and decision.rewritten  # 0.99 is never compared with 0.9
    assert decision.count_original == 1000 and decision.count_swapped is None


@pytest.mark.parametrize(
    ("rates", "reason"),
    [
        ({}, "no success rate for left_of, right_of"),
        ({"left_of": 0.1}, "no success rate for right_of"),
        ({"right_of": 0.9}, "no success rate for left_of"),
        ({"above": 0.1, "below": 0.9}, "no success rate for left_of, right_of"),
    ],
)
def test_unknown_relation_keeps_prompt(rates, reason):
    decision = Tore(success_rates=rates).decide("a cat to the left of a dog")
    assert decision.prompt == "a cat to the left of a dog" and not decision.rewritten
    assert decision.source == "none" and reason in decision.reason
    assert decision.swapped == "a dog to the right of a cat"


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "   ",
        "a cat sleeping on a sofa",
        "left of a dog",
        "a cat to the left of",
        "a cat left of a dog above a tree",
    ],
)
def test_unreadable_prompts_pass_through(prompt):
    decision = Tore(success_rates=dict.fromkeys(RELATIONS, 0.0) | {"right_of": 1.0, "below": 1.0}).decide(prompt)
    assert decision.prompt == prompt and decision.original == prompt
    assert decision.source == "none" and decision.swapped is None and not decision.rewritten


def test_next_to_is_symmetric_unless_triplets_differ():
    tore = Tore(success_rates={"next_to": 0.4})
    assert tore.decide("a cat next to a dog").reason.startswith("relation rates")
    assert tore.rewrite("a cat next to a dog") == "a cat next to a dog"
    tore = Tore(
        success_rates={"next_to": 0.4},
        triplet_rates={"cat|next_to|dog": (0.2, 30), "dog|next_to|cat": (0.6, 30)},
    )
    assert tore.rewrite("a cat near a dog") == "a dog next to a cat"


def test_rewrite_lists_and_type_errors():
    tore = Tore(success_rates=RATES, tau=0.1)
    assert tore.rewrite(["a cat to the left of a dog", "a red car"]) == ["a dog to the right of a cat", "a red car"]
    with pytest.raises(TypeError, match="prompt must be a str"):
        tore.decide(3)
    assert isinstance(tore.decide("a red car"), ToreDecision)
    assert json.dumps(tore.decide("a cat to the left of a dog").to_dict())


_rate = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(rates=st.fixed_dictionaries(dict.fromkeys(RELATIONS, _rate)), tau=_rate)
def test_rule_property(rates, tau):
    tore = Tore(success_rates=rates, tau=tau)
    for relation, phrase in [("left_of", "to the left of"), ("above", "above"), ("behind", "behind")]:
        prompt = f"a photo of a cat {phrase} a dog"
        decision = tore.decide(prompt)
        margin = rates[CONVERSE[relation]] - rates[relation]
        should_swap = margin > tau + 1e-9
        assert decision.rewritten is should_swap
        assert decision.prompt == (parse_spatial_prompt(prompt).swapped() if should_swap else prompt)
        # The rule is stable: the chosen variant is never rewritten back.
        assert not tore.decide(decision.prompt).rewritten
        if tau == 1.0:
            assert not decision.rewritten


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tau": -0.1}, ValueError, r"tau must be in \[0, 1\], got -0.1"),
        ({"tau": 1.5}, ValueError, r"tau must be in \[0, 1\], got 1.5"),
        ({"tau": math.nan}, ValueError, "tau must be in"),
        ({"tau": "0.1"}, TypeError, "tau must be a number"),
        ({"tau": True}, TypeError, "tau must be a number"),
        ({"success_rates": {"left_of": 1.2}}, ValueError, r"success rate of 'left_of' must be in \[0, 1\], got 1.2"),
        ({"success_rates": {"left_of": -0.01}}, ValueError, "got -0.01"),
        ({"success_rates": {"left_of": math.nan}}, ValueError, "must be in"),
        ({"success_rates": {"diagonal": 0.5}}, ValueError, "unknown relation 'diagonal'"),
        ({"success_rates": {"left_of": 0.5, "left of": 0.6}}, ValueError, "twice"),
        ({"success_rates": [0.5]}, TypeError, "mapping"),
        ({"min_count": 0}, ValueError, "min_count must be an integer >= 1, got 0"),
        ({"min_count": 2.5}, TypeError, "min_count"),
        ({"triplet_rates": {"cat|left_of": {"n": 3, "rate": 0.5}}}, ValueError, "subject|relation|object"),
        ({"triplet_rates": {"cat|left_of|dog": {"rate": 0.5}}}, ValueError, "no sample count"),
        ({"triplet_rates": {"cat|left_of|dog": {"n": -1, "rate": 0.5}}}, ValueError, "count 'n' must be"),
        ({"triplet_rates": {"cat|left_of|dog": {"n": 3, "rate": 2}}}, ValueError, r"rate must be in \[0, 1\], got 2"),
        ({"triplet_rates": {"cat|sideways|dog": (0.5, 3)}}, ValueError, "unknown relation 'sideways'"),
    ],
)
def test_validation_names_the_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        Tore(**{"success_rates": {"left_of": 0.5}, **kwargs})


def test_surface_phrases_and_counts_are_normalised():
    tore = Tore(
        success_rates={"to the left of": 0.2, "RIGHT_OF": 0.7},
        triplet_rates={("Cats", "left of", "Dog"): {"n": 10, "correct": 2}, "dog|right_of|cat": (0.8, 10)},
    )
    assert tore.success_rates == {"left_of": 0.2, "right_of": 0.7}
    assert tore.triplet_rates["cat|left_of|dog"] == {"n": 10, "rate": 0.2}


def _bias_table():
    from diffusers_spatial.geometry import bias_table, score_images

    def dets(cat_x, dog_x):
        return [
            {"label": "cat", "score": 0.9, "box": [cat_x, 0, cat_x + 10, 10]},
            {"label": "dog", "score": 0.9, "box": [dog_x, 0, dog_x + 10, 10]},
        ]

    # The "model" always draws the first-mentioned object on the right: left_of fails, right_of succeeds.
    prompts, detections = [], []
    for _ in range(3):
        prompts += ["a cat to the left of a dog", "a dog to the right of a cat"]
        detections += [dets(50, 0), dets(0, 50)]
    return bias_table(score_images(prompts, detections, protocol="visor"))


def test_from_report_with_a_real_bias_table(tmp_path):
    table = _bias_table()
    assert table["relations"]["left_of"]["rate"] == 0.0 and table["relations"]["right_of"]["rate"] == 1.0
    tore = Tore.from_report(table, tau=0.2, min_count=3)
    assert tore.triplet_rates == {"cat|left_of|dog": {"n": 3, "rate": 0.0}, "dog|right_of|cat": {"n": 3, "rate": 1.0}}
    decision = tore.decide("a photo of a cat to the left of a dog")
    assert decision.source == "triplet" and decision.prompt == "a photo of a dog to the right of a cat"
    # Same table inside a report, per protocol, and as a JSON file.
    assert Tore.from_report({"bias_table": table}, tau=0.2, min_count=3) == tore
    nested = {"visor": {"bias_table": table}, "geneval": {"bias_table": {"relations": {}}}}
    assert Tore.from_report(nested, protocol="visor", tau=0.2, min_count=3) == tore
    with pytest.raises(ValueError, match="choose one with protocol"):
        Tore.from_report(nested)
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"bias_table": table}))
    assert Tore.from_report(path, tau=0.2, min_count=3) == tore
    with pytest.raises(ValueError, match="no bias table found"):
        Tore.from_report({"accuracy": 0.5})
    with pytest.raises(ValueError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        Tore.from_report(tmp_path / "bad.json")


def test_from_report_skips_empty_entries():
    table = {
        "relations": {
            "left_of": {"n": 0, "correct": 0, "rate": None},
            "right_of": {"n": 4, "correct": 3, "rate": 0.75},
        },
        "triplets": {"cat|right_of|dog": {"subject": "cat", "relation": "right_of", "object": "dog", "n": 0}},
    }
    tore = Tore.from_report(table)
    assert tore.success_rates == {"right_of": 0.75} and tore.triplet_rates == {}
    assert tore.decide("a cat to the left of a dog").source == "none"


def test_save_and_load_round_trip(tmp_path):
    tore = Tore(
        success_rates=RATES,
        triplet_rates={"cat|left_of|dog": {"n": 12, "rate": 0.25}, "dog|right_of|cat": {"n": 12, "rate": 0.75}},
        tau=0.05,
        min_count=12,
    )
    tore.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tore_config.json").read_text())
    assert config["tau"] == 0.05 and config["min_count"] == 12 and config["_class_name"] == "Tore"
    loaded = Tore.from_pretrained(tmp_path)
    assert loaded == tore and loaded.to_dict() == tore.to_dict()
    assert Tore.from_pretrained(tmp_path / "tore_config.json") == tore
    prompts = ["a cat to the left of a dog", "a cat below a dog", "a bird behind a tree", "a red car"]
    assert [loaded.decide(p) for p in prompts] == [tore.decide(p) for p in prompts]
    assert Tore(success_rates=RATES, tau=0.06) != tore


def test_from_pretrained_rejects_other_json(tmp_path):
    (tmp_path / "tore_config.json").write_text(json.dumps({"foo": 1}))
    with pytest.raises(ValueError, match="not a TORE config"):
        Tore.from_pretrained(tmp_path)
    (tmp_path / "tore_config.json").write_text(json.dumps({"success_rates": {"left_of": 3}}))
    with pytest.raises(ValueError, match="got 3"):
        Tore.from_pretrained(tmp_path)


def test_from_report_picks_the_named_protocol_of_a_metric_report():
    def table(rate):
        return {"version": 1, "relations": {"left_of": {"n": 10, "correct": int(rate * 10), "rate": rate}}}

    report = {
        "bias_table": table(0.2),
        "protocols": {"esplora": {"bias_table": table(0.2)}, "visor": {"bias_table": table(0.7)}},
    }
    assert Tore.from_report(report).success_rates["left_of"] == 0.2
    assert Tore.from_report(report, protocol="visor").success_rates["left_of"] == 0.7
    with pytest.raises(ValueError, match="geneval"):
        Tore.from_report(report, protocol="geneval")
