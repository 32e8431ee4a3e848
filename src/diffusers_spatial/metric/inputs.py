"""Read what a user hands the evaluation: a folder of images and their prompts, paired into `EvaluationItem`s.

Prompts come from one of:

- a JSONL file (the format `diffusers_spatial.suites.write_suite` writes): one object per line with `"prompt"`
  (or `"text"` / `"caption"`), and optionally `"prompt_id"` (or `"id"`) and the image(s) it belongs to: `"image"` / `"file_name"` (one) or `"images"` (a list), relative to the images folder;
- a CSV file with a header row and the same column names;
- a text file, one prompt per line (VISOR's and T2I-CompBench's prompt lists);
- nothing: `metadata.jsonl` / `metadata.csv` in the images folder (Hugging Face ImageFolder: `file_name` plus
  `prompt` / `text`), GenEval's layout (`<n>/metadata.jsonl` holding one prompt for the images under `<n>/`), or
  else the image file names themselves, T2I-CompBench style: `a cat to the left of a dog_000003.png` (the trailing
  index is dropped, underscores read as spaces).

When prompts do not name their images, the images (sorted in natural order: 2 before 10) are dealt out in order,
`images_per_prompt` to each prompt. Every structural problem (no images, counts that do not divide, a missing
column, a malformed line) raises a ValueError naming the file and line before any image is read.

Examples:

```py
>>> from diffusers_spatial.metric.inputs import prompt_from_file_name
>>> prompt_from_file_name("a_cat_to_the_left_of_a_dog_000003.png")
'a cat to the left of a dog'

```
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.files import read_text

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_PROMPT_KEYS = ("prompt", "text", "caption")
_ID_KEYS = ("prompt_id", "id")
_IMAGE_KEYS = ("image", "file_name", "file", "path")
_TRAILING_INDEX_RE = re.compile(r"(?:[_\-\s.]+\d+|\s*\(\d+\))$")


@dataclass
class PromptRecord:
    """One prompt as read from a prompts file (images are file names relative to the images folder)."""

    prompt: str
    prompt_id: str
    images: list[str] = field(default_factory=list)


@dataclass
class EvaluationItem:
    """One image to score against one prompt.

    Args:
        key: stable identifier of the image (its path relative to the images folder, or its index as text); the
            key of its line in the per-image results file.
        prompt: the prompt text.
        prompt_id: groups the images of one prompt (VISOR_n, GenEval and T2I-CompBench average per prompt).
        image: a path, PIL image or array; None when `detections` are given instead.
        detections: precomputed detections (`{"label", "score", "box"}` dicts) instead of an image.
        depth: a precomputed depth map (H x W, larger = nearer) for `detections`, or None.
        image_size: `(width, height)` of the image the detections belong to, or None.
    """

    key: str
    prompt: str
    prompt_id: str
    image: Any = None
    detections: list | None = None
    depth: Any = None
    image_size: tuple[int, int] | None = None


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers numerically ("img_2" before "img_10")."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def list_images(images_dir: str | os.PathLike, exclude: Sequence[str | os.PathLike] = ()) -> list[str]:
    """Image files under `images_dir` (recursively), as sorted POSIX paths relative to it.

    Args:
        images_dir: the folder.
        exclude: folders to skip (e.g. an output folder placed inside the images folder).
    """
    root = Path(images_dir)
    skipped = [Path(p).resolve() for p in exclude]
    found = []
    for path in root.rglob("*"):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        resolved = path.resolve()
        if any(resolved.is_relative_to(s) for s in skipped):
            continue
        found.append(path.relative_to(root).as_posix())
    return sorted(found, key=natural_key)


def prompt_from_file_name(name: str) -> str:
    """The prompt a file name spells: the stem, without a trailing index, underscores read as spaces."""
    stem = Path(name).stem
    stem = _TRAILING_INDEX_RE.sub("", stem) or stem
    return " ".join(stem.replace("_", " ").split())


def _first(row: dict, keys: Sequence[str]) -> Any:
    for key in keys:
        if row.get(key) not in (None, ""):
            return row[key]
    return None


def _record_from_row(row: dict, where: str, index: int) -> PromptRecord:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object with a 'prompt' field, got {type(row).__name__}: {row!r}")
    prompt = _first(row, _PROMPT_KEYS)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(
            f"{where}: no prompt; expected one of the fields {list(_PROMPT_KEYS)} holding text, in {row!r}"
        )
    images = row.get("images")
    if images in (None, ""):
        single = _first(row, _IMAGE_KEYS)
        images = [] if single is None else [single]
    elif isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise ValueError(f"{where}: 'images' must be a list of file names, got {images!r}")
    prompt_id = _first(row, _ID_KEYS)
    return PromptRecord(
        prompt=prompt,
        prompt_id=str(prompt_id) if prompt_id is not None else str(index),
        images=[Path(i).as_posix() for i in images],
    )


def read_prompts(path: str | os.PathLike) -> list[PromptRecord]:
    """Read a prompts file: `.jsonl` / `.json` (one object per line), `.csv` (header row), else one prompt a line.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed line or row (file and line number in the message), or no prompts at all.

    Examples:

    ```py
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "prompts.txt")
    >>> _ = open(path, "w").write("a cat above a dog\\n\\na cup left of a bowl\\n")
    >>> [(r.prompt_id, r.prompt) for r in read_prompts(path)]
    [('0', 'a cat above a dog'), ('1', 'a cup left of a bowl')]

    ```
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    records: list[PromptRecord] = []
    with io.StringIO(read_text(path, encoding="utf-8-sig"), newline="") as f:
        if suffix in (".jsonl", ".json"):
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{path}:{line_no}: not a JSON object ({err.msg}): {line.strip()[:80]!r}"
                    ) from None
                records.append(_record_from_row(row, f"{path}:{line_no}", len(records)))
        elif suffix == ".csv":
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            if not any(k in columns for k in _PROMPT_KEYS):
                raise ValueError(
                    f"{path}: the CSV header {columns} has no prompt column; name one of {list(_PROMPT_KEYS)}"
                )
            for row in reader:
                records.append(_record_from_row(row, f"{path}:{reader.line_num}", len(records)))
        else:
            for line in f:
                if line.strip():
                    records.append(PromptRecord(prompt=line.strip(), prompt_id=str(len(records))))
    if not records:
        raise ValueError(f"prompts file {str(path)!r} holds no prompts")
    ids = [r.prompt_id for r in records]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{path}: prompt_id {duplicate!r} appears more than once; prompt ids must be unique")
    return records


def _metadata_records(images_dir: Path, images: list[str]) -> list[PromptRecord] | None:
    """Prompts from metadata files inside the images folder (ImageFolder or GenEval layout), if any."""
    records: list[PromptRecord] = []
    for name in ("metadata.jsonl", "metadata.csv"):
        for meta in sorted(images_dir.rglob(name), key=lambda p: natural_key(p.as_posix())):
            folder = meta.parent.relative_to(images_dir).as_posix()
            prefix = "" if folder == "." else folder + "/"
            rows = read_prompts(meta)
            if len(rows) == 1 and not rows[0].images:  # GenEval: one prompt for the images under this folder
                if (meta.parent / "samples").is_dir():  # GenEval also saves a grid.png beside samples/
                    prefix += "samples/"
                rows[0].images = [i for i in images if i.startswith(prefix)]
                rows[0].prompt_id = folder if folder != "." else rows[0].prompt_id
                records.extend(rows)
                continue
            for row in rows:
                if not row.images:
                    raise ValueError(f"{meta}: every row needs a 'file_name' when the file lists several prompts")
                row.images = [prefix + i for i in row.images]
                row.prompt_id = f"{prefix}{row.prompt_id}"
                records.append(row)
    return records or None


def collect_items(
    images_dir: str | os.PathLike,
    prompts: str | os.PathLike | Sequence[PromptRecord] | None = None,
    *,
    images_per_prompt: int | None = None,
    exclude: Sequence[str | os.PathLike] = (),
) -> list[EvaluationItem]:
    """Pair the images of a folder with their prompts.

    Args:
        images_dir: folder of images (searched recursively).
        prompts: a prompts file (see the module docstring), records already read, or None to find the prompts
            in the folder (metadata files, else file names).
        images_per_prompt: when prompts do not name their images, how many consecutive images belong to each;
            default: number of images / number of prompts, which must divide exactly.
        exclude: folders under `images_dir` to ignore (the output folder).

    Returns:
        One `EvaluationItem` per image. An image a prompt names that is missing from the folder is still an item
        (its path is kept): scoring reports it as undetermined, unreadable.

    Raises:
        ValueError: no images, counts that do not match, a bad `images_per_prompt`, an image claimed by two prompts.
        FileNotFoundError: `images_dir` or the prompts file does not exist.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"images folder {str(root)!r} does not exist or is not a folder")
    if images_per_prompt is not None and (not isinstance(images_per_prompt, int) or images_per_prompt < 1):
        raise ValueError(f"images_per_prompt must be a positive integer, got {images_per_prompt!r}")
    images = list_images(root, exclude)

    if prompts is None:
        records = _metadata_records(root, images)
        if records is None:
            if not images:
                raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {str(root)!r}")
            records = [PromptRecord(prompt_from_file_name(i), prompt_from_file_name(i), images=[i]) for i in images]
            for record in records:  # the derived text is the prompt id, so repeated names group into one prompt
                record.prompt_id = record.prompt
    elif isinstance(prompts, (str, os.PathLike)):
        records = read_prompts(prompts)
        _rebase_images(records, root, Path(prompts).parent)
    else:
        records = list(prompts)

    items: list[EvaluationItem] = []
    if all(r.images for r in records):
        owner: dict[str, str] = {}
        for r in records:
            for name in r.images:
                if name in owner:
                    raise ValueError(
                        f"image {name!r} is listed for prompt {owner[name]!r} and for prompt {r.prompt_id!r}"
                    )
                owner[name] = r.prompt_id
                items.append(_item(root, name, r))
        return items
    if any(r.images for r in records):
        raise ValueError(
            "some prompts name their images and some do not; name the images of every prompt, or of none "
            "(then images are dealt out in sorted order)"
        )
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {str(root)!r}")
    if images_per_prompt is None:
        if len(images) % len(records):
            raise ValueError(
                f"found {len(images)} images under {str(root)!r} for {len(records)} prompts: not a whole number of "
                "images per prompt; pass images_per_prompt (--images-per-prompt) or name each prompt's images"
            )
        images_per_prompt = len(images) // len(records)
    if len(images) != images_per_prompt * len(records):
        raise ValueError(
            f"found {len(images)} images under {str(root)!r} but {len(records)} prompts x {images_per_prompt} images "
            f"per prompt = {len(records) * images_per_prompt}"
        )
    for i, r in enumerate(records):
        for name in images[i * images_per_prompt : (i + 1) * images_per_prompt]:
            items.append(_item(root, name, r))
    return items


def _rebase_images(records: list[PromptRecord], root: Path, prompts_dir: Path) -> None:
    """Image names are relative to the images folder; a name found only beside the prompts file (the layout
    `diffusers-spatial generate` writes: OUT/prompts.jsonl naming images/x.png) is rewritten relative to the folder."""
    for record in records:
        for k, name in enumerate(record.images):
            if (root / name).exists() or not (prompts_dir / name).exists():
                continue
            found = (prompts_dir / name).resolve()
            if found.is_relative_to(root.resolve()):  # else keep the name: the image is reported missing
                record.images[k] = found.relative_to(root.resolve()).as_posix()


def _item(root: Path, name: str, record: PromptRecord) -> EvaluationItem:
    return EvaluationItem(
        key=name,
        prompt=record.prompt,
        prompt_id=record.prompt_id,
        image=str(root / name),
    )


_DETECTION_KEYS = ("label", "score", "box")


def normalize_predictions(predictions: Any) -> list:
    """`compute`'s predictions in the shapes its features encode, checked before `evaluate` touches them.

    Images (paths, PIL images, bytes) pass unchanged; a numpy array must be an `H x W` or `H x W x 3|4` uint8 image.
    Precomputed detections get their optional keys filled with None (`image_size`, and a detection's missing
    `label` / `score` / `box`), so that the item becomes *undetermined* with the reason named, instead of `evaluate`
    raising a KeyError.

    Raises:
        ValueError: naming the index of a None prediction or of an array that is not a uint8 image.

    Examples:

    ```py
    >>> normalize_predictions([{"detections": [{"label": "dog", "score": 0.9}]}])
    [{'detections': [{'label': 'dog', 'score': 0.9, 'box': None}], 'image_size': None}]

    ```
    """
    import numpy as np

    if isinstance(predictions, (str, bytes, Mapping)) or not isinstance(predictions, Sequence):
        raise ValueError(f"predictions must be a list with one entry per image, got {type(predictions).__name__}")
    out = []
    for index, prediction in enumerate(predictions):
        if prediction is None:
            raise ValueError(
                f"predictions[{index}] is None: give an image (path, PIL image, H x W x 3 uint8 array) or "
                "{'detections': [...], 'image_size': [width, height]}"
            )
        if isinstance(prediction, np.ndarray):
            if (
                prediction.dtype != np.uint8
                or prediction.ndim not in (2, 3)
                or (prediction.ndim == 3 and prediction.shape[-1] not in (3, 4))
            ):
                raise ValueError(
                    f"predictions[{index}]: an image array must be H x W or H x W x 3 (or 4) uint8, got "
                    f"{prediction.dtype} of shape {prediction.shape}"
                )
        elif isinstance(prediction, Mapping) and "detections" in prediction:
            detections = prediction["detections"]
            if isinstance(detections, Sequence) and not isinstance(detections, (str, bytes)):
                detections = [
                    {**dict.fromkeys(_DETECTION_KEYS), **d} if isinstance(d, Mapping) else d for d in detections
                ]
            prediction = {**prediction, "detections": detections, "image_size": prediction.get("image_size")}
        out.append(prediction)
    return out
