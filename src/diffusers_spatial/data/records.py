"""`Record`: one image and what the curation stages learn about it, from reading to the written row.

Readers produce records; each stage takes a batch (a list of records) and returns a new list of the same
length in the same order, filling fields or setting `skip` to a reason from `schema.SKIP_REASONS`. A skipped
record rides along untouched to the end of the batch, where it is counted: nothing is dropped unseen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

__all__ = ["Record", "batched", "count_skipped", "mark"]


@dataclass
class Record:
    """One image on its way through the stages.

    Args:
        key: unique id in the run, "<shard>/<key>".
        caption: the input caption, or None.
        image_bytes: the encoded image as stored in the input (kept as-is in the output: no re-encoding).
        image_name: file name of the image ("000012.jpg"), used for the format and the `image.path` field.
        url: where the image came from, if known.
        license: the input's licence for the image, if known.
        source: "natural" or "synthetic".
        origin: url, or generator and seed for synthetic images (defaults to `url`).
        depth: real depth (H x W inverse depth, larger = nearer) shipped with the input or from a depth model.
        depth_source: where `depth` came from ("ground_truth" or the depth model's name).
        skip: the skip reason, or None while the record is kept.
        spatial: the caption parsed by `parse_spatial_prompt` (None: no relation).
        image: an in-memory image to perceive instead of decoding `image_bytes` (synthetic generations);
            released once perception has run, to bound memory.
        image_size: (width, height).
        detections: detections in the shared format.
        prompt: the verified spatial prompt (the caption's or a synthesized one).
        prompt_origin: "caption", "synthesized" or "generation".
        score: the `geometry.ImageScore` of `prompt`.
        extra: anything a reader or a caller wants to carry along (not written).
    """

    key: str
    caption: str | None = None
    image_bytes: bytes | None = None
    image_name: str | None = None
    url: str | None = None
    license: str | None = None
    source: str = "natural"
    origin: str | None = None
    depth: Any = None
    depth_source: str | None = None
    skip: str | None = None
    spatial: Any = None
    image: Any = None
    image_size: tuple[int, int] | None = None
    detections: list[dict] | None = None
    prompt: Any = None
    prompt_origin: str | None = None
    score: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        return self.skip is None


def mark(record: Record, reason: str) -> Record:
    """A copy of `record` skipped for `reason` (the decoded image and depth are released)."""
    return replace(record, skip=reason, image=None, depth=None)


def batched(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Split a stream into lists of at most `size` records, pulling only one batch into memory at a time."""
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


def count_skipped(batch: Iterable[Record]) -> Counter:
    """Skip reason -> number of records skipped for it."""
    return Counter(r.skip for r in batch if r.skip is not None)
