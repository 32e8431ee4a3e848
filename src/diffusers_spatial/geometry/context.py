"""Everything a protocol needs to score a batch: the prompts read once, the label targets, detections, depth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..relations import RELATIONS, SpatialPrompt, require_spatial_prompt
from .batch import DetectionBatch
from .depth import check_depth
from .labels import match_table, normalize_label

__all__ = ["ScoringContext", "Verdicts", "resolve_prompt"]


@lru_cache(maxsize=1 << 16)
def _parse(text: str) -> SpatialPrompt:
    return require_spatial_prompt(text)


def resolve_prompt(prompt: str | SpatialPrompt) -> SpatialPrompt:
    """Return `prompt` read as a `SpatialPrompt` (parsed texts are cached).

    Raises:
        ValueError: naming the prompt when it is not a string/SpatialPrompt, is empty, holds no relation or
            several relations, or lacks a subject or object noun phrase.
    """
    if isinstance(prompt, SpatialPrompt):
        return prompt
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a str or SpatialPrompt, got {type(prompt).__name__}: {prompt!r:.200}")
    if not prompt.strip():
        raise ValueError(f"prompt is empty: {prompt!r}")
    return _parse(prompt)


def _per_image(value, n: int, name: str) -> list:
    """A scalar option (the same for every image) or a sequence with one entry per image."""
    if value is None or isinstance(value, str):
        return [value] * n
    if not isinstance(value, Sequence) or len(value) != n:
        raise ValueError(f"{name} must be a string or a sequence of {n} (one per image), got {value!r:.200}")
    return list(value)


@dataclass
class ScoringContext:
    """A validated batch: image i has prompt `prompts[i]`, detections `batch` slice i, and optional depth/size.

    `subject_targets[i]` / `object_targets[i]` are the normalised detector labels to look for: the caller's
    `subject_label` / `object_label` when given (`*_explicit[i]` True), else the prompt's head nouns.
    """

    batch: DetectionBatch
    prompts: list[SpatialPrompt]
    subject_targets: list[str]
    object_targets: list[str]
    subject_explicit: list[bool]
    object_explicit: list[bool]
    depths: list
    image_sizes: list
    texts: list[str] | None = None
    relations: list[str] = field(init=False)
    relation_codes: np.ndarray = field(init=False)  # index into relations.RELATIONS, per image
    cache: dict = field(init=False, default_factory=dict)  # per-batch memo for protocols (e.g. depth medians)

    def __post_init__(self):
        if self.texts is None:
            self.texts = [p.render() for p in self.prompts]
        self.relations = [p.relation for p in self.prompts]
        code = {r: k for k, r in enumerate(RELATIONS)}
        self.relation_codes = np.fromiter(map(code.__getitem__, self.relations), np.int64, count=len(self.relations))

    def is_relation(self, *names: str) -> np.ndarray:
        """Per image: is its relation one of `names`?"""
        return np.isin(self.relation_codes, [RELATIONS.index(name) for name in names])

    @property
    def n_images(self) -> int:
        return self.batch.n_images

    @classmethod
    def build(
        cls, prompts, detections_list, *, depths=None, image_sizes=None, subject_label=None, object_label=None
    ) -> ScoringContext:
        if isinstance(prompts, (str, SpatialPrompt)) or not isinstance(prompts, Sequence):
            raise ValueError(f"prompts must be a sequence of prompts, got {type(prompts).__name__}")
        n = len(prompts)
        if isinstance(detections_list, (str, bytes)) or not isinstance(detections_list, Sequence):
            raise ValueError(f"detections must be a sequence of per-image lists, got {type(detections_list).__name__}")
        if len(detections_list) != n:
            raise ValueError(f"got {n} prompts but {len(detections_list)} detection lists: one per image is needed")
        parsed = [resolve_prompt(p) for p in prompts]
        depths = [None] * n if depths is None else list(depths)
        image_sizes = [None] * n if image_sizes is None else list(image_sizes)
        for name, values in (("depths", depths), ("image_sizes", image_sizes)):
            if len(values) != n:
                raise ValueError(f"{name} must have one entry per image ({n}), got {len(values)}")
        image_sizes = [_check_image_size(size, i) for i, size in enumerate(image_sizes)]
        # Every protocol refuses a malformed map, even one that reads no depth for this image's relation.
        depths = [
            None if d is None else check_depth(d, size, f"image {i}")
            for i, (d, size) in enumerate(zip(depths, image_sizes))
        ]
        subject_labels = _per_image(subject_label, n, "subject_label")
        object_labels = _per_image(object_label, n, "object_label")
        batch = DetectionBatch.from_lists(detections_list)
        _check_boxes_meet_images(batch, image_sizes)
        return cls(
            batch=batch,
            prompts=parsed,
            subject_targets=[
                normalize_label(s) if s is not None else p.subject_noun for s, p in zip(subject_labels, parsed)
            ],
            object_targets=[
                normalize_label(o) if o is not None else p.object_noun for o, p in zip(object_labels, parsed)
            ],
            subject_explicit=[s is not None for s in subject_labels],
            object_explicit=[o is not None for o in object_labels],
            depths=depths,
            image_sizes=image_sizes,
            texts=[p if isinstance(p, str) else q.render() for p, q in zip(prompts, parsed)],
        )

    def roles(self, subject_targets: list[str], object_targets: list[str], *, substring: bool = False):
        """Flat boolean arrays `(is_subject, is_object)`: does each detection match its image's target label?"""
        targets = sorted(set(subject_targets) | set(object_targets))
        column = {t: j for j, t in enumerate(targets)}
        table = match_table(self.batch.labels, targets, substring=substring)
        subject_col = np.array([column[t] for t in subject_targets], dtype=np.int64)
        object_col = np.array([column[t] for t in object_targets], dtype=np.int64)
        image = self.batch.image_index
        ids = self.batch.label_ids
        if ids.size == 0:
            return np.zeros(0, bool), np.zeros(0, bool)
        return table[ids, subject_col[image]], table[ids, object_col[image]]


def _check_boxes_meet_images(batch: DetectionBatch, image_sizes: list) -> None:
    """A box wholly outside its image (not even touching it) is a coordinate mix-up, not a detection."""
    bounds = np.array([size if size is not None else (np.inf, np.inf) for size in image_sizes], dtype=np.float64)
    if batch.boxes.size == 0 or not np.isfinite(bounds).any():
        return
    width, height = bounds[batch.image_index, 0], bounds[batch.image_index, 1]
    boxes = batch.boxes
    outside = (boxes[:, 0] > width) | (boxes[:, 1] > height) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        i = int(batch.image_index[k])
        raise ValueError(
            f"image {i} detection {k - int(batch.offsets[i])}: box {boxes[k].tolist()} lies entirely outside the "
            f"image ({image_sizes[i][0]} x {image_sizes[i][1]}): are the coordinates pixels of this image?"
        )


def _check_image_size(size, i: int):
    if size is None:
        return None
    try:
        width, height = size
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (width, height))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"image {i}: image_size must be (width, height) positive integers, got {size!r}")
    return int(width), int(height)


@dataclass
class Verdicts:
    """What a protocol returns for a batch: per-image arrays plus one details dict per image.

    `correct` is int8: 1 correct, 0 wrong, -1 undetermined.
    """

    score: np.ndarray
    objects_found: np.ndarray
    correct: np.ndarray
    details: list[dict]
