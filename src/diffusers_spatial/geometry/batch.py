"""Flatten many images' detections into arrays once, validating every field on the way in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .boxes import check_box_array, check_score_array
from .labels import normalize_label
from .types import Detection

__all__ = ["DetectionBatch"]


def _as_mapping(detection, where: str) -> Mapping:
    if isinstance(detection, Mapping):
        return detection
    if isinstance(detection, Detection):
        return {"label": detection.label, "score": detection.score, "box": detection.box, "mask": detection.mask}
    raise ValueError(f"{where}: a detection must be a dict or a Detection, got {type(detection).__name__}")


class _LazyMasks(Sequence):
    """`masks[k]` read from the k-th detection dict only when asked (most batches have no masks)."""

    def __init__(self, rows: list):
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, k):
        return self._rows[k].get("mask")


@dataclass
class DetectionBatch:
    """All detections of `n_images` images in flat arrays, image by image.

    Attributes:
        offsets: (n_images + 1,) image i owns flat indices `offsets[i]:offsets[i + 1]`, in the given order.
        image_index: (N,) the image of each detection.
        labels: the distinct normalised labels of the batch; `label_ids` (N,) index it.
        scores: (N,) confidences; boxes: (N, 4) `(x1, y1, x2, y2)`.
        masks: (N,) list of optional instance masks (None when absent).
    """

    offsets: np.ndarray
    image_index: np.ndarray
    labels: list[str]
    label_ids: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    masks: Sequence

    @property
    def n_images(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_lists(cls, detections_list: Sequence[Sequence]) -> DetectionBatch:
        """Validate and flatten `detections_list[i]` = image i's detections (dicts or `Detection`s).

        Raises:
            ValueError: naming the image, the detection and the offending value (missing key, non-string
                label, score that is negative/NaN/not a number, box that is not 4 finite numbers with x1 <= x2 and
                y1 <= y2, a per-image value that is not a list).
        """
        counts = []
        for i, detections in enumerate(detections_list):
            if type(detections) is not list and (
                isinstance(detections, (str, bytes, Mapping, Detection)) or not isinstance(detections, Sequence)
            ):
                raise ValueError(
                    f"image {i}: detections must be a list of detections, got {type(detections).__name__}: "
                    f"{detections!r:.200}"
                )
            counts.append(len(detections))
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        image_index = np.repeat(np.arange(len(counts)), counts)
        flat = [d for detections in detections_list for d in detections]

        def locate(k: int) -> str:
            i = int(image_index[k])
            return f"image {i} detection {k - int(offsets[i])}"

        try:  # fast path: plain dicts
            labels = [d["label"] for d in flat]
            scores = [d["score"] for d in flat]
            boxes = [d["box"] for d in flat]
            masks = _LazyMasks(flat)
        except (KeyError, TypeError, AttributeError):
            rows = [_as_mapping(d, locate(k)) for k, d in enumerate(flat)]
            for k, row in enumerate(rows):
                missing = [key for key in ("label", "score", "box") if key not in row]
                if missing:
                    raise ValueError(f"{locate(k)}: missing key(s) {missing} in {dict(row)!r:.200}") from None
            labels = [row["label"] for row in rows]
            scores = [row["score"] for row in rows]
            boxes = [row["box"] for row in rows]
            masks = [row.get("mask") for row in rows]

        try:
            distinct = list(dict.fromkeys(labels))  # the few distinct raw labels, in C
        except TypeError:  # an unhashable label
            distinct = None
        if distinct is None or not all(isinstance(label, str) for label in distinct):
            k = next(k for k, label in enumerate(labels) if not isinstance(label, str))
            raise ValueError(f"{locate(k)}: label must be a string, got {labels[k]!r}")
        raw_ids = {label: j for j, label in enumerate(distinct)}
        raw_label_ids = np.fromiter(map(raw_ids.__getitem__, labels), np.int64, count=len(labels))
        normal_ids: dict[str, int] = {}
        raw_to_normal = np.zeros(len(distinct), dtype=np.int64)
        for j, raw in enumerate(distinct):
            try:
                normal = normalize_label(raw)
            except ValueError as error:
                raise ValueError(f"{locate(labels.index(raw))}: {error}") from None
            raw_to_normal[j] = normal_ids.setdefault(normal, len(normal_ids))
        label_ids = raw_to_normal[raw_label_ids]
        return cls(
            offsets=offsets,
            image_index=image_index,
            labels=list(normal_ids),
            label_ids=label_ids,
            scores=check_score_array(scores, locate),
            boxes=check_box_array(boxes, locate),
            masks=masks,
        )
