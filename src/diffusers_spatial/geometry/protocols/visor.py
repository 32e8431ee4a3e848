"""VISOR (microsoft/VISOR): any pair of boxes whose centroids are on the right side, no margin.

Rules (see docs/metrics.md): keep detections with score > 0.1; the relation holds if ANY (box of A, box of B)
pair has `c_A.x < c_B.x` (left of), `>` (right of), `c_A.y < c_B.y` (above), `>` (below); an image is correct
when both objects are detected and the relation holds. Benchmark figures: OA, VISOR_cond, VISOR_uncond and
VISOR_1..4, in percent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..boxes import centers
from ..context import ScoringContext, Verdicts
from ..segments import segment_count, segment_max, segment_min
from ..types import ImageScore
from .base import Protocol, check_positive, unsupported_details

__all__ = ["PROTOCOL", "VisorConfig"]

RELATIONS = frozenset({"left_of", "right_of", "above", "below"})


@dataclass(frozen=True)
class VisorConfig:
    """Options of the "visor" protocol.

    Args:
        score_threshold: keep detections with score strictly greater than this (OWL-ViT threshold 0.1).
    """

    score_threshold: float = 0.1

    def __post_init__(self):
        check_positive("score_threshold", self.score_threshold)


def score(context: ScoringContext, config: VisorConfig) -> Verdicts:
    batch, n = context.batch, context.n_images
    is_subject, is_object = context.roles(context.subject_targets, context.object_targets)
    kept = batch.scores > config.score_threshold
    a, b = kept & is_subject, kept & is_object
    n_a = segment_count(a, batch.image_index, n)
    n_b = segment_count(b, batch.image_index, n)
    found = (n_a > 0) & (n_b > 0)

    # "Any pair satisfies c_A < c_B" is "min over A < max over B" (and mirrored for ">"): no pair loop needed.
    c = centers(batch.boxes)
    x, y = c[:, 0], c[:, 1]
    holds_by_relation = {
        "left_of": segment_min(x, a, batch.offsets) < segment_max(x, b, batch.offsets),
        "right_of": segment_max(x, a, batch.offsets) > segment_min(x, b, batch.offsets),
        "above": segment_min(y, a, batch.offsets) < segment_max(y, b, batch.offsets),
        "below": segment_max(y, a, batch.offsets) > segment_min(y, b, batch.offsets),
    }
    relations = context.relations
    supported = context.is_relation(*RELATIONS)
    holds = np.zeros(n, dtype=bool)
    for relation, values in holds_by_relation.items():
        rows = context.is_relation(relation)
        holds[rows] = values[rows]
    correct = found & holds
    correct_code = np.where(supported, correct.astype(np.int8), np.int8(-1))

    details = []
    rows = zip(supported.tolist(), n_a.tolist(), n_b.tolist(), holds.tolist(), relations)
    for i, (ok, na, nb, h, rel) in enumerate(rows):
        entry = {
            "supported": True,
            "subject_found": na > 0,
            "object_found": nb > 0,
            "subject_count": na,
            "object_count": nb,
        }
        if not ok:
            entry.update(unsupported_details(PROTOCOL, rel))
        else:
            entry["relation_holds"] = h and na > 0 and nb > 0
            if not entry["relation_holds"]:
                entry["reason"] = _reason(na, nb, context, i)
        details.append(entry)
    return Verdicts(
        score=np.where(correct_code == 1, 1.0, 0.0),
        objects_found=found,
        correct=correct_code,
        details=details,
    )


def _reason(n_a: int, n_b: int, context: ScoringContext, i: int) -> str:
    if n_a == 0 or n_b == 0:
        missing = [t for t, n in ((context.subject_targets[i], n_a), (context.object_targets[i], n_b)) if n == 0]
        return f"not detected: {missing}"
    return f"no pair of boxes has the subject {context.relations[i]} the object"


def figures(image_scores: list[ImageScore], prompt_ids: list) -> dict:
    """OA, VISOR_cond, VISOR_uncond and VISOR_1..VISOR_4 in percent, over the images whose relation VISOR scores.

    VISOR_n counts the prompts (grouped by `prompt_ids`) with at least n correct images. A figure whose
    denominator is zero is None.
    """
    rows = [(s, pid) for s, pid in zip(image_scores, prompt_ids) if s.details.get("supported", True)]
    n = len(rows)
    both = sum(1 for s, _ in rows if s.objects_found)
    right = sum(1 for s, _ in rows if s.correct)
    per_prompt: dict = {}
    for s, pid in rows:
        per_prompt[pid] = per_prompt.get(pid, 0) + (1 if s.correct else 0)
    oa = 100.0 * both / n if n else None
    cond = 100.0 * right / both if both else None
    # VISOR_uncond = VISOR_cond * OA / 100; with no image detecting both objects it is 0 (no correct image).
    uncond = (cond * oa / 100.0 if cond is not None else 0.0) if n else None
    out = {"OA": oa, "VISOR_cond": cond, "VISOR_uncond": uncond}
    for k in range(1, 5):
        out[f"VISOR_{k}"] = (
            100.0 * sum(1 for c in per_prompt.values() if c >= k) / len(per_prompt) if per_prompt else None
        )
    out.update(n_scored_images=n, n_prompts=len(per_prompt))
    return out


PROTOCOL = Protocol(
    name="visor",
    config_class=VisorConfig,
    relations=RELATIONS,
    score=score,
    figures=figures,
    summary="any pair of boxes with centroids on the named side (no margin); OA / VISOR_cond / uncond / VISOR_1..4",
)
