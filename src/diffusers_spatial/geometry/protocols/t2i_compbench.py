"""T2I-CompBench 2D and 3D spatial (Karine-Huang/T2I-CompBench, UniDet_eval/2D_spatial_eval.py, 3D_spatial_eval.py).

Rules (see docs/metrics.md): the relation word is the first entry of a fixed list found as a substring of the
prompt; each noun takes the FIRST kept detection of its class (2D: exact label, 3D: noun is a substring of the
label, last match before both nouns were seen); the image score is `0.25 * s_A + 0.25 * s_B + 0.5 * position`
(one object found: `0.25 * its score`); 2D sets image scores below 0.5 to 0; the benchmark score is the mean.
Nouns are the prompt's subject/object head nouns from `diffusers_spatial.relations` (the reference takes the
first and last spaCy NOUN), with girl/boy/man/woman mapped to "person".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..boxes import centers, paired_iou
from ..context import ScoringContext, Verdicts
from ..labels import t2i_target_noun
from ..segments import first_true, gather, last_true_before
from ..types import ImageScore
from .base import Protocol, check_bool, check_positive

__all__ = ["PROTOCOL_2D", "PROTOCOL_3D", "T2ICompBench2DConfig", "T2ICompBench3DConfig", "relation_word"]

WORDS_2D = (
    "on side of",
    "next to",
    "near",
    "on the left of",
    "on the right of",
    "on the bottom of",
    "on the top of",
    "on top of",
)
WORDS_3D = ("in front of", "behind", "hidden")
_NEAR_WORDS = ("next to", "on side of", "near")
# Our relation ids for the words the reference scores ('on top of' is listed but has no rule: position 0).
_WORD_RELATION = {
    "on side of": "next_to",
    "next to": "next_to",
    "near": "next_to",
    "on the left of": "left_of",
    "on the right of": "right_of",
    "on the bottom of": "below",
    "on the top of": "above",
    "on top of": "above",
    "in front of": "in_front_of",
    "behind": "behind",
    "hidden": "behind",
}


@lru_cache(maxsize=1 << 16)
def relation_word(text: str, words: tuple[str, ...]) -> str | None:
    """The first of `words` that is a (case-sensitive) substring of `text`, as the reference picks it; or None."""
    return next((word for word in words if word in text), None)


@dataclass(frozen=True)
class T2ICompBench2DConfig:
    """Options of the "t2i_compbench_2d" protocol.

    Args:
        score_threshold: keep detections with score >= this (UniDet threshold 0.5).
        iou_threshold: left/right/top/bottom score 1 below this IoU, else `iou_threshold / IoU` (0.1).
        distance_threshold: next to / near / on side of score 1 when |dx| or |dy| is below it (150 px), else
            `distance_threshold / max(|dx|, |dy|)`.
        min_image_score: image scores below this become 0 (0.5).
        reference_resize: map boxes into the frame the reference detector saw (short side 479, long side <= 480)
            before the pixel rules; needs `image_size`. Off by default: boxes are used as given.
    """

    score_threshold: float = 0.5
    iou_threshold: float = 0.1
    distance_threshold: float = 150.0
    min_image_score: float = 0.5
    reference_resize: bool = False

    def __post_init__(self):
        check_positive("score_threshold", self.score_threshold)
        check_positive("iou_threshold", self.iou_threshold, allow_zero=False)
        check_positive("distance_threshold", self.distance_threshold, allow_zero=False)
        check_positive("min_image_score", self.min_image_score)
        check_bool("reference_resize", self.reference_resize)


@dataclass(frozen=True)
class T2ICompBench3DConfig:
    """Options of the "t2i_compbench_3d" protocol.

    Args:
        score_threshold: keep detections with score >= this (0.5).
        iou_threshold: the overlap gate: IoU above it scores 1, `0 < IoU <= it` scores `IoU / it` (0.5).
        corrected_crop: take a box's depth from `depth[y1:y2, x1:x2]`; the reference (default False) uses
            `depth[x1:x2, y1:y2]`, x as the row index.
        quantize_depth: store the min-max normalised map as 8 bits and read it back (`floor(255 d) / 255`), as
            the reference's PNG round trip does.
    """

    score_threshold: float = 0.5
    iou_threshold: float = 0.5
    corrected_crop: bool = False
    quantize_depth: bool = True

    def __post_init__(self):
        check_positive("score_threshold", self.score_threshold)
        check_positive("iou_threshold", self.iou_threshold, allow_zero=False)
        check_bool("corrected_crop", self.corrected_crop)
        check_bool("quantize_depth", self.quantize_depth)


def _targets(context: ScoringContext) -> tuple[list[str], list[str]]:
    """The labels to look for: the caller's labels as given, the prompt's nouns with the person rewrite."""
    subjects = [t if e else t2i_target_noun(t) for t, e in zip(context.subject_targets, context.subject_explicit)]
    objects = [t if e else t2i_target_noun(t) for t, e in zip(context.object_targets, context.object_explicit)]
    return subjects, objects


def _image_scores(score_a, score_b, found_a, found_b, position) -> np.ndarray:
    """`0.25 s_A + 0.25 s_B + position / 2` with both objects, `0.25 s` with one, 0 with none (reference order)."""
    both = 0.25 * score_a + 0.25 * score_b
    both += position / 2
    return np.where(found_a & found_b, both, np.where(found_a, 0.25 * score_a, np.where(found_b, 0.25 * score_b, 0.0)))


def _reference_frame_scale(size: tuple[int, int]) -> tuple[float, float]:
    """Per-axis factor from the image to the reference's resized frame (short side 479, long side <= 480)."""
    width, height = size
    scale = 479 / min(width, height)
    if max(width, height) * scale > 480:
        scale = 480 / max(width, height)
    return int(width * scale + 0.5) / width, int(height * scale + 0.5) / height


def position_2d(words, box_a, box_b, config: T2ICompBench2DConfig) -> np.ndarray:
    """The reference's `determine_position` for aligned arrays of relation words and box pairs (A = first noun)."""
    dx, dy = (centers(box_b) - centers(box_a)).T
    iou = paired_iou(box_a, box_b)
    words = np.asarray(words, dtype=object)
    adx, ady = np.abs(dx), np.abs(dy)
    t, d = config.iou_threshold, config.distance_threshold
    overlap_score = np.divide(t, iou, out=np.ones_like(iou), where=iou >= t)  # 1 below the IoU threshold
    far = np.maximum(adx, ady)
    near_score = np.where((adx < d) | (ady < d), 1.0, np.divide(d, far, out=np.ones_like(far), where=far > 0))
    conditions = {
        "on the left of": (dx > 0) & (adx > ady),
        "on the right of": (dx < 0) & (adx > ady),
        "on the top of": (dy > 0) & (ady > adx),
        "on the bottom of": (dy < 0) & (ady > adx),
    }
    position = np.zeros(len(words))
    for word, condition in conditions.items():
        rows = (words == word) & condition
        position[rows] = overlap_score[rows]
    rows = np.isin(words, _NEAR_WORDS)
    position[rows] = near_score[rows]
    return position


def score_2d(context: ScoringContext, config: T2ICompBench2DConfig) -> Verdicts:
    batch, n = context.batch, context.n_images
    subjects, objects = _targets(context)
    is_subject, is_object = context.roles(subjects, objects)
    kept = batch.scores >= config.score_threshold
    first_a = first_true(kept & is_subject, batch.offsets)
    first_b = first_true(kept & is_object, batch.offsets)
    found_a, found_b = first_a >= 0, first_b >= 0
    both = found_a & found_b
    words = [relation_word(text, WORDS_2D) for text in context.texts]

    boxes = batch.boxes
    if config.reference_resize:
        boxes = boxes.copy()
        for i in range(n):
            if context.image_sizes[i] is None:
                raise ValueError(f"image {i}: reference_resize=True needs image_size=(width, height)")
            sx, sy = _reference_frame_scale(context.image_sizes[i])
            boxes[batch.offsets[i] : batch.offsets[i + 1]] *= (sx, sy, sx, sy)
    rows = np.flatnonzero(both)
    position = np.zeros(n)
    position[rows] = position_2d([words[i] for i in rows], boxes[first_a[rows]], boxes[first_b[rows]], config)

    score_a, score_b = gather(batch.scores, first_a), gather(batch.scores, first_b)
    raw = _image_scores(score_a, score_b, found_a, found_b, position)
    final = np.where(raw < config.min_image_score, 0.0, raw)
    supported = np.array([w is not None for w in words], dtype=bool)
    correct = np.where(supported, (both & (position > 0) & (final > 0)).astype(np.int8), np.int8(-1))

    details = _details(context, (subjects, objects), words, WORDS_2D, first_a, first_b, position, raw)
    for entry, verdict in zip(details, correct.tolist()):
        if entry["relation_word"] == "on top of":
            entry["note"] = "'on top of' is in the reference's word list but has no rule: position 0"
        if verdict == 0 and "reason" not in entry:
            entry["reason"] = f"image score {entry['raw_score']:.4f} < {config.min_image_score} becomes 0"
    return Verdicts(score=final, objects_found=both, correct=correct, details=details)


def _details(context, targets, words, vocabulary, pick_a, pick_b, position, raw) -> list[dict]:
    """The per-image facts both T2I-CompBench protocols report (indices are within each image's list)."""
    starts = context.batch.offsets[:-1]
    rows = zip(
        words,
        np.where(pick_a >= 0, pick_a - starts, -1).tolist(),
        np.where(pick_b >= 0, pick_b - starts, -1).tolist(),
        position.tolist(),
        raw.tolist(),
    )
    details = []
    for i, (word, ia, ib, pos, value) in enumerate(rows):
        entry = {
            "supported": word is not None,
            "relation_word": word,
            "word_relation": _WORD_RELATION.get(word),
            "subject_found": ia >= 0,
            "object_found": ib >= 0,
            "subject_index": ia if ia >= 0 else None,
            "object_index": ib if ib >= 0 else None,
            "position": pos,
            "raw_score": value,
        }
        if word is None:
            entry["reason"] = f"no relation word of {list(vocabulary)} in the prompt {context.texts[i]!r}"
        elif ia < 0 or ib < 0:
            missing = [t[i] for t, k in zip(targets, (ia, ib)) if k < 0]
            entry["reason"] = f"not detected: {missing}"
        elif pos == 0:
            entry["reason"] = f"position 0: the boxes do not show {word!r} under the reference's rule"
        details.append(entry)
    return details


# ----------------------------------------------------------------------------------------------------------------
# 3D
# ----------------------------------------------------------------------------------------------------------------


def _reference_crop_mean(depth, low, high, box, corrected: bool, quantize: bool) -> float | None:
    """Mean of the reference's depth crop of `box` after its per-image processing: min-max normalisation to
    [0, 1] by the map's `low`/`high` and the 8-bit PNG round trip (`floor(255 d) / 255`, as PIL truncates).
    Only the crop is transformed: the mean needs nothing else. None when the crop is empty."""
    x1, y1, x2, y2 = (int(v) for v in box)  # int() truncates toward zero, as the reference does
    region = depth[y1:y2, x1:x2] if corrected else depth[x1:x2, y1:y2]  # the reference indexes rows by x
    if region.size == 0:
        return None
    normal = (region - low) / (high - low)
    if quantize:
        normal = np.floor(255 * normal.astype(np.float32)).astype(np.float64) / 255
    return float(normal.mean())


def position_3d(word: str, mean_a: float, mean_b: float, iou: float, threshold: float) -> float:
    """The reference's 3D rule: right depth order and IoU > t: 1; right order and 0 < IoU <= t: IoU / t; else 0."""
    diff = mean_a - mean_b
    right_order = diff > 0 if word == "in front of" else diff < 0
    if not right_order or iou <= 0:
        return 0.0
    return 1.0 if iou > threshold else iou / threshold


def score_3d(context: ScoringContext, config: T2ICompBench3DConfig) -> Verdicts:
    batch, n = context.batch, context.n_images
    subjects, objects = _targets(context)
    is_subject, is_object = context.roles(subjects, objects, substring=True)
    kept = batch.scores >= config.score_threshold
    a, b = kept & is_subject, kept & is_object
    first_a, first_b = first_true(a, batch.offsets), first_true(b, batch.offsets)
    found_a, found_b = first_a >= 0, first_b >= 0
    both = found_a & found_b
    # The reference scans detections in order, updating each noun's index, and stops once both were seen.
    stop = np.maximum(first_a, first_b)
    pick_a = np.where(both, last_true_before(a, batch.offsets, stop), first_a)
    pick_b = np.where(both, last_true_before(b, batch.offsets, stop), first_b)
    words = [relation_word(text, WORDS_3D) for text in context.texts]

    position = np.zeros(n)
    constant = np.zeros(n, dtype=bool)
    notes: dict[int, str] = {}
    for i in range(n):
        if words[i] is None:
            continue
        if context.depths[i] is None:
            raise ValueError(f"image {i}: t2i_compbench_3d scores {words[i]!r} from depth, but depth is None")
        depth = context.depths[i]  # validated by `ScoringContext.build`
        if not both[i]:
            continue
        low, high = float(depth.min()), float(depth.max())
        if high == low:
            constant[i] = True  # the reference's normalisation divides by zero; nothing can be read
            continue
        box_a, box_b = batch.boxes[pick_a[i]], batch.boxes[pick_b[i]]
        mean_a = _reference_crop_mean(depth, low, high, box_a, config.corrected_crop, config.quantize_depth)
        mean_b = _reference_crop_mean(depth, low, high, box_b, config.corrected_crop, config.quantize_depth)
        if mean_a is None or mean_b is None:
            notes[i] = "a box's depth crop is empty (outside the map): position 0, as the reference's NaN gives"
            continue
        iou = float(paired_iou(box_a[None], box_b[None])[0])
        position[i] = position_3d(words[i], mean_a, mean_b, iou, config.iou_threshold)

    score_a, score_b = gather(batch.scores, pick_a), gather(batch.scores, pick_b)
    final = _image_scores(score_a, score_b, found_a, found_b, position)
    supported = np.array([w is not None for w in words], dtype=bool)
    correct = (both & (position > 0)).astype(np.int8)
    correct[~supported | constant] = -1

    details = _details(context, (subjects, objects), words, WORDS_3D, pick_a, pick_b, position, final)
    for i in np.flatnonzero(constant).tolist():
        details[i]["reason"] = "constant depth map: no depth order can be read"
    for i, note in notes.items():
        details[i]["note"] = note
    return Verdicts(score=final, objects_found=both, correct=correct, details=details)


def figures(image_scores: list[ImageScore], prompt_ids: list) -> dict:
    """The benchmark score: the mean of all image scores (every image counts, as in the reference); None when no
    image's prompt holds a relation word of the benchmark (a mean of zeros would read as a measured 0.00)."""
    n = len(image_scores)
    if not any(s.details.get("supported", True) for s in image_scores):
        return {"score": None}
    return {"score": sum(float(s.score) for s in image_scores) / n}


PROTOCOL_2D = Protocol(
    name="t2i_compbench_2d",
    config_class=T2ICompBench2DConfig,
    relations=frozenset({"left_of", "right_of", "above", "below", "next_to"}),
    score=score_2d,
    figures=figures,
    summary="first detection per noun; 0.25/0.25/0.5 image score with the IoU penalty; < 0.5 -> 0; mean",
)

PROTOCOL_3D = Protocol(
    name="t2i_compbench_3d",
    config_class=T2ICompBench3DConfig,
    relations=frozenset({"in_front_of", "behind"}),
    score=score_3d,
    figures=figures,
    summary="mean box depth (reference crop quirk), IoU gate; 0.25/0.25/0.5 image score; mean",
)
