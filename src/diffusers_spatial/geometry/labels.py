"""Matching detector labels to the prompt's nouns.

Every protocol compares normalised text: lower case, whitespace runs collapsed, last word singular
(`vocabulary.singularize`), so "Dogs", " dog " and "dog" are the same label. The rule that decides a match is the
protocol's: exact equality everywhere except T2I-CompBench 3D, whose reference code tests whether the noun is a
substring of the detector label.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..vocabulary import singularize

__all__ = ["T2I_PERSON_NOUNS", "match_table", "normalize_label", "t2i_target_noun"]

T2I_PERSON_NOUNS = frozenset({"girl", "boy", "man", "woman"})
"""Nouns T2I-CompBench rewrites to its detector class "person" (that protocol only)."""


@lru_cache(maxsize=1 << 16)
def normalize_label(text: str) -> str:
    """Lower-case, collapse whitespace and singularise the last word: `normalize_label(" Teddy  Bears")` ->
    "teddy bear". Raises ValueError on a non-string or blank label."""
    if not isinstance(text, str):
        raise ValueError(f"label must be a string, got {type(text).__name__}: {text!r}")
    normal = singularize(text)
    if not normal:
        raise ValueError(f"label must not be blank, got {text!r}")
    return normal


def t2i_target_noun(noun: str) -> str:
    """T2I-CompBench's noun rewrite: girl/boy/man/woman -> "person"; any other noun unchanged."""
    return "person" if noun in T2I_PERSON_NOUNS else noun


def match_table(labels: list[str], targets: list[str], *, substring: bool = False) -> np.ndarray:
    """Boolean (len(labels), len(targets)) table: does detector label i match target noun j?

    Both sides must already be normalised. `substring=False` tests equality; `substring=True` tests
    `target in label` (T2I-CompBench 3D). Built over the few distinct labels and targets of a batch, then
    indexed per detection, so matching costs one table lookup per detection.
    """
    table = np.zeros((len(labels), len(targets)), dtype=bool)
    if substring:
        for i, label in enumerate(labels):
            for j, target in enumerate(targets):
                table[i, j] = target in label
    else:
        column = {target: j for j, target in enumerate(targets)}
        for i, label in enumerate(labels):
            j = column.get(label)
            if j is not None:
                table[i, j] = True
    return table
