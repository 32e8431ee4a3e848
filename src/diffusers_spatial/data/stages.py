"""The curation stages: pure functions from a batch of records to a batch of the same length.

Each stage reads the records still kept (`record.skip is None`), returns new records (inputs are never
mutated) with fields filled or `skip` set to a reason of `schema.SKIP_REASONS`, and passes skipped records
through untouched, so the end of the batch can count every reason. In pipeline order:

1. `caption_stage`: empty and non-English captions, captions with several relations; parses the relation
   (`relations.parse_spatial_prompt`). A caption with no relation goes on to synthesis (or is skipped).
2. `perception_stage`: decodes the images and finds boxes (and depth, with a depth model) for the whole batch
   in one `perception.Perception.run` call; undecodable images are skipped as `corrupt_image`.
3. `verify_stage`: the caption's relation judged by `geometry.score_image` (the esplora protocol), with the
   prompt nouns mapped to detector labels by perception (`perception.match_noun`: "puppy" -> dog).
4. `synthesis_stage`: an explicit prompt from verified geometry where the caption has no relation or a false
   one (`synthesis.synthesize_prompt`).
5. `quality_stage`: confidence and size of the subject and object boxes.
6. `balance_stage`: at most `max_rows_per_pair` rows per unordered object pair and shard (the one stage with
   state, which it takes and returns explicitly).

`to_rows` turns the kept records into rows of `schema.SPATIAL_FEATURES`; `run_stages` chains stages 1-5.

Examples:

```py
>>> from diffusers_spatial.data import CurationConfig, Record
>>> from diffusers_spatial.data.stages import caption_stage
>>> batch = [Record("s/0", caption="a dog to the left of a cat"), Record("s/1", caption="ein Hund und eine Katze"),
...          Record("s/2", caption="a cat left of a dog above a bench"), Record("s/3", caption="  ")]
>>> [(r.skip, r.spatial and r.spatial.relation) for r in caption_stage(batch, CurationConfig())]
[(None, 'left_of'), ('non_english', None), ('several_relations', None), ('empty_caption', None)]

```
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from diffusers.utils import logging

from ..geometry import ImageScore, score_image
from ..relations import RELATIONS_3D, MultipleRelationsError, parse_spatial_prompt
from .config import CurationConfig
from .language import looks_english
from .records import Record, mark
from .synthesis import evidence, synthesize_prompt

logger = logging.get_logger(__name__)

__all__ = [
    "balance_stage",
    "caption_stage",
    "depth_statistics",
    "pair_boxes",
    "perception_stage",
    "quality_stage",
    "run_stages",
    "synthesis_stage",
    "to_rows",
    "verify_stage",
]


def caption_stage(batch: Sequence[Record], config: CurationConfig) -> list[Record]:
    """Filter captions and parse their relation into `record.spatial` (whitespace runs are collapsed first)."""
    out = []
    for record in batch:
        if not record.kept:
            out.append(record)
            continue
        text = " ".join((record.caption or "").split())
        if not any(c.isalpha() for c in text):
            out.append(mark(record, "empty_caption"))
            continue
        if config.require_english and not looks_english(text):
            out.append(mark(record, "non_english"))
            continue
        try:
            spatial = parse_spatial_prompt(text)
        except MultipleRelationsError:
            out.append(mark(record, "several_relations"))
            continue
        if spatial is None and not config.synthesize:
            out.append(mark(record, "no_relation"))
            continue
        out.append(replace(record, spatial=spatial))
    return out


def perception_stage(batch: Sequence[Record], perception) -> list[Record]:
    """Decode and perceive the kept records' images in one `Perception.run` call.

    Stores detections (original pixels), the image size, the detector labels standing for the caption's nouns
    (`extra["noun_labels"]`) and depth: depth shipped with the input wins over a depth model's estimate. The
    decoded image is released: the output keeps the original bytes. An image that cannot be read ->
    `corrupt_image`; a model failure on one image -> `perception_error`.
    """
    todo = [i for i, record in enumerate(batch) if record.kept]
    out = list(batch)
    if not todo:
        return out
    images = [batch[i].image if batch[i].image is not None else batch[i].image_bytes for i in todo]
    results = perception.run(images, [batch[i].spatial for i in todo])
    for i, result in zip(todo, results):
        record = batch[i]
        if result.error is not None:
            out[i] = mark(record, "corrupt_image" if result.image_size is None else "perception_error")
            logger.debug(f"{record.key}: {result.error}")
            continue
        depth, depth_source = record.depth, record.depth_source
        width, height = result.image_size
        if depth is not None and depth.shape != (height, width):
            depth = _resize_depth(depth, (width, height))
        if depth is None and result.depth is not None:
            depth, depth_source = np.asarray(result.depth, dtype=np.float32), result.depth_source
        noun_labels = {noun: match.label for noun, match in result.noun_labels.items()}
        out[i] = replace(
            record,
            image=None,
            image_size=result.image_size,
            detections=[_plain_detection(d) for d in result.detections],
            depth=depth,
            depth_source=depth_source,
            extra={**record.extra, "noun_labels": noun_labels},
        )
    return out


def _resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(depth.astype(np.float32), mode="F").resize(size, Image.BILINEAR))


def _plain_detection(detection: dict) -> dict:
    """The shared detection format without extras such as masks (those are not written)."""
    return {
        "label": str(detection["label"]),
        "score": float(detection["score"]),
        "box": [float(v) for v in detection["box"]],
    }


def _judge(record: Record, prompt, labels: tuple[str, str], config: CurationConfig) -> ImageScore | None:
    """`score_image` of `prompt` on the record; None (logged) when the geometry rejects the record's data."""
    try:
        return score_image(
            prompt,
            record.detections,
            protocol=config.protocol,
            depth=record.depth,
            image_size=record.image_size,
            subject_label=labels[0],
            object_label=labels[1],
        )
    except ValueError as error:
        logger.warning(f"{record.key}: geometry rejected the detections or depth ({error})")
        return None


def verify_stage(batch: Sequence[Record], config: CurationConfig) -> list[Record]:
    """Judge each parsed caption; a correct one becomes the record's `prompt` (`prompt_origin="caption"`).

    False -> kept for synthesis (`extra["misstated"]`) or skipped `relation_false`; a noun the detector cannot
    see -> `unseen_noun`; objects missing -> `objects_not_found`; undecided -> `undetermined`; a 3D relation
    without real depth -> `no_depth_for_3d`.
    """
    out = []
    for record in batch:
        if not record.kept or record.spatial is None:
            out.append(record)
            continue
        spatial = record.spatial
        if spatial.relation in RELATIONS_3D and record.depth is None:
            out.append(mark(record, "no_depth_for_3d"))
            continue
        noun_labels = record.extra.get("noun_labels", {})
        labels = (noun_labels.get(spatial.subject_noun), noun_labels.get(spatial.object_noun))
        if None in labels:
            out.append(mark(record, "unseen_noun"))
            continue
        result = _judge(record, spatial, labels, config)
        if result is None:
            out.append(mark(record, "perception_error"))
        elif result.correct is True:
            extra = {**record.extra, "labels": labels}
            out.append(replace(record, prompt=spatial, prompt_origin="caption", score=result, extra=extra))
        elif result.correct is False and result.objects_found:
            if config.synthesize:
                out.append(replace(record, extra={**record.extra, "misstated": True, "labels": labels}))
            else:
                out.append(mark(record, "relation_false"))
        elif not result.objects_found:
            out.append(mark(record, "objects_not_found"))
        else:
            out.append(mark(record, "undetermined"))
    return out


def synthesis_stage(batch: Sequence[Record], config: CurationConfig) -> list[Record]:
    """Write a verified prompt for kept records without one (no relation in the caption, or a false one)."""
    out = []
    for record in batch:
        if not record.kept or record.prompt is not None:
            out.append(record)
            continue
        misstated = record.extra.get("misstated", False)
        try:
            found = synthesize_prompt(
                record.detections,
                key=record.key,
                depth=record.depth,
                image_size=record.image_size,
                caption=record.spatial if misstated else None,
                caption_labels=record.extra.get("labels") if misstated else None,
                min_confidence=config.min_confidence,
                protocol=config.protocol,
            )
        except ValueError as error:
            logger.warning(f"{record.key}: geometry rejected the detections or depth ({error})")
            out.append(mark(record, "perception_error"))
            continue
        if found is None:
            out.append(mark(record, "no_verified_pair"))
        else:
            prompt, result, labels = found
            extra = {**record.extra, "labels": labels}
            out.append(replace(record, prompt=prompt, prompt_origin="synthesized", score=result, extra=extra))
    return out


def pair_boxes(record: Record) -> tuple[list[dict], list[dict]]:
    """The detections of the record's subject and of its object (by the labels its verification used)."""
    subject_label, object_label = record.extra["labels"]
    return (
        [d for d in record.detections if d["label"] == subject_label],
        [d for d in record.detections if d["label"] == object_label],
    )


def _best_box(boxes: list[dict]) -> dict | None:
    return max(boxes, key=lambda d: d["score"]) if boxes else None


def _box_fraction(box: Sequence[float], image_size: tuple[int, int]) -> float:
    width, height = image_size
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]) / float(width * height)


def quality_stage(batch: Sequence[Record], config: CurationConfig) -> list[Record]:
    """Require the best subject box and the best object box to be confident and large enough."""
    out = []
    for record in batch:
        if not record.kept:
            out.append(record)
            continue
        best = [_best_box(boxes) for boxes in pair_boxes(record)]
        if any(d is None or d["score"] < config.min_confidence for d in best):
            out.append(mark(record, "low_confidence"))
        elif any(_box_fraction(d["box"], record.image_size) < config.min_box_fraction for d in best):
            out.append(mark(record, "small_box"))
        else:
            out.append(record)
    return out


def balance_stage(
    batch: Sequence[Record], pair_counts: Counter, max_rows_per_pair: int | None
) -> tuple[list[Record], Counter]:
    """Keep at most `max_rows_per_pair` rows per unordered noun pair, in stream order.

    Returns the batch and the updated counts (the input `pair_counts` is not modified); pass the counts of one
    batch to the next batch of the same shard, and start every shard from an empty `Counter`, so a shard's
    result never depends on another shard (which is what makes resuming exact).
    """
    counts = Counter(pair_counts)
    out = []
    for record in batch:
        if not record.kept:
            out.append(record)
            continue
        pair = tuple(sorted((record.prompt.subject_noun, record.prompt.object_noun)))
        if max_rows_per_pair is not None and counts[pair] >= max_rows_per_pair:
            out.append(mark(record, "pair_overrepresented"))
            continue
        counts[pair] += 1
        out.append(record)
    return out, counts


def depth_statistics(record: Record) -> dict | None:
    """Median depth inside the best subject and object boxes, with the depth's source; None without real depth."""
    if record.depth is None:
        return None
    medians = []
    for boxes in pair_boxes(record):
        box = _best_box(boxes)
        if box is None:
            return None
        x1, y1, x2, y2 = (int(round(v)) for v in box["box"])
        crop = record.depth[max(0, y1) : max(y1 + 1, y2), max(0, x1) : max(x1 + 1, x2)]
        crop = crop[np.isfinite(crop)]
        medians.append(float(np.median(crop)) if crop.size else None)
    return {"subject": medians[0], "object": medians[1], "source": record.depth_source}


def run_stages(batch: Sequence[Record], perception, config: CurationConfig) -> list[Record]:
    """Stages 1-5 in order (the per-shard `balance_stage` is applied by the caller)."""
    batch = caption_stage(batch, config)
    batch = perception_stage(batch, perception)
    batch = verify_stage(batch, config)
    batch = synthesis_stage(batch, config)
    return quality_stage(batch, config)


def to_rows(batch: Sequence[Record], config: CurationConfig) -> list[dict]:
    """Rows of `SPATIAL_FEATURES` for the kept records (boxes in the stored image's pixels)."""
    return [
        {
            "image": {"bytes": record.image_bytes, "path": record.image_name},
            "prompt": record.prompt.render(),
            "subject": record.prompt.subject_noun,
            "relation": record.prompt.relation,
            "object": record.prompt.object_noun,
            "boxes": [d for d in record.detections if d["score"] >= config.min_confidence],
            "depth_stats": depth_statistics(record),
            "verification_score": evidence(record.score),
            "source": record.source,
            "origin": record.origin or record.url or record.key,
            "license": record.license or config.license,
            "key": record.key,
            "caption": record.caption,
            "prompt_origin": record.prompt_origin,
        }
        for record in batch
        if record.kept
    ]
