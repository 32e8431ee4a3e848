"""The spatial dataset's row format and the names of every reason a record can be skipped for.

The columns are the contract of docs/architecture.md ("Spatial dataset rows"); the training script reads
`image` and `prompt` by default. `SPATIAL_FEATURES` types them for `datasets`, and the same types are written
into every parquet file's schema and into the dataset card's `configs[].features`, so
`datasets.load_dataset(folder)` gives typed columns (an `Image` column that decodes to PIL).

Extra columns beyond the contract: `key` (stable id "<shard>/<key>", unique in a run), `caption` (the input
caption, verbatim, or null) and `prompt_origin` ("caption" when the caption itself was verified, "synthesized"
when the prompt was written from verified geometry, "generation" for a synthetic image's generation prompt).

Examples:

```py
>>> from diffusers_spatial.data.schema import SPATIAL_FEATURES, data_subdir
>>> SPATIAL_FEATURES["image"]
Image(mode=None, decode=True)
>>> data_subdir("natural", "in_front_of")
'natural-3d'

```
"""

from __future__ import annotations

import datasets

from ..relations import RELATIONS_3D

__all__ = [
    "COLUMNS",
    "DIMENSIONS",
    "INPUT_REASONS",
    "SHARD_REASONS",
    "SKIP_REASONS",
    "SOURCES",
    "SPATIAL_FEATURES",
    "data_subdir",
    "dimension",
]

SOURCES: tuple[str, ...] = ("natural", "synthetic")
"""`source` values: natural images (curated from captioned photos) and synthetic ones (verified generations)."""

DIMENSIONS: tuple[str, ...] = ("2d", "3d")
"""2D relations are judged in the image plane; 3D ones (in front of / behind) from real depth."""

_BOX = {
    "label": datasets.Value("string"),
    "score": datasets.Value("float32"),
    "box": datasets.List(datasets.Value("float32"), length=4),
}

SPATIAL_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "prompt": datasets.Value("string"),
        "subject": datasets.Value("string"),
        "relation": datasets.Value("string"),
        "object": datasets.Value("string"),
        "boxes": datasets.List(_BOX),
        "depth_stats": {
            "subject": datasets.Value("float32"),
            "object": datasets.Value("float32"),
            "source": datasets.Value("string"),
        },
        "verification_score": datasets.Value("float32"),
        "source": datasets.Value("string"),
        "origin": datasets.Value("string"),
        "license": datasets.Value("string"),
        "key": datasets.Value("string"),
        "caption": datasets.Value("string"),
        "prompt_origin": datasets.Value("string"),
    }
)
"""Typed columns of every row (parquet schema, dataset card `features`)."""

COLUMNS: tuple[str, ...] = tuple(SPATIAL_FEATURES)

# Why a record is not in the output. Every record read is either written or counted under one of these.
INPUT_REASONS: dict[str, str] = {
    "missing_image": "no image bytes: the download failed (broken URL) or the file is missing",
    "truncated_tar": "the row's image was in the part of a tar shard cut off by truncation",
    "corrupt_image": "the image bytes do not decode (truncated or not an image)",
    "duplicate_key": "a second sample with a key already read in the same shard (the first one is kept)",
    "outside_input": "a metadata file_name that points outside the input folder (absolute or through '..')",
}
CAPTION_REASONS: dict[str, str] = {
    "empty_caption": "the caption is missing or blank",
    "non_english": "the caption looks non-English (heuristic, see `looks_english`)",
    "several_relations": "the caption holds two or more relation phrases (which one is meant is not guessed)",
    "no_relation": "the caption holds no usable relation and synthesis is off",
}
VERIFY_REASONS: dict[str, str] = {
    "perception_error": "the detector or depth model failed on the image",
    "objects_not_found": "the caption's subject or object was not detected",
    "undetermined": "the geometry cannot decide the caption's relation (evidence too weak)",
    "relation_false": "the caption's relation is false in the image and synthesis is off",
    "no_depth_for_3d": "a 3D relation without real depth (only the low-confidence geometric fallback)",
    "no_verified_pair": "synthesis found no pair of objects whose relation the geometry verifies",
    "unseen_noun": "the detector cannot see the caption's subject or object noun (not among its classes)",
}
QUALITY_REASONS: dict[str, str] = {
    "low_confidence": "the subject or object box is below `min_confidence`",
    "small_box": "the subject or object box is smaller than `min_box_fraction` of the image",
    "pair_overrepresented": "the shard already holds `max_rows_per_pair` rows of this object pair",
}
SKIP_REASONS: dict[str, str] = {**INPUT_REASONS, **CAPTION_REASONS, **VERIFY_REASONS, **QUALITY_REASONS}
"""Row-level skip reason -> its meaning (counted per reason in the run statistics)."""

SHARD_REASONS: dict[str, str] = {
    "empty_shard": "the shard holds no rows",
    "truncated_tar": "the tar ends early; rows before the cut are used, rows after it counted",
    "corrupt_parquet": "the parquet is truncated or unreadable; the tar's own captions are used if present",
    "missing_tar": "the parquet lists rows but the shard's tar is absent",
}
"""Shard-level issue -> its meaning (counted per shard; the rows involved are counted by row reasons)."""


def dimension(relation: str) -> str:
    """'3d' for in_front_of / behind, '2d' otherwise."""
    return "3d" if relation in RELATIONS_3D else "2d"


def data_subdir(source: str, relation: str) -> str:
    """Folder under `data/` that holds a row: "<source>-<dimension>" (one dataset config pair each)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: expected one of {list(SOURCES)}")
    return f"{source}-{dimension(relation)}"
