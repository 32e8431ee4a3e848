"""Relation-balanced sampling: every relation, and both object orders of every pair, equally likely.

Spatial data is biased: captioned photos say "a person to the left of a dog" far more often than "a dog to the
left of a person", and "above" far more often than "in front of". A LoRA trained on the raw stream learns those
biases along with the relations. The sampler reweights rows so that, in expectation:

1. each relation present in the data gets the same share of samples;
2. within a relation, each unordered object pair keeps its share of that relation's rows (content stays natural),
   but its two object orders ("A rel B" and "B rel A") get half of it each;
3. within one (relation, subject, object) cell, rows are uniform.

Rows whose caption is not a spatial prompt keep their natural share of the stream (they are not dropped).
An order that never occurs cannot be conjured, so a pair seen in one order only keeps its whole share on it
(`BalanceReport.one_order_pairs` counts them).

Examples:

```py
>>> from diffusers_spatial.training.sampler import RelationKey, relation_balanced_weights
>>> keys = [RelationKey("left_of", "dog", "cat")] * 3 + [RelationKey("left_of", "cat", "dog"), RelationKey("above", "cup", "book")]
>>> relation_balanced_weights(keys).round(3).tolist()
[0.083, 0.083, 0.083, 0.25, 0.5]

```
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler

from ..relations import MultipleRelationsError, normalize_relation, parse_spatial_prompt
from .randomness import derive_seed

__all__ = [
    "BalanceReport",
    "RelationBalancedSampler",
    "SeededRandomSampler",
    "build_training_sampler",
    "dataset_relation_keys",
    "RelationKey",
    "balance_report",
    "relation_balanced_weights",
    "relation_key",
    "relation_keys_from_columns",
]


class RelationKey(NamedTuple):
    """The stratum of one row: relation id, subject noun, object noun (in the caption's order)."""

    relation: str
    subject: str
    object: str


def relation_key(caption: str | Sequence[str] | None) -> RelationKey | None:
    """Parse a caption (the first of a list) into its `RelationKey`, or None when it is not a spatial prompt."""
    if caption is not None and not isinstance(caption, str):
        caption = caption[0] if len(caption) else None
    if not caption:
        return None
    try:
        prompt = parse_spatial_prompt(caption)
    except MultipleRelationsError:
        return None
    if prompt is None:
        return None
    return RelationKey(prompt.relation, prompt.subject_noun, prompt.object_noun)


def relation_keys_from_columns(
    relations: Sequence[str | None], subjects: Sequence[str | None], objects: Sequence[str | None]
) -> list[RelationKey | None]:
    """Keys from the spatial dataset's own `relation` / `subject` / `object` columns (no parsing needed).

    Relation values may be ids or phrases ("left of"); a row with a missing or unknown value gets None.
    """
    keys: list[RelationKey | None] = []
    for relation, subject, obj in zip(relations, subjects, objects, strict=True):
        try:
            relation_id = normalize_relation(relation) if relation else None
        except (TypeError, ValueError):
            relation_id = None
        if relation_id is None or not subject or not obj:
            keys.append(None)
        else:
            keys.append(RelationKey(relation_id, str(subject).strip().lower(), str(obj).strip().lower()))
    return keys


def relation_balanced_weights(keys: Sequence[RelationKey | None]) -> np.ndarray:
    """Per-row sampling probabilities (summing to 1) that balance relations and object orders.

    Args:
        keys: one `RelationKey` per row, or None for a row that is not a spatial prompt.

    Returns:
        float64 array of len(keys). Rows with a None key share their natural fraction of the total; the rest
        is split equally between relations, then between the pairs of a relation in proportion to their counts,
        then equally between a pair's object orders, then uniformly between a cell's rows.
    """
    n = len(keys)
    if n == 0:
        raise ValueError("cannot build sampling weights for an empty dataset")
    weights = np.zeros(n, dtype=np.float64)
    unparsed = [i for i, k in enumerate(keys) if k is None]
    spatial_mass = 1.0 - len(unparsed) / n
    if unparsed:
        weights[unparsed] = 1.0 / n

    # relation -> unordered pair -> ordered (subject, object) -> row indices
    tree: dict[str, dict[tuple[str, str], dict[tuple[str, str], list[int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for i, key in enumerate(keys):
        if key is not None:
            pair = tuple(sorted((key.subject, key.object)))
            tree[key.relation][pair][(key.subject, key.object)].append(i)
    for pairs in tree.values():
        relation_mass = spatial_mass / len(tree)
        relation_rows = sum(len(rows) for orders in pairs.values() for rows in orders.values())
        for orders in pairs.values():
            pair_mass = relation_mass * sum(len(rows) for rows in orders.values()) / relation_rows
            for rows in orders.values():
                weights[rows] = pair_mass / len(orders) / len(rows)
    return weights / weights.sum()


@dataclass
class BalanceReport:
    """What the balancing did, for the training log: counts before, expected shares after."""

    num_rows: int
    num_unparsed: int
    relation_counts: dict[str, int] = field(default_factory=dict)
    relation_shares: dict[str, float] = field(default_factory=dict)
    one_order_pairs: int = 0
    two_order_pairs: int = 0

    def __str__(self) -> str:
        rows = ", ".join(
            f"{r}: {self.relation_counts[r]} rows -> {100 * self.relation_shares[r]:.1f}%"
            for r in self.relation_counts
        )
        return (
            f"{self.num_rows} rows ({self.num_unparsed} not spatial prompts); {rows}; "
            f"pairs seen in both orders: {self.two_order_pairs}, in one order only: {self.one_order_pairs}"
        )


def balance_report(keys: Sequence[RelationKey | None], weights: np.ndarray) -> BalanceReport:
    """Summarise `keys` and the expected relation shares under `weights`."""
    counts = Counter(k.relation for k in keys if k is not None)
    shares: dict[str, float] = defaultdict(float)
    orders: dict[tuple[str, tuple[str, str]], set[tuple[str, str]]] = defaultdict(set)
    for key, weight in zip(keys, weights):
        if key is not None:
            shares[key.relation] += float(weight)
            orders[(key.relation, tuple(sorted((key.subject, key.object))))].add((key.subject, key.object))
    both = sum(1 for o in orders.values() if len(o) == 2)
    return BalanceReport(
        num_rows=len(keys),
        num_unparsed=sum(k is None for k in keys),
        relation_counts=dict(sorted(counts.items())),
        relation_shares={r: shares[r] for r in sorted(counts)},
        one_order_pairs=len(orders) - both,
        two_order_pairs=both,
    )


class _EpochSeededSampler(Sampler[int]):
    """An index stream that is a pure function of (seed, epoch): subclasses draw it from `_epoch_generator()`."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _epoch_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))


class RelationBalancedSampler(_EpochSeededSampler):
    """Draw row indices with replacement from fixed weights, a fresh permutation-free stream per epoch.

    The stream of epoch `e` depends only on (seed, e): every process of a distributed run draws the same one
    (accelerate then hands each process its own batches), and a run resumed mid-epoch sees the same order.

    Args:
        weights: per-row probabilities (e.g. from `relation_balanced_weights`).
        num_samples: samples per epoch (default: one per row).
        seed: base seed.

    Examples:

    ```py
    >>> sampler = RelationBalancedSampler([0.5, 0.25, 0.25], num_samples=4, seed=0)
    >>> sampler.set_epoch(0); a = list(sampler); sampler.set_epoch(0); a == list(sampler)
    True

    ```
    """

    def __init__(self, weights: Sequence[float] | np.ndarray, num_samples: int | None = None, seed: int = 0):
        weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if weights.ndim != 1 or len(weights) == 0:
            raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {tuple(weights.shape)}")
        if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        self.weights = weights
        self.num_samples = len(weights) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
        super().__init__(seed)

    def __iter__(self) -> Iterator[int]:
        rng = self._epoch_generator()
        yield from torch.multinomial(self.weights, self.num_samples, replacement=True, generator=rng).tolist()

    def __len__(self) -> int:
        return self.num_samples


class SeededRandomSampler(_EpochSeededSampler):
    """A fresh permutation of the rows per epoch, a pure function of (seed, epoch) (the unbalanced sampler).

    Examples:

    ```py
    >>> sampler = SeededRandomSampler(5, seed=0)
    >>> sorted(sampler) == list(range(5))
    True

    ```
    """

    def __init__(self, num_rows: int, seed: int = 0):
        if num_rows < 1:
            raise ValueError(f"num_rows must be >= 1, got {num_rows}")
        self.num_rows = int(num_rows)
        super().__init__(seed)

    def __iter__(self) -> Iterator[int]:
        yield from torch.randperm(self.num_rows, generator=self._epoch_generator()).tolist()

    def __len__(self) -> int:
        return self.num_rows


def dataset_relation_keys(dataset, caption_column: str) -> list[RelationKey | None]:
    """Relation keys of a `datasets.Dataset`: from its `relation` / `subject` / `object` columns when it has them
    (the spatial dataset), else by parsing the first caption of each row."""
    columns = set(dataset.column_names)
    if {"relation", "subject", "object"} <= columns:
        return relation_keys_from_columns(list(dataset["relation"]), list(dataset["subject"]), list(dataset["object"]))
    return [relation_key(c) for c in dataset[caption_column]]


def build_training_sampler(
    dataset, caption_column: str, balance_relations: bool = True, seed: int = 0
) -> tuple[Sampler[int], BalanceReport | None]:
    """The scripts' sampler: `RelationBalancedSampler` (with its report) or, unbalanced, `SeededRandomSampler`."""
    if not balance_relations:
        return SeededRandomSampler(len(dataset), seed=seed), None
    keys = dataset_relation_keys(dataset, caption_column)
    weights = relation_balanced_weights(keys)
    return RelationBalancedSampler(weights, seed=seed), balance_report(keys, weights)
