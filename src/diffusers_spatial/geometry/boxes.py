"""Box geometry on (N, 4) arrays of `(x1, y1, x2, y2)` pixels, and the one validator every detection goes through.

All functions are vectorised and pure; pairs are given as two aligned (N, 4) arrays.
"""

from __future__ import annotations

from array import array as _array
from collections.abc import Callable, Sequence
from itertools import chain

import numpy as np

__all__ = [
    "centers",
    "check_box_array",
    "check_detection_fields",
    "check_score_array",
    "intersection_area",
    "normalized_offsets",
    "paired_iou",
    "sizes",
]

# Size floor for the normalisation of offsets: two zero-size boxes at the same point give 0, not 0/0.
_TINY = 1e-9


def centers(boxes: np.ndarray) -> np.ndarray:
    """Box centroids `((x1 + x2) / 2, (y1 + y2) / 2)` as an (N, 2) array."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def sizes(boxes: np.ndarray) -> np.ndarray:
    """Box widths and heights `(x2 - x1, y2 - y1)` as an (N, 2) array."""
    return boxes[:, 2:] - boxes[:, :2]


def intersection_area(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Area of the intersection of each pair of boxes (0 when they do not overlap)."""
    overlap = np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2])
    overlap = np.clip(overlap, 0, None)
    return overlap[:, 0] * overlap[:, 1]


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of each pair of boxes (continuous coordinates, no +1); 0 when the union is empty."""
    inter = intersection_area(a, b)
    size_a, size_b = sizes(a), sizes(b)
    union = size_a[:, 0] * size_a[:, 1] + size_b[:, 0] * size_b[:, 1] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def normalized_offsets(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Centroid offset of A from B per axis, divided by the sum of the two boxes' half-extents on that axis.

    `u = (c_A - c_B) / ((size_A + size_B) / 2)`: |u| > 1 means the boxes' projections on that axis are disjoint,
    |u| == 1 that they touch, |u| < 1 that they overlap. Negative x means A is left of B, negative y that A is
    above B. Returns an (N, 2) array.
    """
    half_sum = np.maximum((sizes(a) + sizes(b)) / 2, _TINY)
    return (centers(a) - centers(b)) / half_sum


# ----------------------------------------------------------------------------------------------------------------
# Validation: every detection, dict or dataclass, single or batched, passes through these checks.
# ----------------------------------------------------------------------------------------------------------------


def _doubles(values) -> _array:
    return _array("d", values)


def _first_bad(bad: np.ndarray) -> int | None:
    index = np.flatnonzero(bad)
    return int(index[0]) if index.size else None


def check_box_array(boxes: Sequence, locate: Callable[[int], str] = lambda k: f"detection {k}") -> np.ndarray:
    """Turn a sequence of boxes into a float (N, 4) array, raising ValueError that names the first bad box.

    A box must be 4 finite numbers with `x1 <= x2` and `y1 <= y2`; `locate(k)` names box k in the message.
    """
    array = None
    try:
        if not boxes or set(map(len, boxes)) == {4}:
            # array("d") takes ints, floats and numpy scalars and refuses str / None: one C pass, no object array
            array = np.frombuffer(_doubles(chain.from_iterable(boxes)), dtype=np.float64).reshape(-1, 4)
    except TypeError:  # a box without a length, or a coordinate that is not a real number
        array = None
    if array is None:
        for k, box in enumerate(boxes):
            try:
                row = np.asarray(box)
                good = row.shape == (4,) and row.dtype.kind in "iuf"
            except (ValueError, TypeError):
                good = False
            if not good:
                raise ValueError(f"{locate(k)}: box must be 4 numbers [x1, y1, x2, y2], got {box!r}")
        raise ValueError(f"boxes must be a sequence of [x1, y1, x2, y2], got {boxes!r:.200}")
    k = _first_bad(~np.isfinite(array).all(axis=1))
    if k is not None:
        raise ValueError(f"{locate(k)}: box has a non-finite or missing coordinate: {_shown(boxes[k])}")
    k = _first_bad(array[:, 2] < array[:, 0])
    if k is not None:
        raise ValueError(f"{locate(k)}: box has x2 < x1: {_shown(boxes[k])}")
    k = _first_bad(array[:, 3] < array[:, 1])
    if k is not None:
        raise ValueError(f"{locate(k)}: box has y2 < y1: {_shown(boxes[k])}")
    return array.astype(np.float64, copy=False)


def _shown(box) -> str:
    return repr(box.tolist() if isinstance(box, np.ndarray) else box)


def check_score_array(scores: Sequence, locate: Callable[[int], str] = lambda k: f"detection {k}") -> np.ndarray:
    """Turn a sequence of confidences into a float array, raising ValueError that names the first bad score.

    A score must be a finite number in [0, 1], a confidence (booleans and strings are refused).
    """
    try:
        array = np.frombuffer(_doubles(scores), dtype=np.float64)
        ok = not {bool, np.bool_} & set(map(type, scores))  # True is not a confidence of 1.0
    except TypeError:
        array, ok = None, False
    if not ok:
        if len(scores) == 0:
            return np.zeros(0)
        for k, score in enumerate(scores):
            if isinstance(score, (bool, np.bool_)) or not isinstance(score, (int, float, np.integer, np.floating)):
                raise ValueError(f"{locate(k)}: score must be a number, got {score!r}")
        raise ValueError(f"scores must be a 1-D sequence of numbers, got {scores!r:.200}")
    array = array.astype(np.float64, copy=False)
    k = _first_bad(~np.isfinite(array))
    if k is not None:
        raise ValueError(f"{locate(k)}: score must be finite, got {float(array[k])!r}")
    k = _first_bad((array < 0) | (array > 1))
    if k is not None:
        raise ValueError(f"{locate(k)}: score must be a confidence in [0, 1], got {float(array[k])!r}")
    return array


def check_detection_fields(label, score, box) -> tuple[str, float, tuple[float, float, float, float]]:
    """Validate one detection's fields; returns `(label, float score, box tuple)` or raises ValueError."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"detection label must be a non-empty string, got {label!r}")
    where = f"detection {label!r}"
    score_value = float(check_score_array([score], lambda k: where)[0])
    box_value = tuple(float(v) for v in check_box_array([box], lambda k: where)[0])
    return label, score_value, box_value
