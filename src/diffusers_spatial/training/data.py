"""Load the training data with `datasets` and check it before any training step runs.

`load_training_dataset` accepts what diffusers' training scripts accept: a Hub dataset id or a local folder
(`--dataset_name`, read by `datasets.load_dataset`: parquet shards, ImageFolder + metadata.jsonl, ...) or an
ImageFolder directory (`--train_data_dir`). The spatial dataset's columns (`image`, `prompt`, `relation`,
`subject`, `object`; docs/architecture.md) are the defaults.

`validate_training_dataset` then reads every caption and opens every image, so a broken dataset fails in seconds
with every problem named (column, row, file) instead of crashing hours into a run:

- a missing image or caption column (with the columns that do exist);
- an image that cannot be read or decoded (row and file path);
- an empty caption (row).

Examples:

```py
>>> from diffusers_spatial.training.data import load_training_dataset, validate_training_dataset
>>> dataset = load_training_dataset(train_data_dir="my_spatial_images")  # doctest: +SKIP
>>> validate_training_dataset(dataset, image_column="image", caption_column="prompt")  # doctest: +SKIP

```
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import datasets
from PIL import Image
from tqdm.auto import tqdm

from ..utils.files import read_text

__all__ = [
    "DEFAULT_CAPTION_COLUMN",
    "DEFAULT_IMAGE_COLUMN",
    "DatasetProblem",
    "DatasetValidationError",
    "find_dataset_problems",
    "load_training_dataset",
    "validate_training_dataset",
]

DEFAULT_IMAGE_COLUMN = "image"
DEFAULT_CAPTION_COLUMN = "prompt"
_MAX_LISTED = 20


@dataclass(frozen=True)
class DatasetProblem:
    """One thing wrong with the training data. `row` / `file` are None when the problem is not about one row."""

    kind: str  # "missing_column" | "unreadable_image" | "empty_caption" | "empty_dataset"
    message: str
    row: int | None = None
    file: str | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.file:
            where.append(f"file {self.file!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class DatasetValidationError(ValueError):
    """The training data cannot be trained on; `problems` lists every `DatasetProblem` found."""

    def __init__(self, problems: Sequence[DatasetProblem], source: str | None = None):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:_MAX_LISTED])
        more = f"\n  ... and {len(self.problems) - _MAX_LISTED} more" if len(self.problems) > _MAX_LISTED else ""
        origin = f" in {source}" if source else ""
        super().__init__(
            f"{len(self.problems)} problem(s) with the training data{origin}; nothing was trained:\n{shown}{more}"
        )


def load_training_dataset(
    dataset_name: str | None = None,
    *,
    dataset_config_name: str | None = None,
    train_data_dir: str | os.PathLike | None = None,
    cache_dir: str | None = None,
    split: str = "train",
) -> datasets.Dataset:
    """Load the training split as diffusers' scripts do (`--dataset_name` wins over `--train_data_dir`).

    Args:
        dataset_name: a Hub dataset id or a local folder / file `datasets.load_dataset` understands.
        dataset_config_name: the dataset's config, if it has several.
        train_data_dir: an ImageFolder directory (images + metadata.jsonl / metadata.csv); used only without
            `dataset_name`, or as `data_dir` inside it.
        cache_dir: where `datasets` caches downloads and Arrow files.
        split: which split to train on.

    Raises:
        ValueError: if neither source is given, a local path does not exist, or the split is missing.
    """
    if dataset_name is None and train_data_dir is None:
        raise ValueError("Need either --dataset_name or --train_data_dir.")
    if dataset_name is not None:
        if dataset_name.startswith(("./", "../", "/", "~")) and not os.path.exists(os.path.expanduser(dataset_name)):
            raise ValueError(f"--dataset_name {dataset_name!r} looks like a local path but does not exist.")
        loaded = datasets.load_dataset(
            dataset_name,
            dataset_config_name,
            cache_dir=cache_dir,
            data_dir=os.fspath(train_data_dir) if train_data_dir is not None else None,
        )
        source = dataset_name
    else:
        if not os.path.isdir(train_data_dir):
            raise ValueError(f"--train_data_dir {os.fspath(train_data_dir)!r} is not a directory.")
        _check_metadata(train_data_dir)
        loaded = datasets.load_dataset("imagefolder", data_dir=os.fspath(train_data_dir), cache_dir=cache_dir)
        source = os.fspath(train_data_dir)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"dataset {source!r} has no split {split!r}; splits: {', '.join(loaded)}")
        loaded = loaded[split]
    return loaded


def _check_metadata(folder: str | os.PathLike) -> None:
    """An ImageFolder's metadata.jsonl that is empty or not UTF-8 (datasets fails with an IndexError / a decode error
    that names no file)."""
    path = os.path.join(folder, "metadata.jsonl")
    if os.path.isfile(path) and not read_text(path).strip():
        raise ValueError(f"{path!r} is empty: an ImageFolder's metadata.jsonl holds one JSON line per image")


def _caption_is_empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple)):
        return not value or any(_caption_is_empty(v) or not isinstance(v, str) for v in value)
    return True


def _check_image(value) -> tuple[str | None, str | None]:
    """Open and decode one raw image cell ({"bytes", "path"} or a path); return (file, error or None)."""
    if isinstance(value, dict):
        path, data = value.get("path"), value.get("bytes")
    else:
        path, data = value, None
    if data is None and not path:
        return None, "no image (null cell)"
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            image.draft("RGB", (64, 64))  # JPEG: decode at reduced scale, still reads the whole stream
            image.load()
            if image.width < 1 or image.height < 1:
                return path, f"image has size {image.size}"
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBombError)
        return path, f"unreadable image ({type(err).__name__}: {err})"
    return path, None


def find_dataset_problems(
    dataset: datasets.Dataset,
    image_column: str = DEFAULT_IMAGE_COLUMN,
    caption_column: str = DEFAULT_CAPTION_COLUMN,
    *,
    check_images: bool = True,
    rows: Sequence[int] | None = None,
    num_threads: int | None = None,
    progress: bool = True,
) -> list[DatasetProblem]:
    """Every problem with `dataset` as training data (an empty list when it is fine).

    Args:
        dataset: the training split.
        image_column / caption_column: the columns the script will read.
        check_images: open and decode every image (threads; about one JPEG thumbnail decode per row).
        rows: check only these rows' images (distributed runs split the work); captions are always all checked.
        num_threads: image-check threads (default: up to 8).
        progress: show a tqdm bar over the images.
    """
    if len(dataset) == 0:
        return [DatasetProblem("empty_dataset", "the dataset has no rows")]
    columns = dataset.column_names
    problems = []
    for option, column in (("--image_column", image_column), ("--caption_column", caption_column)):
        if column not in columns:
            problems.append(
                DatasetProblem(
                    "missing_column",
                    f"{option} {column!r} is not a column of the dataset; its columns are: {', '.join(columns)}",
                    column=column,
                )
            )
    if problems:
        return problems

    for row, caption in enumerate(list(dataset[caption_column])):
        if _caption_is_empty(caption):
            problems.append(
                DatasetProblem("empty_caption", f"empty caption in column {caption_column!r}: {caption!r}", row=row)
            )

    if check_images:
        raw = dataset.select_columns([image_column])
        if isinstance(raw.features[image_column], datasets.Image):
            raw = raw.cast_column(image_column, datasets.Image(decode=False))
        rows = range(len(raw)) if rows is None else rows
        with ThreadPoolExecutor(max_workers=num_threads or min(8, os.cpu_count() or 1)) as pool:
            results = pool.map(lambda i: (i, *_check_image(raw[i][image_column])), rows)
            for row, path, error in tqdm(results, total=len(rows), desc="Checking images", disable=not progress):
                if error is not None:
                    problems.append(
                        DatasetProblem("unreadable_image", f"{error} in column {image_column!r}", row=row, file=path)
                    )
    return sorted(problems, key=lambda p: (p.row if p.row is not None else -1, p.kind))


def validate_training_dataset(
    dataset: datasets.Dataset,
    image_column: str = DEFAULT_IMAGE_COLUMN,
    caption_column: str = DEFAULT_CAPTION_COLUMN,
    *,
    check_images: bool = True,
    accelerator=None,
    source: str | None = None,
) -> None:
    """Raise `DatasetValidationError` naming every problem `find_dataset_problems` reports.

    With an `accelerate.Accelerator`, each process checks a share of the images and all processes raise the same
    error (none is left waiting in a collective call).
    """
    rows = None
    if accelerator is not None and accelerator.num_processes > 1:
        rows = range(accelerator.process_index, len(dataset), accelerator.num_processes)
    problems = find_dataset_problems(
        dataset,
        image_column,
        caption_column,
        check_images=check_images,
        rows=rows,
        progress=accelerator is None or accelerator.is_local_main_process,
    )
    if rows is not None:
        from accelerate.utils import gather_object

        gathered = gather_object([problems])
        merged = {(p.kind, p.row, p.file, p.message): p for part in gathered for p in part}
        problems = sorted(merged.values(), key=lambda p: (p.row if p.row is not None else -1, p.kind))
    if problems:
        raise DatasetValidationError(problems, source)
