"""The two records the geometric judge reads and writes: a `Detection` and an `ImageScore`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..relations import RELATIONS

__all__ = ["Detection", "ImageScore"]


@dataclass(frozen=True)
class Detection:
    """One detected object: a label, a confidence and a box `(x1, y1, x2, y2)` in pixels (origin top-left, y down).

    Plain dicts `{"label", "score", "box"}` (optionally `"mask"`) are accepted everywhere a `Detection` is.

    Args:
        label: the detector's class name, e.g. "dog" (matched to the prompt's nouns after lower-casing,
            singularising and collapsing whitespace).
        score: the detector's confidence, finite and >= 0.
        box: `(x1, y1, x2, y2)` with `x1 <= x2`, `y1 <= y2`, all finite.
        mask: optional H x W boolean instance mask (same size as the depth map); used by the "esplora" protocol
            to take the object's depth inside the mask instead of the box.

    Raises:
        ValueError: naming the offending value, when a field is malformed.

    Examples:

    ```py
    >>> from diffusers_spatial.geometry import Detection
    >>> Detection("dog", 0.9, (10, 20, 110, 220)).to_dict()
    {'label': 'dog', 'score': 0.9, 'box': [10.0, 20.0, 110.0, 220.0]}

    ```
    """

    label: str
    score: float
    box: tuple[float, float, float, float]
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        from .boxes import check_detection_fields  # one validator for dataclasses and dicts alike

        label, score, box = check_detection_fields(self.label, self.score, self.box)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "box", box)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Detection:
        """Build from `{"label", "score", "box"}` (and optional `"mask"`); raises ValueError on a missing key."""
        missing = [key for key in ("label", "score", "box") if key not in data]
        if missing:
            raise ValueError(f"detection {dict(data)!r} is missing key(s) {missing}")
        return cls(data["label"], data["score"], data["box"], data.get("mask"))

    def to_dict(self) -> dict[str, Any]:
        """`{"label", "score", "box"}` (the mask, if any, is left out: it is not JSON)."""
        return {"label": self.label, "score": self.score, "box": list(self.box)}


def _json_value(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples inside `details` into plain JSON values (no NaN: it becomes None)."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_value(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class ImageScore:
    """The verdict of one protocol on one image.

    Args:
        protocol: the protocol's name ("visor", "t2i_compbench_2d", "t2i_compbench_3d", "geneval", "esplora").
        prompt: the prompt text.
        relation: the prompt's relation id (e.g. "left_of").
        subject: the prompt's subject noun (singular, e.g. "cat").
        object: the prompt's object noun.
        score: the protocol's per-image score (never NaN): 0/1 for VISOR, GenEval and esplora, the soft
            0.25/0.25/0.5 score for T2I-CompBench.
        objects_found: both objects are present under the protocol's rules.
        correct: the protocol's verdict on the relation; None means undetermined (see `details["reason"]`).
        details: protocol-specific, JSON-serialisable facts (which boxes were used, offsets, reasons, ...).
    """

    protocol: str
    prompt: str
    relation: str
    subject: str
    object: str
    score: float
    objects_found: bool
    correct: bool | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def determined(self) -> bool:
        """True unless the verdict is undetermined (`correct is None`)."""
        return self.correct is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; `ImageScore.from_dict(s.to_dict()) == s`."""
        return {
            "protocol": self.protocol,
            "prompt": self.prompt,
            "relation": self.relation,
            "subject": self.subject,
            "object": self.object,
            "score": float(self.score),
            "objects_found": bool(self.objects_found),
            "correct": None if self.correct is None else bool(self.correct),
            "details": _json_value(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageScore:
        """Inverse of `to_dict`; raises ValueError naming missing keys."""
        names = ("protocol", "prompt", "relation", "subject", "object", "score", "objects_found", "correct")
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"image score is missing key(s) {missing}: {dict(data)!r}")
        # Read back from files: refuse values the aggregates would turn into a NaN figure or a crash.
        for name in ("protocol", "prompt", "subject", "object"):
            if not isinstance(data[name], str):
                raise ValueError(f"image score {name!r} must be a str, got {data[name]!r}")
        if data["relation"] not in RELATIONS:
            raise ValueError(f"image score relation must be one of {list(RELATIONS)}, got {data['relation']!r}")
        score = data["score"]
        if isinstance(score, (bool, np.bool_)) or not isinstance(score, (int, float, np.integer, np.floating)):
            raise ValueError(f"image score 'score' must be a number, got {score!r}")
        if not math.isfinite(score):
            raise ValueError(f"image score 'score' must be finite, got {score!r}")
        if not isinstance(data["objects_found"], (bool, np.bool_)):
            raise ValueError(f"image score 'objects_found' must be a bool, got {data['objects_found']!r}")
        if data["correct"] is not None and not isinstance(data["correct"], (bool, np.bool_)):
            raise ValueError(f"image score 'correct' must be True, False or None, got {data['correct']!r}")
        details = data.get("details") or {}
        if not isinstance(details, Mapping):
            raise ValueError(f"image score 'details' must be a dict, got {details!r:.200}")
        values = {name: data[name] for name in names}
        values.update(
            score=float(score),
            objects_found=bool(data["objects_found"]),
            correct=None if data["correct"] is None else bool(data["correct"]),
        )
        return cls(**values, details=dict(details))
