"""What every protocol module provides, and the helpers they share."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..context import ScoringContext, Verdicts
from ..types import ImageScore

__all__ = ["Protocol", "check_bool", "check_fraction", "check_positive", "unsupported_details"]


@dataclass(frozen=True)
class Protocol:
    """A scoring protocol: its name, its options (a config dataclass), the relations it scores and two functions.

    `score(context, config) -> Verdicts` judges a batch of images; `figures(image_scores, prompt_ids) -> dict`
    gives its benchmark-level figures.
    """

    name: str
    config_class: type
    relations: frozenset[str]
    score: Callable[[ScoringContext, Any], Verdicts]
    figures: Callable[[list[ImageScore], list], dict]
    summary: str

    def make_config(self, options: Mapping[str, Any]):
        """Build the protocol's config from keyword options; unknown names raise ValueError listing valid ones."""
        names = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for protocol {self.name!r}; valid: {sorted(names)}")
        return self.config_class(**options)


def check_positive(name: str, value, *, allow_zero: bool = True) -> None:
    """Raise ValueError unless `value` is a finite real number >= 0 (> 0 when `allow_zero` is False)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def check_fraction(name: str, value) -> None:
    """Raise ValueError unless `value` is a finite number in [0, 1]."""
    check_positive(name, value)
    if value > 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def check_bool(name: str, value) -> None:
    """Raise ValueError unless `value` is a bool (a string such as "no" would otherwise read as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def unsupported_details(protocol: Protocol, relation: str) -> dict:
    """Details of an image whose relation the protocol does not score (an explicit undetermined verdict)."""
    return {
        "supported": False,
        "reason": f"relation {relation!r} is not scored by {protocol.name} (it scores {sorted(protocol.relations)})",
    }
