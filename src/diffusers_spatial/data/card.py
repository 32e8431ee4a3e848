"""The dataset card (README.md with YAML `configs:` and typed `features`), finalization, and `push_to_hub`.

datasets 5.x has no loading scripts: a Hub dataset is its data files plus the card. The card's YAML declares
one config per slice of the data, each with its `data_files` glob and the typed `features`, so
`datasets.load_dataset(folder_or_repo_id, config)` gives an `Image` column and typed boxes without any code:

| config | rows |
| --- | --- |
| `default` | everything |
| `natural` / `synthetic` | curated photos / verified generations (`source`) |
| `2d` / `3d` | left, right, above, below (next to) / in front of, behind |

A config is declared only when it has rows (a glob that matches nothing is an error when loading).

Examples:

```py
>>> from diffusers_spatial.data import finalize_dataset, push_to_hub
>>> stats = finalize_dataset("spatial-dataset/")  # doctest: +SKIP
>>> import datasets
>>> ds = datasets.load_dataset("spatial-dataset/", "3d", split="train")  # doctest: +SKIP
>>> push_to_hub("spatial-dataset/", "me/spatial-relations")  # doctest: +SKIP
'https://huggingface.co/datasets/me/spatial-relations'
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..relations import RELATIONS
from .schema import SHARD_REASONS, SKIP_REASONS, SPATIAL_FEATURES
from .statistics import plot_statistics, run_statistics
from .writer import atomic_write_bytes, atomic_write_json, plots_dir, stats_path

__all__ = ["CONFIG_PATTERNS", "dataset_card", "finalize_dataset", "push_to_hub"]

CONFIG_PATTERNS: dict[str, str] = {
    "default": "data/*/*.parquet",
    "natural": "data/natural-*/*.parquet",
    "synthetic": "data/synthetic-*/*.parquet",
    "2d": "data/*-2d/*.parquet",
    "3d": "data/*-3d/*.parquet",
}
"""Config name -> the `data_files` glob of its train split (folders are `data/<source>-<dimension>/`)."""


def _size_category(rows: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return name
    return "1M<n<10M" if rows < 10_000_000 else "10M<n<100M" if rows < 100_000_000 else "100M<n<1B"


def _matching_rows(pattern: str, rows_by_config: dict[str, int]) -> int:
    from fnmatch import fnmatch

    folder_glob = pattern.split("/")[1]
    return sum(n for folder, n in rows_by_config.items() if fnmatch(folder, folder_glob))


LICENCE_FILE = ".curation/LICENCE.md"
_CARD_SETTINGS = ".curation/card.json"
_LICENCE = """Each row carries the licence of its image in `license`; the dataset as a whole is only as free as its least free
row. Curated web images (LAION) remain under their owners' terms: use them for research, and honour opt-out
requests. Verified generations carry the generator's output licence."""


def dataset_card(
    stats: dict,
    *,
    repo_id: str = "spatial-dataset",
    pretty_name: str = "Spatial relations (diffusers-spatial)",
    description: str = "",
    samples: str | None = None,
) -> str:
    """The README.md text for an output folder with statistics `stats` (`statistics.run_statistics`).

    Args:
        repo_id: what the loading snippet loads: the Hub repo id, or the local folder.
        description: a paragraph added after the introduction (e.g. the source data and its filters).
        samples: the sample sheet's path relative to the card, if drawn.
    """
    from huggingface_hub import DatasetCardData

    extra = f"\n\n{description.strip()}" if description.strip() else ""
    configs = []
    for name, pattern in CONFIG_PATTERNS.items():
        if _matching_rows(pattern, stats["rows_by_config"]) == 0:
            continue
        # a fresh list per config: a shared one would be written as YAML anchors (&id001 / *id001)
        config = {
            "config_name": name,
            "data_files": [{"split": "train", "path": pattern}],
            "features": SPATIAL_FEATURES._to_yaml_list(),
        }
        if name == "default":
            config["default"] = True
        configs.append(config)
    front = DatasetCardData(
        pretty_name=pretty_name,
        license="other",
        license_name="per-row",
        license_link=LICENCE_FILE,
        language=["en"],
        task_categories=["text-to-image"],
        tags=["spatial-relations", "esplora", "diffusers-spatial", "image-text"],
        size_categories=[_size_category(stats["rows_out"])],
        configs=configs,
    ).to_yaml()
    skipped = "\n".join(
        f"| `{reason}` | {n} | {SKIP_REASONS[reason]} |"
        for reason, n in stats["skipped"].items()
        if reason in SKIP_REASONS
    )
    issues = "\n".join(
        f"| `{reason}` | {n} | {SHARD_REASONS[reason]} |"
        for reason, n in stats["shard_issues"].items()
        if reason in SHARD_REASONS
    )
    header = list(RELATIONS)
    relations = "\n".join(
        f"| {source} | " + " | ".join(str(counts.get(r, 0)) for r in header) + " |"
        for source, counts in stats["relations"].items()
    )
    order = "\n".join(
        f"| {axis} | {b['rows']} | {b['pairs']} | {b['alphabetical_first_as_subject']} / "
        f"{b['alphabetical_second_as_subject']} | {b['mean_pair_imbalance']} |"
        for axis, b in stats["order_balance"].items()
    )
    loading = "\n".join(f"| `{c['config_name']}` | `{c['data_files'][0]['path']}` |" for c in configs)
    sample_sheet = (
        f"\n\n![sample rows: images, boxes (subject yellow, object magenta) and prompts]({samples})" if samples else ""
    )
    return f"""---
{front}
---

# {pretty_name}

Images whose prompt states a spatial relation that is **verified true in the image**: boxes from an object
detector (and depth, for in front of / behind) judged by the `esplora` geometry protocol of
diffusers-spatial. Built for spatial LoRA fine-tuning (ESPLoRA), where a caption that
says "left" over an image that shows "right" teaches the wrong thing.{extra}{sample_sheet}

## Loading

```python
import datasets

ds = datasets.load_dataset({json.dumps(repo_id)}, split="train")  # or a config below
ds[0]["image"], ds[0]["prompt"]
```

| config | data files |
| --- | --- |
{loading}

## Columns

| column | type | meaning |
| --- | --- | --- |
| `image` | Image | the image, embedded as its original encoded bytes |
| `prompt` | string | the verified spatial prompt (the training caption) |
| `subject`, `relation`, `object` | string | head nouns and relation id (`left_of`, `right_of`, `above`, `below`, `in_front_of`, `behind`, `next_to`) |
| `boxes` | list of {{label, score, box}} | detections (score >= the run's minimum), pixels x1, y1, x2, y2, origin top-left |
| `depth_stats` | {{subject, object, source}} or null | median inverse depth (larger = nearer) in the subject / object box, and where the depth came from |
| `verification_score` | float32 | how clearly the relation holds: esplora's strength of the weakest instance pair (planar: centroid offset over the summed half-extents, > 1 = boxes apart; 3D: depth difference over the map's range) |
| `source` | string | `natural` (captioned photo) or `synthetic` (verified generation) |
| `origin` | string | the image URL, or `generator#seed=N` |
| `license` | string | the image's licence as given by its source |
| `key` | string | stable id `<shard>/<key>` |
| `caption` | string or null | the original caption, verbatim |
| `prompt_origin` | string | `caption` (the caption was verified), `synthesized` (written from the verified geometry) or `generation` |

## Statistics

{stats["rows_out"]} rows kept of {stats["rows_in"]} read, from {stats["shards"]} shards. Rows per folder:
{json.dumps(stats["rows_by_config"])}.

Rows skipped, per reason (nothing is dropped without being counted):

| reason | rows | meaning |
| --- | --- | --- |
{skipped}

Shard issues:

| issue | shards | meaning |
| --- | --- | --- |
{issues}

Relations per source:

| source | {" | ".join(header)} |
| --- | {" | ".join("---" for _ in header)} |
{relations or "| (no rows) |"}

Object order balance (pairs named in both orders equally often give imbalance 0):

| axis | rows | pairs | subject A / B | mean pair imbalance |
| --- | --- | --- | --- | --- |
{order}

![relation balance](.curation/plots/relation_balance.png)
![order balance](.curation/plots/order_balance.png)
![object frequency](.curation/plots/object_frequency.png)
![skip reasons](.curation/plots/skip_reasons.png)

## Licence

{_LICENCE}
"""


def finalize_dataset(output_dir: str | os.PathLike, **card_kwargs) -> dict:
    """Write `.curation/stats.json`, the plots, the sample sheet, the licence note and the dataset card for an
    output folder; returns the statistics. `card_kwargs` go to `dataset_card` (`repo_id` defaults to the folder)."""
    output_dir = Path(output_dir)
    stats = run_statistics(output_dir)
    plot_statistics(stats, plots_dir(output_dir))
    sheet = plot_samples(output_dir, plots_dir(output_dir) / "samples.png")
    atomic_write_bytes(output_dir / LICENCE_FILE, f"# Licence\n\n{_LICENCE}\n".encode())
    card_kwargs = {"repo_id": str(output_dir), **card_kwargs}
    card_kwargs["samples"] = sheet.relative_to(output_dir).as_posix() if sheet else None
    atomic_write_json(output_dir / _CARD_SETTINGS, card_kwargs)  # push_to_hub re-renders it with the repo id
    atomic_write_bytes(output_dir / "README.md", dataset_card(stats, **card_kwargs).encode("utf-8"))
    atomic_write_json(stats_path(output_dir), stats)  # last: its presence means the folder is complete
    return stats


def plot_samples(output_dir: str | os.PathLike, path: str | os.PathLike, *, count: int = 8) -> Path | None:
    """A sheet of the first `count` rows: each image with its subject / object boxes and its verified prompt."""
    import io

    import pyarrow.parquet as pq

    from ..metric.contact_sheet import plot_image_grid

    cells = []
    for file in sorted(Path(output_dir, "data").glob("*/*.parquet")):
        table = pq.read_table(file, columns=["image", "prompt", "subject", "object", "boxes"]).slice(
            0, count - len(cells)
        )
        for row in table.to_pylist():
            cells.append(
                {
                    "path": io.BytesIO(row["image"]["bytes"]),
                    "prompt_used": row["prompt"],
                    "verdict": True,
                    "detections": row["boxes"],
                    "labels": (row["subject"], row["object"]),
                    "why": None,
                }
            )
        if len(cells) == count:
            break
    if not cells:
        return None
    columns = 4
    rows = [{"prompt": "", "cells": cells[i : i + columns]} for i in range(0, len(cells), columns)]
    for row in rows:
        row["cells"] += [None] * (columns - len(row["cells"]))
    return plot_image_grid(rows, [""] * columns, path, title="Sample rows (every prompt verified in its image)")


def push_to_hub(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload spatial dataset (diffusers-spatial)",
) -> str:
    """Upload a finalized output folder to the Hub as a dataset repo (data files + card + statistics).

    One commit per `data/<source>-<dimension>` folder, then one for the card, statistics and plots: a failed
    upload can simply be run again (unchanged files are not re-sent). The manifest stays local.

    Raises:
        FileNotFoundError: the folder has no README.md (run `finalize_dataset` or `curate` first).

    Returns:
        The dataset's URL.
    """
    from huggingface_hub import HfApi

    output_dir = Path(output_dir)
    if not (output_dir / "README.md").is_file() or not stats_path(output_dir).is_file():
        raise FileNotFoundError(
            f"{str(output_dir)!r} has no README.md dataset card: run `finalize_dataset` (or `curate`) first"
        )
    settings_path = output_dir / _CARD_SETTINGS
    card_kwargs = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}
    stats = json.loads(stats_path(output_dir).read_text(encoding="utf-8"))
    card = dataset_card(stats, **{**card_kwargs, "repo_id": repo_id})  # the loading snippet names the repo
    atomic_write_bytes(output_dir / "README.md", card.encode("utf-8"))
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    for folder in sorted(p for p in (output_dir / "data").iterdir() if p.is_dir()):
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=folder,
            path_in_repo=f"data/{folder.name}",
            allow_patterns=["*.parquet"],
            revision=revision,
            commit_message=f"{commit_message}: data/{folder.name}",
        )
    api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=output_dir,
        allow_patterns=["README.md", ".curation/stats.json", ".curation/plots/*.png", LICENCE_FILE],
        revision=revision,
        commit_message=commit_message,
    )
    return str(url)
