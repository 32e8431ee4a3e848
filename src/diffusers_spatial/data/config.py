"""Configuration of a curation run, kept apart from the code that applies it.

A `CurationConfig` is everything that decides which rows a run keeps. It is written next to the output
(`manifest/runs/curate.json`) and checked when a run resumes: resuming with other settings would mix rows curated under
two different rules, so it is refused with the differing fields named.

Examples:

```py
>>> from diffusers_spatial.data import CurationConfig
>>> config = CurationConfig(min_confidence=0.4, max_rows_per_pair=50)
>>> config.to_dict()["min_confidence"]
0.4
>>> CurationConfig(batch_size=0)
Traceback (most recent call last):
  ...
ValueError: CurationConfig.batch_size must be a positive integer, got 0

```
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["CurationConfig"]


@dataclass
class CurationConfig:
    """Settings of the curation stages (caption filter, perception, verification, synthesis, quality filters)."""

    detector: str = field(
        default="embedded",
        metadata={"help": "Detector for `diffusers_spatial.perception.Perception`: 'embedded' or a model id/path."},
    )
    depth: str | None = field(
        default=None,
        metadata={
            "help": "Depth model id/path for `Perception`, or None. Ground-truth depth shipped with the input "
            "(`<key>.depth.npy`) is used either way; without any real depth no 3D row is kept."
        },
    )
    protocol: str = field(default="esplora", metadata={"help": "Geometry protocol that verifies a relation."})
    batch_size: int = field(default=16, metadata={"help": "Records per batch through the stages (bounds memory)."})
    shard_size: int = field(
        default=1000, metadata={"help": "Images per shard when the input is a plain image folder."}
    )
    require_english: bool = field(
        default=True, metadata={"help": "Skip captions that the cheap language heuristic says are not English."}
    )
    synthesize: bool = field(
        default=True,
        metadata={
            "help": "Write an explicit prompt from verified geometry for images whose caption has no relation "
            "or a false one; when False such images are skipped."
        },
    )
    min_confidence: float = field(
        default=0.3, metadata={"help": "Minimum detection score of the subject and object boxes of a kept row."}
    )
    min_box_fraction: float = field(
        default=0.005, metadata={"help": "Minimum area of the subject and object boxes, as a fraction of the image."}
    )
    max_rows_per_pair: int | None = field(
        default=None,
        metadata={
            "help": "Object-pair balance: keep at most this many rows per unordered noun pair in each shard "
            "(first come in the shard's order); None keeps all."
        },
    )
    license: str = field(default="unknown", metadata={"help": "Licence written for rows whose input gives none."})

    def __post_init__(self):
        for name in ("batch_size", "shard_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CurationConfig.{name} must be a positive integer, got {value!r}")
        for name in ("min_confidence", "min_box_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
                raise ValueError(f"CurationConfig.{name} must be a number in [0, 1], got {value!r}")
        if self.max_rows_per_pair is not None and (
            not isinstance(self.max_rows_per_pair, int) or self.max_rows_per_pair < 1
        ):
            raise ValueError(
                f"CurationConfig.max_rows_per_pair must be None or a positive integer, got {self.max_rows_per_pair!r}"
            )
        for name in ("detector", "protocol", "license"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"CurationConfig.{name} must be a non-empty string, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CurationConfig:
        """Inverse of `to_dict`; unknown keys raise a ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CurationConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)
