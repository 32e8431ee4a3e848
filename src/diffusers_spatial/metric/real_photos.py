"""The metric on real photos with known answers: a check that needs no text-to-image model.

Statements about real photos ("a dog to the left of a truck" on darknet's dog.jpg) are labelled true or false by the
esplora protocol applied to the photos' hand-checked boxes (`photos.PHOTO_OBJECTS`); the metric then scores the same
statements from the embedded detector's boxes. On the true statements every protocol should say "correct", on the false
ones "wrong": the gap between the two is what the detector and each protocol's rule lose on real pixels.

Examples:

```py
>>> from diffusers_spatial.metric.real_photos import labelled_statements
>>> statements = labelled_statements(["dog"])
>>> [(s.prompt, s.truth) for s in statements][:2]
[('a dog on the left of a truck', True), ('a dog on the right of a truck', False)]

```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path

from ..geometry import score_image
from ..photos import DARKNET_PHOTOS, PHOTO_OBJECTS, PhotoUnavailableError, load_photo, photo_path
from ..relations import RELATIONS_2D

__all__ = ["LabelledStatement", "labelled_statements", "score_real_photos"]


@dataclass(frozen=True)
class LabelledStatement:
    photo: str
    prompt: str
    truth: bool


# T2I-CompBench's wording: the one phrasing every protocol reads (its relation list has no "to the left of").
_PHRASES = {
    "left_of": "on the left of",
    "right_of": "on the right of",
    "above": "on the top of",
    "below": "on the bottom of",
}


def _article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def labelled_statements(photos: Sequence[str] = DARKNET_PHOTOS) -> list[LabelledStatement]:
    """Every 2D statement about two hand-boxed objects of a photo that the boxes clearly make true or false."""
    statements = []
    for photo in photos:
        objects = PHOTO_OBJECTS.get(photo, {})
        truth_boxes = [{"label": label, "score": 1.0, "box": list(box)} for label, box in objects.items()]
        for subject, obj in permutations(objects, 2):
            for relation in RELATIONS_2D:
                prompt = f"{_article(subject)} {_PHRASES[relation]} {_article(obj)}"
                truth = score_image(prompt, truth_boxes, protocol="esplora").correct
                if truth is not None:  # boxes that overlap too much make no clear statement
                    statements.append(LabelledStatement(photo, prompt, truth))
    return statements


def score_real_photos(out_dir: str | os.PathLike, *, progress: bool = True, **settings) -> dict:
    """Score the labelled statements with the metric; write one report per truth value under `out_dir`.

    Returns:
        {"true": report, "false": report, "statements": n} for the photos that are installed.

    Raises:
        PhotoUnavailableError: no photo with hand-checked boxes is installed.
    """
    from . import evaluate_images, read_results, write_report

    images = {}  # each installed photo, decoded once
    for name in DARKNET_PHOTOS:
        try:
            images[name] = load_photo(name)
        except PhotoUnavailableError:
            continue
    statements = labelled_statements(list(images))
    if not statements:
        raise PhotoUnavailableError("no darknet photo is installed (apt-get install darknet)")
    result: dict = {"statements": len(statements)}
    for label, truth in (("true", True), ("false", False)):
        chosen = [s for s in statements if s.truth is truth]
        folder = Path(out_dir) / f"{label}-statements"
        report = evaluate_images(
            [images[s.photo] for s in chosen],
            [s.prompt for s in chosen],
            keys=[f"{s.photo}:{s.prompt}" for s in chosen],
            out_dir=folder,
            progress=progress,
            **settings,
        )
        if not truth:  # every protocol's "correct" here accepts a false statement: say so on the charts
            report["value_label"] = "acceptance of false statements"
        paths = {f"{s.photo}:{s.prompt}": photo_path(s.photo) for s in chosen}
        write_report(report, folder, records=read_results(folder), image_paths=paths)
        result[label] = report
    return result
