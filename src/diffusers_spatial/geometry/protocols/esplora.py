"""ESPLoRA's own protocol: every confident instance counts, margins relative to object size, depth without an
overlap gate, and "undetermined" instead of a guess. The rules and the reasons are in docs/metrics.md.

Per image: all (A instance, B instance) pairs are judged by `esplora_rules` (holds / violated / ambiguous).
The image is correct when every pair holds; wrong when any pair is violated (`hedging` when others hold:
an object drawn on both sides); undetermined when the rest are ambiguous. When subject and object are the
same class ("a dog left of a dog"), any two distinct instances satisfying the relation suffice.

Before pairs are judged, an instance of one noun that overlaps an instance of the other noun with IoU >=
`same_object_iou` is taken to be the same object labelled twice (per-class NMS keeps both boxes) and the
lower-scoring label is dropped; equal scores leave the image undetermined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...relations import RELATIONS as RELATION_ORDER
from ..boxes import paired_iou
from ..context import ScoringContext, Verdicts
from ..depth import check_mask
from ..segments import pair_indices, segment_count, segment_max, segment_min, top_k
from ..types import ImageScore
from . import esplora_rules as rules
from .base import Protocol, check_positive

__all__ = ["PROTOCOL", "EsploraConfig"]

RELATIONS = frozenset({"left_of", "right_of", "above", "below", "in_front_of", "behind", "next_to"})


@dataclass(frozen=True)
class EsploraConfig:
    """Options of the "esplora" protocol.

    Args:
        score_threshold: an instance counts when its score is >= this (0.3).
        margin: left/right/above/below need the centroid offset, divided by the summed half-extents of the two
            boxes, to exceed this (0.5), and neither box's centre may lie inside the other's extent on that axis.
        near: next_to holds when the boxes' separation (the larger normalised offset; 1 = touching) is <= this (2.0,
            a gap up to the boxes' mean size).
        far: next_to is violated beyond this separation (3.0); between `near` and `far` it is undetermined.
        depth_margin: in_front_of/behind need the difference of median depths, as a fraction of the map's robust
            range, to exceed this (0.05).
        depth_percentiles: the percentiles whose spread is the map's robust range ((5, 95)).
        ground_margin: without depth, the bottom-edge difference over the mean box height must exceed this (0.1).
        occlusion_area_ratio: without depth, an overlapping box this much larger in area is taken to be in front
            (1.2).
        same_object_iou: a subject-noun and an object-noun instance whose boxes overlap with IoU >= this (0.7, in
            (0, 1]) are one object labelled twice: only the higher-scoring label counts (a tie: undetermined).
            Same-noun prompts are not affected.
        max_instances: per image and noun, only this many highest-scoring instances count (16, GenEval's
            per-class maximum), so an image costs at most `max_instances ** 2` pair judgements however many boxes
            a detector returns; the instances left out are counted in `details["instances_cut"]`.
    """

    score_threshold: float = 0.3
    margin: float = 0.5
    near: float = 2.0
    far: float = 3.0
    depth_margin: float = 0.05
    depth_percentiles: tuple[float, float] = (5.0, 95.0)
    ground_margin: float = 0.1
    occlusion_area_ratio: float = 1.2
    same_object_iou: float = 0.7
    max_instances: int = 16

    def __post_init__(self):
        for name in ("score_threshold", "margin", "near", "far", "depth_margin", "ground_margin"):
            check_positive(name, getattr(self, name))
        check_positive("occlusion_area_ratio", self.occlusion_area_ratio, allow_zero=False)
        check_positive("same_object_iou", self.same_object_iou, allow_zero=False)
        if self.same_object_iou > 1:
            raise ValueError(f"same_object_iou must be in (0, 1], got {self.same_object_iou!r}")
        if self.far < self.near:
            raise ValueError(f"far ({self.far}) must be >= near ({self.near})")
        if isinstance(self.max_instances, bool) or not isinstance(self.max_instances, int) or self.max_instances < 2:
            raise ValueError(
                f"max_instances must be an integer >= 2 (same-noun prompts need two), got {self.max_instances!r}"
            )
        low, high = self.depth_percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(
                f"depth_percentiles must be (low, high) with 0 <= low < high <= 100, got {self.depth_percentiles}"
            )


# Per relation id (in `relations.RELATIONS` order): the axis and sign of the planar rule (0 for the others).
_AXIS = np.array([rules.PLANAR.get(r, (0, 0.0))[0] for r in RELATION_ORDER], dtype=np.int64)
_SIGN = np.array([rules.PLANAR.get(r, (0, 0.0))[1] for r in RELATION_ORDER])


def _pair_verdicts(context: ScoringContext, config: EsploraConfig, pa, pb, pi, box_a, box_b, depths: dict, constant):
    """Verdict and strength of every pair (`box_a`, `box_b`: the pairs' boxes); the rule is the pair's image's
    relation."""
    verdict = np.zeros(pa.size, dtype=np.int8)
    strength = np.zeros(pa.size)
    code = context.relation_codes[pi]

    planar = context.is_relation(*rules.PLANAR)[pi]
    if planar.any():
        verdict[planar], strength[planar] = rules.planar_pairs(
            box_a[planar], box_b[planar], _AXIS[code[planar]], _SIGN[code[planar]], config.margin
        )
    near = context.is_relation("next_to")[pi]
    if near.any():
        verdict[near], strength[near] = rules.near_pairs(box_a[near], box_b[near], config.near, config.far)
    front = context.is_relation("in_front_of")[pi]
    depth_rows = front | context.is_relation("behind")[pi]
    has_depth = np.array([i in depths for i in range(context.n_images)], dtype=bool)
    fallback = depth_rows & ~has_depth[pi]
    if fallback.any():
        verdict[fallback], strength[fallback] = rules.ground_occlusion_pairs(
            box_a[fallback], box_b[fallback], front[fallback], config.ground_margin, config.occlusion_area_ratio
        )
    for k in np.flatnonzero(depth_rows & ~fallback).tolist():
        i = int(pi[k])
        verdict[k], strength[k] = (
            (rules.AMBIGUOUS, 0.0)
            if constant[i]
            else _depth_pair(context, depths, config, i, int(pa[k]), int(pb[k]), bool(front[k]))
        )
    return verdict, strength


def _depth_pair(context: ScoringContext, depths: dict, config: EsploraConfig, i: int, a: int, b: int, front: bool):
    """One pair's depth verdict; each instance's median and each map's range are computed once per batch."""
    cache = context.cache
    depth = depths[i]
    if ("scale", i) not in cache:
        cache["scale", i] = rules.depth_scale(depth, config.depth_percentiles)
    medians = []
    for j, other in ((a, b), (b, a)):
        if ("mask", j) not in cache:
            mask = _mask(context.batch, j, depth.shape, i)
            cache["mask", j] = mask if mask is not None and mask.any() else None  # an empty mask: use the box
        mask = cache["mask", j]
        box, other_box = context.batch.boxes[j], context.batch.boxes[other]
        # The box-minus-other region depends on the partner only when the two boxes share pixels.
        key = ("median", j, other if mask is None and rules.shares_pixels(box, other_box, depth.shape) else -1)
        if key not in cache:
            cache[key] = rules.region_median(depth, box, other_box, mask)
        medians.append(cache[key])
    verdict, value = rules.depth_verdict(*medians, cache["scale", i], front, config.depth_margin)
    return verdict, 0.0 if value is None else value


def _mask(batch, j: int, shape, i: int):
    mask = batch.masks[j]
    if mask is None:
        return None
    return check_mask(mask, shape, f"image {i} detection {j - int(batch.offsets[i])}")


def _merge_duplicates(batch, a, b, pa, pb, pi, box_a, box_b, same, iou: float, n: int):
    """Drop the lower-scoring label of one object detected under both nouns.

    Closed-set detectors with per-class NMS often keep a box under a second, weaker class ("dog" 0.8 and "cat" 0.4
    on the same dog). A pair of different-noun instances with IoU >= `iou` is such a duplicate: its lower-scoring
    instance is dropped from both roles (with all its pairs). Equal scores drop neither; the pair is removed and the
    image flagged (which label is right cannot be told). Returns the new flags, the pairs kept (a mask, None for
    all), the dropped count and the tie flag per image.
    """
    dup = ~same[pi] & (paired_iou(box_a, box_b) >= iou)
    if not dup.any():
        return a, b, None, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    da, db = pa[dup], pb[dup]
    sa, sb = batch.scores[da], batch.scores[db]
    dropped = np.zeros(a.size, dtype=bool)
    dropped[da[sa < sb]] = True
    dropped[db[sb < sa]] = True
    gone = dropped[pa] | dropped[pb]
    tie = dup & ~gone & (batch.scores[pa] == batch.scores[pb])
    keep = ~gone & ~tie
    merged = segment_count(dropped, batch.image_index, n)
    return a & ~dropped, b & ~dropped, keep, merged, segment_count(tie, pi, n) > 0


def score(context: ScoringContext, config: EsploraConfig) -> Verdicts:
    batch, n = context.batch, context.n_images
    is_subject, is_object = context.roles(context.subject_targets, context.object_targets)
    kept = batch.scores >= config.score_threshold
    a = top_k(kept & is_subject, batch.scores, batch.image_index, config.max_instances)
    b = top_k(kept & is_object, batch.scores, batch.image_index, config.max_instances)
    cut = segment_count(kept & (is_subject | is_object) & ~(a | b), batch.image_index, n)
    same = np.array([s == o for s, o in zip(context.subject_targets, context.object_targets)], dtype=bool)
    pa, pb, pi = pair_indices(a, b, batch.image_index, n)
    distinct = pa != pb
    pa, pb, pi = pa[distinct], pb[distinct], pi[distinct]
    box_a, box_b = batch.boxes[pa], batch.boxes[pb]
    a, b, keep, merged, tied = _merge_duplicates(
        batch, a, b, pa, pb, pi, box_a, box_b, same, config.same_object_iou, n
    )
    if keep is not None:
        pa, pb, pi, box_a, box_b = pa[keep], pb[keep], pi[keep], box_a[keep], box_b[keep]
    n_a = segment_count(a, batch.image_index, n)
    n_b = segment_count(b, batch.image_index, n)
    found = np.where(same, n_a >= 2, (n_a >= 1) & (n_b >= 1))

    # `ScoringContext.build` has validated every given map (float64, finite, the image's shape).
    depths = {i: depth for i, depth in enumerate(context.depths) if depth is not None}
    constant = np.zeros(n, dtype=bool)
    for i, depth in depths.items():
        constant[i] = bool(depth.max() == depth.min())

    verdict, strength = _pair_verdicts(context, config, pa, pb, pi, box_a, box_b, depths, constant)
    holding = segment_count(verdict == rules.HOLDS, pi, n)
    violated = segment_count(verdict == rules.VIOLATED, pi, n)
    ambiguous = segment_count(verdict == rules.AMBIGUOUS, pi, n)
    pair_offsets = np.concatenate(([0], np.cumsum(np.bincount(pi, minlength=n))))
    weakest = segment_min(strength, np.ones(pi.size, bool), pair_offsets)
    strongest = segment_max(strength, np.ones(pi.size, bool), pair_offsets)

    correct = np.where(
        same,
        np.where(holding > 0, 1, np.where(ambiguous > 0, -1, 0)),
        np.where(violated > 0, 0, np.where(ambiguous > 0, -1, 1)),
    ).astype(np.int8)
    correct[~found] = 0
    correct[found & constant & context.is_relation("in_front_of", "behind")] = -1
    correct[found & tied] = -1
    hedging = ~same & found & (violated > 0) & (holding > 0)

    strength = np.where(same, strongest, weakest)
    details = []
    rows = zip(
        context.relations,
        n_a.tolist(),
        n_b.tolist(),
        same.tolist(),
        found.tolist(),
        correct.tolist(),
        holding.tolist(),
        violated.tolist(),
        ambiguous.tolist(),
        hedging.tolist(),
        strength.tolist(),
        constant.tolist(),
        merged.tolist(),
        tied.tolist(),
        cut.tolist(),
    )
    for i, row in enumerate(rows):
        relation, na, nb, sm, ok, verdict, hold, viol, amb, hedge, value, flat, dropped, tie, left_out = row
        need = 2 if sm else 1
        entry = {
            "supported": True,
            "subject_found": na >= need,
            "object_found": nb >= need,
            "subject_count": na,
            "object_count": nb,
            "same_class": sm,
            "pairs": hold + viol + amb,
            "pairs_holding": hold,
            "pairs_violated": viol,
            "pairs_ambiguous": amb,
            "hedging": hedge,
            "merged_duplicates": dropped,
            "instances_cut": left_out,
        }
        has_depth = context.depths[i] is not None
        three_d = relation in ("in_front_of", "behind")
        if three_d:
            entry["depth_source"] = "depth_map" if has_depth else "geometric_fallback"
            entry["confidence"] = "high" if has_depth else "low"
        if ok and entry["pairs"] and not (three_d and flat):
            key = _strength_key(relation, has_depth)
            entry[key] = -value if key == "separation" else value
        if not ok:
            missing = [
                t for t, n_t in ((context.subject_targets[i], na), (context.object_targets[i], nb)) if n_t < need
            ]
            same_note = " (the same class needs two instances)" if sm else ""
            merged_note = f"; {dropped} dropped as a weaker label of the same object" if dropped else ""
            entry["reason"] = f"not detected (score >= {config.score_threshold}): {missing}{same_note}{merged_note}"
        elif tie:
            subject, obj = context.subject_targets[i], context.object_targets[i]
            entry["reason"] = (
                f"a {subject!r} and a {obj!r} box overlap as one object (IoU >= {config.same_object_iou}) with equal "
                "scores: which it is cannot be told"
            )
        elif verdict == -1:
            entry["reason"] = _undetermined_reason(relation, flat, has_depth, config)
        elif verdict == 0:
            entry["reason"] = (
                f"hedging: {hold} pair(s) hold but {viol} violate {relation}: the object is drawn on both sides"
                if hedge
                else f"{viol} of {entry['pairs']} instance pair(s) violate {relation}"
            )
        details.append(entry)
    return Verdicts(score=np.where(correct == 1, 1.0, 0.0), objects_found=found, correct=correct, details=details)


def _strength_key(relation: str, has_depth: bool) -> str:
    """The details key of the weakest pair's evidence: the rule's own quantity."""
    if relation == "next_to":
        return "separation"  # the largest separation over pairs
    if relation in ("in_front_of", "behind"):
        return "depth_difference" if has_depth else "ground_offset"
    return "offset"  # the smallest normalised offset along the relation's direction


def _undetermined_reason(relation: str, constant: bool, has_depth: bool, config: EsploraConfig) -> str:
    if relation in ("in_front_of", "behind"):
        if constant:
            return "constant depth map: no depth order can be read"
        if has_depth:
            return f"depth difference within the noise margin ({config.depth_margin} of the map's range)"
        return "no depth map, and the ground-contact and occlusion cues are absent or disagree"
    if relation == "next_to":
        return f"separation between near ({config.near}) and far ({config.far}): neither clearly near nor far"
    return f"boxes overlap (normalised offsets within the margin {config.margin}): the layout does not show {relation}"


def figures(image_scores: list[ImageScore], prompt_ids: list) -> dict:
    """`accuracy`: correct / images (undetermined counts as not correct, so abstaining never raises it);
    `determined_accuracy`: correct / determined; `coverage`: determined / images; `hedging_rate`; `low_confidence`
    (images judged from geometric cues only)."""
    n = len(image_scores)
    right = sum(1 for s in image_scores if s.correct)
    determined = sum(1 for s in image_scores if s.correct is not None)
    return {
        "accuracy": right / n if n else None,
        "determined_accuracy": right / determined if determined else None,
        "coverage": determined / n if n else None,
        "hedging_rate": sum(1 for s in image_scores if s.details.get("hedging")) / n if n else None,
        "low_confidence": sum(1 for s in image_scores if s.details.get("confidence") == "low"),
    }


PROTOCOL = Protocol(
    name="esplora",
    config_class=EsploraConfig,
    relations=RELATIONS,
    score=score,
    figures=figures,
    summary="every confident instance; size-normalised margins; median depth, no IoU gate; undetermined if weak",
)
