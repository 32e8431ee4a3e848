"""Atomic, streaming output: one shard's rows go to parquet files that appear whole or not at all.

Layout of an output folder (the Hub dataset is this folder):

```
README.md                                dataset card: YAML `configs:` + typed `features` (see `card.py`)
data/<source>-<2d|3d>/<shard>.parquet    rows, images embedded as bytes
.curation/stats.json, .curation/plots/   statistics over the whole output (see `statistics.py`)
.curation/manifest/<shard>.json          one entry per finished shard: its files, row counts, skip reasons
.curation/manifest/runs/<run>.json       the settings of each run, checked when it resumes
```

Everything but the card and the data lives under `.curation/`: `datasets` skips hidden folders, so
`load_dataset(folder)`, `load_dataset("parquet", data_dir=folder)` and the Hub's viewer read the rows only.

A `ShardWriter` streams row groups into hidden temporary files (`.<name>.<pid>.tmp`, ignored by every
`data_files` glob) and `commit()` renames them into place with `os.replace` (atomic on POSIX and Windows); the
shard's manifest entry is written the same way only after its files. A run killed at any moment therefore
leaves, per shard, either a manifest entry with all of its files, or no entry (the shard is redone from the
start on resume and its files, named after the shard, are overwritten by identical ones): nothing lost,
nothing duplicated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from ..utils.atomic import TMP_SUFFIX, atomic_write_bytes, atomic_write_json, temporary_path
from .schema import SPATIAL_FEATURES, data_subdir

__all__ = [
    "ShardWriter",
    "atomic_write_bytes",
    "atomic_write_json",
    "completed_shards",
    "manifest_dir",
    "plots_dir",
    "read_manifest",
    "remove_stale_temporaries",
    "stats_path",
]

RUN_STATE_DIR = ".curation"


def manifest_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / RUN_STATE_DIR / "manifest"


def stats_path(output_dir: str | os.PathLike) -> Path:
    """The run statistics (written last: its presence means the dataset is complete)."""
    return Path(output_dir) / RUN_STATE_DIR / "stats.json"


def plots_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / RUN_STATE_DIR / "plots"


def read_manifest(output_dir: str | os.PathLike) -> dict[str, dict]:
    """Shard name -> manifest entry, for every finished shard of the output folder."""
    entries = {}
    folder = manifest_dir(output_dir)
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            entry = json.loads(path.read_text(encoding="utf-8"))
            entries[entry["shard"]] = entry
    return entries


def completed_shards(output_dir: str | os.PathLike) -> set[str]:
    """Names of shards whose manifest entry exists and whose files are all present."""
    output_dir = Path(output_dir)
    return {
        name
        for name, entry in read_manifest(output_dir).items()
        if all((output_dir / f["path"]).is_file() for f in entry["files"])
    }


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporary files left under `folder` by killed runs; returns how many were removed."""
    removed = 0
    for path in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


class ShardWriter:
    """Stream one shard's rows into `data/<source>-<dimension>/<shard>.parquet`, committed atomically.

    Args:
        output_dir: the output folder.
        shard: the shard name (file stem of every file it writes).
        features: the row types; rows are checked against them as each batch is converted.

    Examples:

    ```py
    >>> writer = ShardWriter("out", "00000")  # doctest: +SKIP
    >>> writer.write(rows)  # doctest: +SKIP
    >>> writer.commit()  # doctest: +SKIP
    [{'path': 'data/natural-2d/00000.parquet', 'rows': 12}]
    ```
    """

    def __init__(self, output_dir: str | os.PathLike, shard: str, features: datasets.Features = SPATIAL_FEATURES):
        if not shard or "/" in shard or shard.startswith("."):
            raise ValueError(f"shard name {shard!r} must be a plain, non-hidden file stem")
        self.output_dir = Path(output_dir)
        self.shard = shard
        self.schema = features.arrow_schema
        self._writers: dict[str, tuple[pq.ParquetWriter, Path, Path]] = {}
        self._rows: dict[str, int] = {}

    def write(self, rows: list[dict]) -> None:
        """Append rows (dicts with the schema's columns) as row groups, one per output folder."""
        groups: dict[str, list[dict]] = {}
        for row in rows:
            groups.setdefault(data_subdir(row["source"], row["relation"]), []).append(row)
        for subdir, group in sorted(groups.items()):
            table = pa.Table.from_pylist(group, schema=self.schema)
            if subdir not in self._writers:
                final = self.output_dir / "data" / subdir / f"{self.shard}.parquet"
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = temporary_path(final)
                self._writers[subdir] = (pq.ParquetWriter(tmp, self.schema, compression="snappy"), tmp, final)
                self._rows[subdir] = 0
            self._writers[subdir][0].write_table(table)
            self._rows[subdir] += len(group)

    def commit(self) -> list[dict]:
        """Close and move every file into place; returns `[{"path", "rows"}]` (paths relative to the output)."""
        files = []
        for subdir, (writer, tmp, final) in sorted(self._writers.items()):
            writer.close()
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, final)
            files.append({"path": final.relative_to(self.output_dir).as_posix(), "rows": self._rows[subdir]})
        self._writers.clear()
        return files

    def abort(self) -> None:
        """Close and delete the temporary files (the shard leaves no trace)."""
        for writer, tmp, _ in self._writers.values():
            try:
                writer.close()
            finally:
                tmp.unlink(missing_ok=True)
        self._writers.clear()
