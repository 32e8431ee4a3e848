"""Explicit spatial prompts written from verified geometry ("a car to the left of a tree").

Most captions say nothing about where things are, and many that do are wrong. When the detector has found
objects, the geometry can say where they are; `synthesize_prompt` writes the prompt that the image verifiably
satisfies, and only keeps it if `geometry.score_image` (the same judge that verifies captions) calls it correct:

- a caption whose relation is false keeps its own words and gets the true relation, the converse tried first
  ("a photo of a red cat to the left of a dog" -> "a photo of a red cat to the right of a dog");
- otherwise the most confident pair of distinct detected classes is written with a template, `a <subject>
  <phrase> a <object>`, subject and object in an order chosen from a hash of the image key, so that object
  order is balanced over the dataset instead of always putting the more confident object first.

The relation is the salient one: the planar relations (left, right, above, below: at most one of them holds
under the esplora protocol's dominant-axis rule) are tried first; in front of / behind only when none of them
holds - the objects overlap in the picture, which is where depth order is what a caption would say - and only
with real depth (ground truth, or a depth model). The protocol's low-confidence geometric fallback never writes a
3D prompt.

Examples:

```py
>>> from diffusers_spatial.data.synthesis import explicit_prompt
>>> explicit_prompt("car", "left_of", "apple").render()
'a car to the left of an apple'
>>> explicit_prompt("skis", "below", "person").render()
'skis below a person'

```
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ..geometry import ImageScore, score_image
from ..relations import CANONICAL_PHRASE, CONVERSE, RELATIONS_2D, RELATIONS_3D, SpatialPrompt
from ..vocabulary import singularize

__all__ = ["evidence", "explicit_prompt", "noun_phrase", "order_flip", "synthesize_prompt"]

_EVIDENCE_KEYS = ("offset", "depth_difference")


def noun_phrase(label: str) -> str:
    """A detector label as a noun phrase: "a car", "an apple", "skis" (plural labels take no article)."""
    if singularize(label) != label:
        return label
    return f"{'an' if label[:1].lower() in 'aeiou' else 'a'} {label}"


def explicit_prompt(subject: str, relation: str, object: str) -> SpatialPrompt:
    """The template prompt `<subject> <canonical phrase> <object>`, nouns given as labels."""
    return SpatialPrompt.from_parts(noun_phrase(subject), relation, noun_phrase(object))


def order_flip(key: str) -> bool:
    """A stable coin flip per image key (blake2b, not Python's salted `hash`): swap subject and object?"""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=1).digest()[0] & 1 == 1


def evidence(score: ImageScore) -> float:
    """How clearly a verified relation holds: the esplora strength of its weakest instance pair.

    Planar relations: the centroid offset over the summed half-extents (> 1: the boxes' projections are
    disjoint); in front of / behind: the median depth difference as a fraction of the map's robust range
    (> 0.05). Other protocols: their per-image score.
    """
    for key in _EVIDENCE_KEYS:
        if key in score.details:
            return float(score.details[key])
    return float(score.score)


def synthesize_prompt(
    detections: Sequence[dict],
    *,
    key: str,
    depth=None,
    image_size: tuple[int, int] | None = None,
    caption: SpatialPrompt | None = None,
    caption_labels: tuple[str, str] | None = None,
    min_confidence: float = 0.3,
    max_objects: int = 4,
    protocol: str = "esplora",
) -> tuple[SpatialPrompt, ImageScore, tuple[str, str]] | None:
    """Write a spatial prompt that the image verifiably satisfies.

    Args:
        detections: the image's detections (`{"label", "score", "box"}`).
        key: the image's stable key (decides the subject/object order of template prompts).
        depth: real depth (H x W inverse depth) or None; 3D relations are only tried with it.
        image_size: (width, height), passed to the protocol.
        caption: the caption's parsed prompt when its relation was found false: its own words are tried first.
        caption_labels: the detector labels of the caption's subject and object nouns.
        min_confidence: labels whose best detection scores lower are not written.
        max_objects: only the `max_objects` most confident distinct labels are paired.
        protocol: the geometry protocol that verifies each candidate.

    Returns:
        `(prompt, ImageScore, (subject label, object label))`, or None when no candidate is verified correct.

    Raises:
        ValueError: the geometry rejects the detections or the depth map (malformed input).
    """
    relations = RELATIONS_2D + (RELATIONS_3D if depth is not None else ())

    def first_correct(prompts: Sequence[SpatialPrompt], labels: tuple[str, str]):
        for prompt in prompts:
            result = score_image(
                prompt,
                detections,
                protocol=protocol,
                depth=depth,
                image_size=image_size,
                subject_label=labels[0],
                object_label=labels[1],
            )
            if result.correct is True:
                return prompt, result, labels
        return None

    if caption is not None and caption_labels is not None:
        order = [CONVERSE[caption.relation]] + [
            r for r in relations if r not in (caption.relation, CONVERSE[caption.relation])
        ]
        rewritten = [
            SpatialPrompt(caption.prefix, caption.subject, rel, caption.object, caption.suffix, CANONICAL_PHRASE[rel])
            for rel in order
            if rel in relations
        ]
        found = first_correct(rewritten, tuple(caption_labels))
        if found is not None:
            return found

    best_score: dict[str, float] = {}
    for detection in detections:
        label, score = detection["label"], float(detection["score"])
        if score >= min_confidence and score > best_score.get(label, -1.0):
            best_score[label] = score
    labels = sorted(best_score, key=lambda label: (-best_score[label], label))[:max_objects]
    flip = order_flip(key)
    for i, first in enumerate(labels):
        for second in labels[i + 1 :]:
            subject, object = (second, first) if flip else (first, second)
            found = first_correct([explicit_prompt(subject, rel, object) for rel in relations], (subject, object))
            if found is not None:
                return found
    return None
