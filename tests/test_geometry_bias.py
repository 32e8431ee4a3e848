"""The bias table and the figures every protocol shares."""

import json

import pytest

from diffusers_spatial.geometry import (
    BIAS_TABLE_VERSION,
    ImageScore,
    aggregate,
    bias_table,
    object_order,
    score_images,
)


def det(label, score, box):
    return {"label": label, "score": score, "box": box}


LEFT = [det("cat", 0.9, [0, 0, 100, 100]), det("dog", 0.9, [200, 0, 300, 100])]  # cat left of dog
OVERLAP = [det("cat", 0.9, [0, 0, 100, 100]), det("dog", 0.9, [50, 0, 150, 100])]


def _scores():
    prompts = [
        "a cat to the left of a dog",  # as written (cat < dog): right
        "a cat to the left of a dog",  # right
        "a dog to the right of a cat",  # swapped twin: right
        "a dog to the left of a cat",  # swapped: wrong
        "a cat to the right of a dog",  # as written: wrong
        "a cat to the left of a dog",  # overlap: undetermined under esplora
    ]
    return score_images(prompts, [LEFT, LEFT, LEFT, LEFT, LEFT, OVERLAP])


def test_relations_triplets_and_orders():
    table = bias_table(_scores())
    assert table["version"] == BIAS_TABLE_VERSION == 1 and table["protocol"] == "esplora"
    assert (table["n_images"], table["determined"], table["undetermined"]) == (6, 5, 1)
    assert table["relations"] == {
        "left_of": {"n": 3, "correct": 2, "rate": 2 / 3},
        "right_of": {"n": 2, "correct": 1, "rate": 0.5},
    }
    assert table["triplets"]["cat|left_of|dog"] == {
        "subject": "cat",
        "relation": "left_of",
        "object": "dog",
        "n": 2,
        "correct": 2,
        "rate": 1.0,
    }
    assert table["triplets"]["dog|left_of|cat"]["rate"] == 0.0
    assert table["orders"] == {
        "as_written": {"n": 3, "correct": 2, "rate": 2 / 3},
        "swapped": {"n": 2, "correct": 1, "rate": 0.5},
    }
    assert table["relation_orders"]["right_of"] == {
        "as_written": {"n": 1, "correct": 0, "rate": 0.0},
        "swapped": {"n": 1, "correct": 1, "rate": 1.0},
    }
    assert table["undetermined_by_relation"] == {"left_of": 1}
    json.dumps(table, allow_nan=False)


def test_counterfactual_pairs():
    cf = bias_table(_scores())["counterfactual"]
    # pairs: (cat left dog, dog right cat): 1.0 * 1.0; (cat right dog, dog left cat): 0.0 * 0.0
    assert cf["n_pairs"] == 2 and cf["both_right"] == 1
    assert cf["consistency"] == pytest.approx(0.5)
    assert cf["pairs"]["cat|left_of|dog"] == {
        "as_written": "cat|left_of|dog",
        "swapped": "dog|right_of|cat",
        "as_written_rate": 1.0,
        "swapped_rate": 1.0,
        "consistency": 1.0,
    }


def test_object_order_definition():
    assert object_order("cat", "dog") == "as_written" and object_order("dog", "cat") == "swapped"
    assert object_order("dog", "dog") == "as_written"


def test_same_noun_pair_is_listed_once():
    two = [det("dog", 0.9, [0, 0, 100, 100]), det("dog", 0.9, [200, 0, 300, 100])]
    scores = score_images(["a dog left of a dog", "a dog right of a dog"], [two, two])
    cf = bias_table(scores)["counterfactual"]
    assert cf["n_pairs"] == 1 and cf["consistency"] == 1.0


def test_shared_figures_in_every_protocol():
    prompts = ["a cat on the left of a dog", "a dog on the right of a cat"]
    for protocol in ("visor", "t2i_compbench_2d", "geneval", "esplora"):
        figures = aggregate(protocol, score_images(prompts, [LEFT, LEFT], protocol=protocol))
        assert figures["per_relation"]["left_of"]["rate"] == 1.0, protocol
        assert figures["per_order"]["swapped"]["n"] == 1, protocol
        assert figures["counterfactual"]["consistency"] == 1.0, protocol
        assert figures["object_accuracy"]["both"] == 1.0 and figures["undetermined"] == 0, protocol
        assert figures["bias_table"]["protocol"] == protocol
        json.dumps(figures, allow_nan=False)


def test_inputs_round_trip_through_json_and_protocols_do_not_mix():
    scores = _scores()
    as_json = [json.loads(json.dumps(s.to_dict(), allow_nan=False)) for s in scores]
    assert [ImageScore.from_dict(d) for d in as_json] == scores
    assert aggregate("esplora", as_json)["bias_table"] == bias_table(scores)
    visor = score_images(["a cat left of a dog"], [LEFT], protocol="visor")
    with pytest.raises(ValueError, match="one protocol"):
        bias_table(scores + visor)
    with pytest.raises(ValueError, match="other protocol"):
        aggregate("visor", scores)
    with pytest.raises(ValueError, match="unknown protocol"):
        aggregate("dalle", scores)
    with pytest.raises(ValueError, match="missing key"):
        aggregate("esplora", [{"protocol": "esplora"}])


def test_empty_table():
    table = bias_table([])
    assert table["relations"] == {} and table["counterfactual"]["consistency"] is None and table["protocol"] is None


def test_one_triplet_key_for_the_bias_table_and_tore():
    from diffusers_spatial.geometry import triplet_key
    from diffusers_spatial.tore import triplet_key as tore_triplet_key

    assert tore_triplet_key is triplet_key
    assert triplet_key("Dogs", "left of", "a cat") == triplet_key("dog", "left_of", "cat") == "dog|left_of|cat"
