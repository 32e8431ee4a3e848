"""Input readers: LAION-style shards (img2dataset webdataset tars + parquet) and plain image folders.

A shard is the unit of work. `discover_shards(path)` lists them in a fixed order:

- **webdataset shards**, as img2dataset writes them (`--output_format webdataset`): `00000.tar` holding
  `<key>.jpg`, `<key>.txt` (caption), `<key>.json` (url, status, ...) and, next to it, `00000.parquet` with one
  row per input URL (`key`, `url`, `caption`, `status`, `error_message`, `width`, `height`, plus any
  `--save_additional_columns` such as `LICENSE`). The parquet is optional; with it, rows whose download
  failed are counted as `missing_image` instead of vanishing. A `<key>.depth.npy` member (H x W inverse
  depth, larger = nearer) is read as real depth.
- **image folders**: images anywhere below the folder, captions from a `metadata.jsonl` / `metadata.csv`
  (`file_name` + `text`, `caption` or `prompt`, optional `url`, `license`: the `datasets` ImageFolder layout)
  or from `<stem>.txt` files; depth from `<stem>.depth.npy`. Sorted paths are cut into shards of `shard_size`.

Readers never raise on bad data: a failed download, a missing file, a truncated tar or an unreadable parquet
becomes a skipped record (row reasons) and/or a shard issue (`ShardReader.issues`), both counted by the run.

Examples:

```py
>>> from diffusers_spatial.data.readers import discover_shards, ShardReader
>>> shards = discover_shards("laion-shards/")  # doctest: +SKIP
>>> reader = ShardReader(shards[0])  # doctest: +SKIP
>>> for record in reader: ...  # doctest: +SKIP
>>> reader.issues  # doctest: +SKIP
[]
```
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from diffusers.utils import logging

from .records import Record

logger = logging.get_logger(__name__)

__all__ = ["IMAGE_EXTENSIONS", "ShardReader", "ShardSpec", "discover_shards"]

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"})
_DEPTH_SUFFIX = ".depth.npy"
# webdataset: the key is the member path up to the first dot of its base name; the rest is the extension.
_MEMBER_RE = re.compile(r"^((?:.*/)?[^./]+)\.([^/]+)$")
_CAPTION_COLUMNS = ("caption", "text", "top_caption", "prompt")
_METADATA_FILES = ("metadata.jsonl", "metadata.csv")


def _text(value) -> str | None:
    """A metadata field as text: strings pass, anything else (a number, a list, a dict) is unknown (None)."""
    return value if isinstance(value, str) else None


def _inside(name: str) -> bool:
    """Whether a metadata `file_name` stays inside the input folder (relative, never climbing out by '..')."""
    parts = name.replace("\\", "/").split("/")
    return not (os.path.isabs(name) or name.startswith("/") or ".." in parts or re.match(r"^[A-Za-z]:", name))


@dataclass(frozen=True)
class ShardSpec:
    """One unit of work.

    Args:
        name: unique, stable shard name (the tar's stem, or "folder-00003"); output files are named after it.
        kind: "webdataset" or "folder".
        tar: path of the tar (webdataset shards; may be None when only the parquet exists).
        parquet: path of the img2dataset parquet, if any.
        root: the image folder (folder shards).
        files: image paths relative to `root` (folder shards).
    """

    name: str
    kind: str
    tar: str | None = None
    parquet: str | None = None
    root: str | None = None
    files: tuple[str, ...] = ()


def discover_shards(path: str | os.PathLike, *, shard_size: int = 1000) -> list[ShardSpec]:
    """List the shards of an input folder, in a stable order.

    A folder holding `*.tar` or `*.parquet` files is read as img2dataset webdataset output (one shard per stem);
    otherwise it is read as an image folder cut into shards of `shard_size` images.

    Raises:
        FileNotFoundError: naming `path` if it does not exist.
        ValueError: if `path` is not a directory, or holds neither shards nor images.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"input path {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"input path {str(root)!r} is not a directory of shards or images")
    tars = {p.name[: -len(".tar")]: p for p in root.glob("*.tar")}
    parquets = {p.stem: p for p in root.glob("*.parquet")}
    if tars or parquets:
        return [
            ShardSpec(
                name=stem,
                kind="webdataset",
                tar=str(tars[stem]) if stem in tars else None,
                parquet=str(parquets[stem]) if stem in parquets else None,
            )
            for stem in sorted(set(tars) | set(parquets))
        ]
    names = set(_folder_metadata(root))
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            if filename.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS:
                names.add(os.path.relpath(os.path.join(dirpath, filename), root).replace(os.sep, "/"))
    if not names:
        raise ValueError(f"input folder {str(root)!r} holds no *.tar / *.parquet shards and no images")
    ordered = sorted(names)
    return [
        ShardSpec(name=f"folder-{i // shard_size:05d}", kind="folder", root=str(root), files=tuple(chunk))
        for i in range(0, len(ordered), shard_size)
        if (chunk := ordered[i : i + shard_size])
    ]


class ShardReader:
    """Stream the records of one shard; shard-level problems are collected in `issues` (reasons, no raise).

    Iterating yields every row the shard declares exactly once: rows with an image as kept records, rows
    without one as records skipped for `missing_image` or `truncated_tar`. Only one image is held at a time.
    """

    def __init__(self, spec: ShardSpec):
        self.spec = spec
        self.issues: list[str] = []

    @property
    def name(self) -> str:
        return self.spec.name

    def __iter__(self) -> Iterator[Record]:
        self.issues = []
        if self.spec.kind == "webdataset":
            yield from self._iter_webdataset()
        elif self.spec.kind == "folder":
            yield from self._iter_folder()
        else:
            raise ValueError(f"shard {self.spec.name!r} has unknown kind {self.spec.kind!r}")

    # -- webdataset ------------------------------------------------------------------------------------------

    def _iter_webdataset(self) -> Iterator[Record]:
        spec = self.spec
        rows = self._read_parquet() if spec.parquet else None
        if spec.tar is None:
            self.issues.append("missing_tar")
        produced = 0
        seen: set[str] = set()
        truncated = False
        if spec.tar is not None:
            groups = _tar_groups(spec.tar)
            while True:
                try:
                    key, members = next(groups)
                except StopIteration:
                    break
                except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                    logger.warning(f"shard {spec.name!r}: tar {spec.tar!r} is truncated or corrupt ({exc})")
                    truncated = True
                    self.issues.append("truncated_tar")
                    break
                produced += 1
                if key in seen:  # webdataset keys are unique; a repeat would write two rows with one `key`
                    logger.warning(f"shard {spec.name!r}: key {key!r} appears twice in {spec.tar!r}; the first kept")
                    yield Record(key=f"{spec.name}/{key}#{produced}", skip="duplicate_key")
                    continue
                seen.add(key)
                yield self._tar_record(key, members, rows.get(key) if rows else None)
        if rows:
            for key, meta in rows.items():
                if key in seen:
                    continue
                produced += 1
                succeeded = meta.get("status") in (None, "success")
                reason = "truncated_tar" if truncated and succeeded and spec.tar else "missing_image"
                yield Record(
                    key=f"{spec.name}/{key}",
                    caption=meta.get("caption"),
                    url=meta.get("url"),
                    license=meta.get("license"),
                    origin=meta.get("url"),
                    skip=reason,
                )
        if produced == 0:
            self.issues.append("empty_shard")

    def _read_parquet(self) -> dict[str, dict] | None:
        try:
            table = pq.read_table(self.spec.parquet)
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses for truncated files
            logger.warning(f"shard {self.spec.name!r}: parquet {self.spec.parquet!r} is unreadable ({exc})")
            self.issues.append("corrupt_parquet")
            return None
        columns = {name.lower(): name for name in table.column_names}
        if "key" not in columns:  # img2dataset always writes one; without it rows cannot be matched to tar members
            logger.warning(
                f"shard {self.spec.name!r}: parquet {self.spec.parquet!r} has no 'key' column; using the tar's own "
                "captions and metadata"
            )
            return None
        caption_column = next((columns[c] for c in _CAPTION_COLUMNS if c in columns), None)

        def column(name):
            return table.column(name).to_pylist() if name is not None else [None] * table.num_rows

        keys = column(columns["key"])
        captions, urls = column(caption_column), column(columns.get("url"))
        licenses, statuses = column(columns.get("license")), column(columns.get("status"))
        rows = {}
        for i in range(table.num_rows):
            rows[str(keys[i])] = {
                "caption": _text(captions[i]),
                "url": _text(urls[i]),
                "license": _text(licenses[i]),
                "status": statuses[i],
            }
        return rows

    def _tar_record(self, key: str, members: dict[str, bytes], meta: dict | None) -> Record:
        meta = dict(meta or {})
        info = {}
        if "json" in members:
            try:
                info = json.loads(members["json"])
            except (ValueError, UnicodeDecodeError):
                info = {}
            info = {k.lower(): v for k, v in info.items()} if isinstance(info, dict) else {}
        caption = meta.get("caption")
        if caption is None and "txt" in members:
            caption = members["txt"].decode("utf-8", errors="replace")
        if caption is None:
            caption = next((info[c] for c in _CAPTION_COLUMNS if isinstance(info.get(c), str)), None)
        url = meta.get("url") or _text(info.get("url"))
        image_ext = next((ext for ext in members if ext.lower() in IMAGE_EXTENSIONS), None)
        depth = _load_depth(members.get(_DEPTH_SUFFIX[1:]), f"{self.spec.tar}:{key}{_DEPTH_SUFFIX}")
        name = f"{self.spec.name}/{key}"
        return Record(
            key=name,
            caption=caption,
            image_bytes=members.get(image_ext) if image_ext else None,
            image_name=f"{os.path.basename(key)}.{image_ext}" if image_ext else None,
            url=url,
            license=meta.get("license") or _text(info.get("license")),
            origin=url,
            depth=depth,
            depth_source="ground_truth" if depth is not None else None,
            skip=None if image_ext else "missing_image",
        )

    # -- image folder -------------------------------------------------------------------------------------------

    def _iter_folder(self) -> Iterator[Record]:
        root = Path(self.spec.root)
        wanted = set(self.spec.files)
        metadata = {name: meta for name, meta in _folder_metadata(root).items() if name in wanted}
        for relative in self.spec.files:
            meta = metadata.get(relative, {})
            if not _inside(relative):
                yield Record(key=f"{self.spec.name}/{relative}", caption=meta.get("caption"), skip="outside_input")
                continue
            path = root / relative
            stem = str(path)[: -len(path.suffix)] if path.suffix else str(path)
            caption = meta.get("caption")
            if caption is None and os.path.exists(stem + ".txt"):
                caption = Path(stem + ".txt").read_text(encoding="utf-8", errors="replace")
            depth = None
            if os.path.exists(stem + _DEPTH_SUFFIX):
                depth = _load_depth(Path(stem + _DEPTH_SUFFIX).read_bytes(), stem + _DEPTH_SUFFIX)
            try:
                image_bytes = path.read_bytes()
            except OSError:
                image_bytes = None
            url = meta.get("url")
            yield Record(
                key=f"{self.spec.name}/{relative}",
                caption=caption,
                image_bytes=image_bytes,
                image_name=path.name,
                url=url,
                license=meta.get("license"),
                origin=url or relative,
                depth=depth,
                depth_source="ground_truth" if depth is not None else None,
                skip=None if image_bytes is not None else "missing_image",
            )
        if not self.spec.files:
            self.issues.append("empty_shard")


def _tar_groups(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {extension: bytes}) for consecutive tar members sharing a key (webdataset convention).

    Streams the tar (mode "r|*"): one sample's members in memory at a time. A truncation raises from the
    generator after every complete sample before the cut has been yielded; the sample cut in the middle is not.
    """
    with tarfile.open(path, mode="r|*") as tar:
        key, members = None, {}
        for member in tar:
            if not member.isfile():
                continue
            match = _MEMBER_RE.match(member.name)
            if match is None:
                continue
            member_key, ext = match.groups()
            data = tar.extractfile(member).read()
            if len(data) != member.size:
                raise EOFError(f"member {member.name!r} is cut short")
            if member_key != key and key is not None:
                yield key, members
                members = {}
            key = member_key
            members[ext] = data
        if key is not None:
            yield key, members


def _load_depth(data: bytes | None, where: str):
    if data is None:
        return None
    try:
        depth = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        logger.warning(f"depth map {where!r} is unreadable ({exc}); the image is treated as having no depth")
        return None
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number) or not np.isfinite(depth).all():
        logger.warning(f"depth map {where!r} is not a finite H x W array (shape {depth.shape}); ignored")
        return None
    return depth.astype(np.float32, copy=False)


def _folder_metadata(root: Path) -> dict[str, dict]:
    """file_name -> {"caption", "url", "license"} from the folder's metadata.jsonl / metadata.csv, if any."""
    for filename in _METADATA_FILES:
        path = root / filename
        if not path.exists():
            continue
        entries = {}
        with open(path, encoding="utf-8", newline="") as handle:
            if filename.endswith(".jsonl"):
                rows = []
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        logger.warning(f"{str(path)!r} line {number} is not JSON; skipped")
            else:
                rows = list(csv.DictReader(handle))
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
                continue
            lowered = {k.lower(): v for k, v in row.items()}
            caption = next((lowered[c] for c in _CAPTION_COLUMNS if isinstance(lowered.get(c), str)), None)
            if not _inside(row["file_name"]):
                logger.warning(f"{str(path)!r}: file_name {row['file_name']!r} points outside the folder; skipped")
            entries[row["file_name"]] = {
                "caption": caption,
                "url": _text(lowered.get("url")),
                "license": _text(lowered.get("license")),
            }
        return entries
    return {}
