"""The offline sample dataset: built from nothing but real photos installed on the machine.

`build_sample(out)` writes a small LAION-style input (`out-input/`, beside the dataset: img2dataset webdataset shards, tar +
parquet) and curates it into a spatial dataset at `out/` with the real pipeline (embedded detector, esplora
verification, synthesis, quality filters, shard runner, card). The input holds:

- **collages** of real object crops (`diffusers_spatial.photos`) pasted at known positions, side by side,
  stacked, or overlapping with a ground-truth depth map (`<key>.depth.npy`: the front crop nearer), whose
  captions are right (in several surface phrasings), wrong (the converse relation: synthesis rewrites them),
  or name no relation (synthesis writes one from the geometry);
- the **real darknet photos** as they are, with captions of every kind;
- **bad input**, one of each: a failed download, a corrupt image, a non-English caption, a caption with two
  relations, an empty caption, a truncated tar shard, an empty shard.

No photo is committed to the repository: `build_sample` reads them from scikit-image and Debian's `darknet`
package at run time (see `diffusers_spatial.photos`). `write_webdataset_shard` is public so tests and
benchmarks can build inputs of any size in the format img2dataset writes.

Examples:

```py
>>> from diffusers_spatial.data import build_sample
>>> stats = build_sample("spatial-sample/")  # doctest: +SKIP
>>> import datasets
>>> datasets.load_dataset("spatial-sample/", split="train").features["image"]  # doctest: +SKIP
Image(mode=None, decode=True)
```
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..photos import crop_object, load_photo, make_collage, photo_path
from ..relations import CANONICAL_PHRASE, CONVERSE
from .config import CurationConfig
from .synthesis import noun_phrase
from .writer import atomic_write_bytes

__all__ = ["SAMPLE_OBJECTS", "build_sample", "sample_rows", "write_sample_input", "write_webdataset_shard"]

SAMPLE_OBJECTS: tuple[tuple[str, str], ...] = (
    ("person", "person"),
    ("dog", "bicycle"),
    ("giraffe", "giraffe"),
    ("giraffe", "zebra"),
    ("eagle", "bird"),
    ("cat", "cat"),
    ("motorcycle_left", "motorcycle"),
    ("person", "horse"),
)
"""(photo, object) crops used in collages: the ones the embedded detector finds reliably when cropped."""

_DARKNET_LICENSE = "darknet (Debian package `darknet`): GPL-3.0-or-later OR MIT OR WTFPL"
_PHOTO_LICENSES = {
    "cat": "CC0-1.0 (scikit-image chelsea, Stefan van der Walt)",
    "coffee": "CC0-1.0 (scikit-image coffee, Rachel Michetti)",
    "astronaut": "public domain (scikit-image astronaut, NASA)",
    "motorcycle_left": "Middlebury stereo dataset (scikit-image motorcycle)",
}
# Captions of the darknet photos as they are: right, without relation, and bad ones.
_DARKNET_CAPTIONS = {
    "dog": "a dog to the left of a pickup truck",
    "person": "a girl with her dog and her horse",
    "giraffe": "a zebra in front of a giraffe in the savanna",
    "horses": "horses running on a meadow",
    "eagle": "an eagle with spread wings",
    "kite": "kites flying above people on a beach",
    "scream": "Der Schrei, Gemälde von Edvard Munch",
}
# Surface phrasings used by right captions, per relation.
_PHRASINGS = {
    "left_of": ("to the left of", "on the left of", "left of"),
    "right_of": ("to the right of", "on the right side of", "right of"),
    "above": ("above", "over", "on top of"),
    "below": ("below", "under", "beneath"),
    "in_front_of": ("in front of",),
    "behind": ("behind",),
}
_CAPTION_KINDS = ("right", "converse", "misstated", "no_relation")
_SHARD_ROWS = 10
_CANVAS = (512, 384)


def _license(photo: str) -> str:
    return _PHOTO_LICENSES.get(photo, _DARKNET_LICENSE)


def _jpeg(image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _fit_crop(photo: str, label: str, height: int, max_width: int):
    piece = crop_object(photo, label, height=height)
    if piece.width > max_width:
        piece = piece.resize((max_width, max(1, round(piece.height * max_width / piece.width))))
    return piece


def _collage(first: tuple[str, str], second: tuple[str, str], layout: str):
    """Collage of two crops. Returns (image, relation of first to second, depth or None)."""
    width, height = _CANVAS
    if layout == "horizontal":
        a, b = _fit_crop(*first, 200, 200), _fit_crop(*second, 200, 200)
        positions = [(20, (height - a.height) // 2), (width - 20 - b.width, (height - b.height) // 2)]
        relation = "left_of"
    elif layout == "vertical":
        a, b = _fit_crop(*first, 150, 220), _fit_crop(*second, 150, 220)
        positions = [((width - a.width) // 2, 20), ((width - b.width) // 2, height - 20 - b.height)]
        relation = "above"
    else:  # depth: the second crop behind, the first pasted over its lower-left part, nearer
        b, a = _fit_crop(*second, 230, 260), _fit_crop(*first, 190, 220)
        positions = [(width - 30 - b.width, 20), (max(20, width // 2 - a.width + 40), height - 20 - a.height)]
        image, truth = make_collage([(second[1], b), (first[1], a)], positions, _CANVAS)
        depth = np.full((height, width), 0.1, dtype=np.float32)  # inverse depth: background far
        for box, value in ((truth[0]["box"], 0.4), (truth[1]["box"], 0.8)):
            x1, y1, x2, y2 = box
            depth[y1:y2, x1:x2] = value
        return image, "in_front_of", depth
    image, _ = make_collage([(first[1], a), (second[1], b)], positions, _CANVAS)
    return image, relation, None


def _caption(kind: str, first: str, relation: str, second: str, rng: random.Random) -> str:
    a, b = noun_phrase(first), noun_phrase(second)
    if kind == "right":
        return f"a photo of {a} {rng.choice(_PHRASINGS[relation])} {b}"
    if kind == "converse":
        return f"{b} {rng.choice(_PHRASINGS[CONVERSE[relation]])} {a}"
    if kind == "misstated":
        return f"{a} {CANONICAL_PHRASE[CONVERSE[relation]]} {b}"
    return f"{a} and {b}, studio photo"


def sample_rows(seed: int = 0, collages_per_pair: int = 1) -> list[dict]:
    """The sample's input rows (`write_webdataset_shard` format), deterministic for a seed.

    `collages_per_pair` collages per unordered pair of `SAMPLE_OBJECTS` classes (layouts and caption kinds cycle
    over them), then the darknet photos, then one row of each kind of bad input; shuffled.
    """
    if collages_per_pair < 1:
        raise ValueError(f"collages_per_pair must be >= 1, got {collages_per_pair!r}")
    rng = random.Random(seed)
    rows = []
    objects = list(SAMPLE_OBJECTS)
    pairs = [(objects[i], objects[j]) for i in range(len(objects)) for j in range(i + 1, len(objects))]
    for n, pair in enumerate(pairs * collages_per_pair):
        first, second = pair if rng.random() < 0.5 else pair[::-1]
        layout = ("horizontal", "vertical", "depth")[n % 3]
        kind = _CAPTION_KINDS[(n // 3) % len(_CAPTION_KINDS)]
        image, relation, depth = _collage(first, second, layout)
        photos = sorted({first[0], second[0]})
        rows.append(
            {
                "caption": _caption(kind, first[1], relation, second[1], rng),
                "image": _jpeg(image),
                "url": f"collage:{first[0]}/{first[1]}+{second[0]}/{second[1]}",
                "license": "; ".join(sorted({_license(p) for p in photos})),
                "depth": depth,
            }
        )
    for name, caption in _DARKNET_CAPTIONS.items():
        rows.append(
            {
                "caption": caption,
                "image": photo_path(name).read_bytes(),
                "url": photo_path(name).as_uri(),
                "license": _DARKNET_LICENSE,
            }
        )
    cat_and_horse = make_collage(
        [("cat", _fit_crop("cat", "cat", 200, 200)), ("horse", _fit_crop("person", "horse", 200, 200))],
        [(20, 90), (290, 90)],
        _CANVAS,
    )[0]
    good = _jpeg(cat_and_horse)
    rows += [
        {
            "caption": "un chat à gauche d'un cheval",
            "image": good,
            "url": "collage:cat+horse",
            "license": _license("cat"),
        },
        {
            "caption": "a cat to the left of a horse above a bench",
            "image": good,
            "url": "collage:cat+horse",
            "license": _license("cat"),
        },
        {"caption": "", "image": good, "url": "collage:cat+horse", "license": _license("cat")},
        {
            "caption": "a cat to the left of a horse",
            "image": good[:300],
            "url": "collage:cat+horse (corrupt)",
            "license": _license("cat"),
        },
        {
            "caption": "a dog to the left of a cat",
            "image": None,
            "url": "https://example.invalid/broken.jpg",
            "license": None,
        },
    ]
    rng.shuffle(rows)
    return rows


def write_webdataset_shard(folder: str | os.PathLike, name: str, rows: Sequence[dict], *, first_key: int = 0) -> None:
    """Write `rows` as one img2dataset webdataset shard: `<name>.tar` + `<name>.parquet` (atomically).

    Each row is a dict with `caption`, `image` (encoded bytes; None for a failed download, which goes to the
    parquet only, with status "failed_to_download"), and optionally `url`, `license`, `depth` (H x W array,
    stored as `<key>.depth.npy`). Keys are `<name><index>` zero-padded like img2dataset's. The tar is
    byte-for-byte deterministic (fixed member order, times and owners).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i, row in enumerate(rows):
            key = f"{name}{first_key + i:04d}"
            ok = row.get("image") is not None
            meta = {
                "key": key,
                "url": row.get("url"),
                "caption": row.get("caption"),
                "status": "success" if ok else "failed_to_download",
                "error_message": None if ok else "HTTP Error 404: Not Found",
                "LICENSE": row.get("license"),
            }
            records.append(meta)
            if not ok:
                continue
            members = [("jpg", row["image"]), ("txt", (row.get("caption") or "").encode("utf-8"))]
            members.append(("json", json.dumps(meta, sort_keys=True).encode("utf-8")))
            if row.get("depth") is not None:
                buffer = io.BytesIO()
                np.save(buffer, np.asarray(row["depth"], dtype=np.float32), allow_pickle=False)
                members.append(("depth.npy", buffer.getvalue()))
            for ext, data in members:
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    atomic_write_bytes(folder / f"{name}.tar", tar_bytes.getvalue())
    table = pa.Table.from_pylist(
        records,
        schema=pa.schema([(c, pa.string()) for c in ("key", "url", "caption", "status", "error_message", "LICENSE")]),
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(folder / f"{name}.parquet", buffer.getvalue())


def write_sample_input(folder: str | os.PathLike, *, seed: int = 0, collages_per_pair: int = 1) -> list[str]:
    """Write the sample's input shards into `folder`; returns the shard names.

    `sample_rows` cut into shards of 10 rows, the last of which (`truncated`) has its tar cut at 60 % of its
    length, plus a shard with no rows (`empty`).
    """
    folder = Path(folder)
    rows = sample_rows(seed, collages_per_pair)
    names = []
    whole = rows[:-_SHARD_ROWS]
    for start in range(0, len(whole), _SHARD_ROWS):
        name = f"{start // _SHARD_ROWS:05d}"
        write_webdataset_shard(folder, name, whole[start : start + _SHARD_ROWS])
        names.append(name)
    write_webdataset_shard(folder, "truncated", rows[-_SHARD_ROWS:])
    data = (folder / "truncated.tar").read_bytes()
    atomic_write_bytes(folder / "truncated.tar", data[: int(len(data) * 0.6)])
    write_webdataset_shard(folder, "empty", [])
    return [*names, "truncated", "empty"]


def build_sample(
    output_dir: str | os.PathLike,
    *,
    input_dir: str | os.PathLike | None = None,
    config: CurationConfig | None = None,
    perception=None,
    progress: bool = True,
    seed: int = 0,
    collages_per_pair: int = 1,
) -> dict:
    """Build the offline sample dataset at `output_dir` from real photos; returns the run statistics.

    Args:
        output_dir: the dataset folder (load it with `datasets.load_dataset(output_dir)`).
        input_dir: where the LAION-style input shards go (default: `<output_dir>-input` beside the dataset, so
            that the dataset folder holds only what its Hub repo holds: `load_dataset("parquet", data_dir=...)` would
            otherwise read the raw input's parquet files as rows).
        config: curation settings (default: `CurationConfig()` with `shard_size` irrelevant here).
        perception: a ready `Perception` (default: the embedded detector, no depth model: the collages'
            ground-truth depth is the only depth).
        progress: show progress bars.
        seed: the layout and caption seed.
        collages_per_pair: collages per pair of object classes (28 pairs; 1 gives about 25 rows).

    Raises:
        diffusers_spatial.photos.PhotoUnavailableError: scikit-image or the darknet photos are missing (the
            message says how to install them).
    """
    from .runner import curate

    output_dir = Path(output_dir)
    input_dir = Path(input_dir) if input_dir is not None else output_dir.with_name(output_dir.name + "-input")
    load_photo("cat"), photo_path("dog")  # fail early, with the install hint, if a photo source is missing
    write_sample_input(input_dir, seed=seed, collages_per_pair=collages_per_pair)
    return curate(input_dir, output_dir, config, perception=perception, progress=progress)
