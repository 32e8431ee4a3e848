"""GenEval position (djghosh13/geneval, evaluation/evaluate_images.py).

Rules (see docs/metrics.md): keep detections with score > 0.3; only the single most confident detection of
each class is checked; `relative_position(A, B)`: offset = c_A - c_B, per axis `revised = sign(offset) *
max(|offset| - 0.1 * (dim_A + dim_B), 0)`; no relation if both |revised| < 1e-3; else `(dx, dy) = revised /
||offset||` and left of: dx < -0.5, right of: dx > 0.5, above: dy < -0.5, below: dy > 0.5 (a diagonal layout can
satisfy two). The benchmark score is the fraction of correct images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..boxes import centers, sizes
from ..context import ScoringContext, Verdicts
from ..segments import top_one
from ..types import ImageScore
from .base import Protocol, check_fraction, check_positive, unsupported_details

__all__ = ["PROTOCOL", "GenEvalConfig", "relative_position"]

RELATIONS = frozenset({"left_of", "right_of", "above", "below"})
_NAMES = ("left_of", "right_of", "above", "below")


@dataclass(frozen=True)
class GenEvalConfig:
    """Options of the "geneval" protocol.

    Args:
        score_threshold: keep detections with score strictly greater than this (0.3).
        position_threshold: the margin, as a fraction of the summed box dimensions (0.1).
        direction_threshold: a normalised axis component beyond this names the direction (0.5).
    """

    score_threshold: float = 0.3
    position_threshold: float = 0.1
    direction_threshold: float = 0.5

    def __post_init__(self):
        check_positive("score_threshold", self.score_threshold)
        check_positive("position_threshold", self.position_threshold)
        check_fraction("direction_threshold", self.direction_threshold)


def relative_position(box_a: np.ndarray, box_b: np.ndarray, config: GenEvalConfig = GenEvalConfig()) -> dict:
    """Which of left_of / right_of / above / below hold for A relative to B, per aligned pair of boxes.

    Returns a dict relation id -> bool array (all False for a pair whose revised offset vanishes), plus
    "dx" and "dy": the normalised revised offsets (0 where there is no relation).
    """
    offset = centers(box_a) - centers(box_b)
    dims = sizes(box_a) + sizes(box_b)
    revised = np.sign(offset) * np.maximum(np.abs(offset) - config.position_threshold * dims, 0)
    related = ~np.all(np.abs(revised) < 1e-3, axis=1)
    norm = np.linalg.norm(offset, axis=1)
    unit = np.divide(revised, norm[:, None], out=np.zeros_like(revised), where=related[:, None] & (norm[:, None] > 0))
    dx, dy = unit.T
    t = config.direction_threshold
    return {
        "left_of": related & (dx < -t),
        "right_of": related & (dx > t),
        "above": related & (dy < -t),
        "below": related & (dy > t),
        "dx": dx,
        "dy": dy,
    }


def score(context: ScoringContext, config: GenEvalConfig) -> Verdicts:
    batch, n = context.batch, context.n_images
    is_subject, is_object = context.roles(context.subject_targets, context.object_targets)
    kept = batch.scores > config.score_threshold
    top_a = top_one(kept & is_subject, batch.scores, batch.boxes, batch.offsets)
    top_b = top_one(kept & is_object, batch.scores, batch.boxes, batch.offsets)
    found = (top_a >= 0) & (top_b >= 0)
    rows = np.flatnonzero(found)
    relations = context.relations
    named_flags = {name: np.zeros(n, dtype=bool) for name in _NAMES}
    dx, dy = np.zeros(n), np.zeros(n)
    if rows.size:
        rel = relative_position(batch.boxes[top_a[rows]], batch.boxes[top_b[rows]], config)
        dx[rows], dy[rows] = rel["dx"], rel["dy"]
        for name in _NAMES:
            named_flags[name][rows] = rel[name]
    holds = np.zeros(n, dtype=bool)
    for name in _NAMES:
        image_rows = context.is_relation(name)
        holds[image_rows] = named_flags[name][image_rows]
    named = [
        [name for name, flag in zip(_NAMES, flags) if flag]
        for flags in zip(*(named_flags[m].tolist() for m in _NAMES))
    ]
    supported = context.is_relation(*RELATIONS)
    correct = np.where(supported, (found & holds).astype(np.int8), np.int8(-1))

    details = []
    starts = batch.offsets[:-1]
    rows = zip(
        np.where(top_a >= 0, top_a - starts, -1).tolist(),
        np.where(top_b >= 0, top_b - starts, -1).tolist(),
        found.tolist(),
        supported.tolist(),
        correct.tolist(),
        dx.tolist(),
        dy.tolist(),
    )
    for i, (ia, ib, ok, scored, verdict, x, y) in enumerate(rows):
        entry = {"supported": True} if scored else unsupported_details(PROTOCOL, relations[i])
        ia, ib = (None if ia < 0 else ia), (None if ib < 0 else ib)
        entry.update(subject_found=ia is not None, object_found=ib is not None, subject_index=ia, object_index=ib)
        if ok:
            entry.update(relations_found=named[i], dx=x, dy=y)
        if scored and verdict == 0:
            if not ok:
                missing = [
                    t for t, k in ((context.subject_targets[i], ia), (context.object_targets[i], ib)) if k is None
                ]
                entry["reason"] = f"not detected: {missing}"
            else:
                entry["reason"] = f"expected {relations[i]}, found {named[i] or 'no relation'}"
        details.append(entry)
    return Verdicts(score=np.where(correct == 1, 1.0, 0.0), objects_found=found, correct=correct, details=details)


def figures(image_scores: list[ImageScore], prompt_ids: list) -> dict:
    """`accuracy`: correct / images (GenEval's position score) and `prompt_accuracy`: prompts with any correct
    image / prompts, over the images whose relation GenEval scores; None when there are none."""
    rows = [(s, pid) for s, pid in zip(image_scores, prompt_ids) if s.details.get("supported", True)]
    any_right: dict = {}
    for s, pid in rows:
        any_right[pid] = any_right.get(pid, False) or bool(s.correct)
    n = len(rows)
    return {
        "accuracy": sum(1 for s, _ in rows if s.correct) / n if n else None,
        "prompt_accuracy": sum(any_right.values()) / len(any_right) if any_right else None,
        "n_scored_images": n,
        "n_prompts": len(any_right),
    }


PROTOCOL = Protocol(
    name="geneval",
    config_class=GenEvalConfig,
    relations=RELATIONS,
    score=score,
    figures=figures,
    summary="top-1 detection per class; centroid offset minus 0.1 x summed dims, direction beyond 0.5; accuracy",
)
