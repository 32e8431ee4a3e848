"""Relation-balanced sampling: the weights' guarantees, and the samplers' determinism."""

from __future__ import annotations

from collections import Counter, defaultdict

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusers_spatial.training.sampler import (
    RelationBalancedSampler,
    RelationKey,
    SeededRandomSampler,
    balance_report,
    build_training_sampler,
    dataset_relation_keys,
    relation_balanced_weights,
    relation_key,
)

KEYS = st.one_of(
    st.none(),
    st.builds(
        RelationKey,
        st.sampled_from(["left_of", "right_of", "above", "below", "in_front_of"]),
        st.sampled_from(["dog", "cat", "cup"]),
        st.sampled_from(["dog", "cat", "cup", "book"]),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(KEYS, min_size=1, max_size=60))
def test_relations_and_object_orders_are_balanced(keys):
    weights = relation_balanced_weights(keys)
    assert weights.shape == (len(keys),) and np.all(weights > 0)
    assert weights.sum() == pytest.approx(1.0)
    unparsed = [w for k, w in zip(keys, weights) if k is None]
    assert sum(unparsed) == pytest.approx(len(unparsed) / len(keys))  # natural share kept

    relation_mass, order_mass = defaultdict(float), defaultdict(float)
    for key, weight in zip(keys, weights):
        if key is not None:
            relation_mass[key.relation] += weight
            order_mass[(key.relation, key.subject, key.object)] += weight
    assert len(set(np.round(list(relation_mass.values()), 9))) <= 1  # every relation equally likely
    for (relation, subject, obj), mass in order_mass.items():
        twin = order_mass.get((relation, obj, subject))
        if twin is not None and subject != obj:
            assert mass == pytest.approx(twin)  # both object orders equally likely
    cells = defaultdict(set)
    for key, weight in zip(keys, weights):
        if key is not None:
            cells[key].add(round(float(weight), 12))
    assert all(len(v) == 1 for v in cells.values())  # uniform inside a cell


def test_documented_example_and_report():
    keys = [RelationKey("left_of", "dog", "cat")] * 3 + [RelationKey("left_of", "cat", "dog"), None]
    weights = relation_balanced_weights(keys)
    np.testing.assert_allclose(weights, [0.8 / 6] * 3 + [0.4, 0.2])
    report = balance_report(keys, weights)
    assert report.num_unparsed == 1 and report.two_order_pairs == 1 and report.one_order_pairs == 0
    assert report.relation_shares["left_of"] == pytest.approx(0.8)
    assert "left_of: 4 rows -> 80.0%" in str(report)


def test_empty_dataset_rejected():
    with pytest.raises(ValueError, match="empty"):
        relation_balanced_weights([])


def test_relation_key_parses_captions_and_lists():
    assert relation_key("a photo of two dogs to the right of a bench") == RelationKey("right_of", "dog", "bench")
    assert relation_key(["a cup above a book", "ignored"]) == RelationKey("above", "cup", "book")
    assert relation_key("a cat sleeping") is None
    assert relation_key("a cat left of a dog above a tree") is None  # two relations: not guessed
    assert relation_key("") is None and relation_key(None) is None


def test_keys_from_the_spatial_dataset_columns_win_over_parsing():
    rows = datasets.Dataset.from_dict(
        {
            "prompt": ["a dog left of a cat", "whatever", "x"],
            "relation": ["right of", "above", None],
            "subject": ["Dog", "cup", "a"],
            "object": ["cat", "book", "b"],
        }
    )
    assert dataset_relation_keys(rows, "prompt") == [
        RelationKey("right_of", "dog", "cat"),
        RelationKey("above", "cup", "book"),
        None,
    ]
    plain = rows.remove_columns(["relation"])
    assert dataset_relation_keys(plain, "prompt")[0] == RelationKey("left_of", "dog", "cat")


def test_balanced_sampler_is_deterministic_per_epoch_and_follows_the_weights():
    weights = [0.5, 0.3, 0.2]
    sampler = RelationBalancedSampler(weights, num_samples=20000, seed=3)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == first and first != second
    frequency = np.bincount(first, minlength=3) / len(first)
    np.testing.assert_allclose(frequency, weights, atol=0.02)
    assert len(sampler) == 20000


@pytest.mark.parametrize("weights", [[], [0.0, 0.0], [1.0, -1.0], [float("nan")]])
def test_balanced_sampler_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        RelationBalancedSampler(weights)


def test_seeded_random_sampler_permutes_every_row_once_per_epoch():
    sampler = SeededRandomSampler(10, seed=0)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
        assert sorted(orders[-1]) == list(range(10))
    assert len({tuple(o) for o in orders}) == 3
    sampler.set_epoch(1)
    assert list(sampler) == orders[1]


def test_build_training_sampler_balances_a_skewed_dataset():
    prompts = ["a dog to the left of a cat"] * 9 + ["a cat to the left of a dog"] + ["a cup above a book"] * 2
    rows = datasets.Dataset.from_dict({"prompt": prompts})
    sampler, report = build_training_sampler(rows, "prompt", balance_relations=True, seed=0)
    assert report.relation_counts == {"above": 2, "left_of": 10}
    sampler.num_samples = 40000
    counts = Counter(prompts[i] for i in sampler)
    assert counts["a dog to the left of a cat"] / 40000 == pytest.approx(0.25, abs=0.02)
    assert counts["a cat to the left of a dog"] / 40000 == pytest.approx(0.25, abs=0.02)
    assert counts["a cup above a book"] / 40000 == pytest.approx(0.5, abs=0.02)
    plain, none = build_training_sampler(rows, "prompt", balance_relations=False, seed=0)
    assert none is None and isinstance(plain, SeededRandomSampler)
