"""Atomic file writes (standard library only): readers see the old file or the whole new one, never a part.

Every long job of the package (generation, evaluation, calibration, curation, the bench) writes its manifests and
reports through these, so a run killed mid-write resumes from whole files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["TMP_SUFFIX", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "same_text", "temporary_path"]

TMP_SUFFIX = ".tmp"


def temporary_path(path: str | os.PathLike) -> Path:
    """The hidden, per-process temporary name `path` is written under before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, `os.replace`), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """`atomic_write_bytes` of indented, key-sorted JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def same_text(path: str | os.PathLike, text: str) -> bool:
    """Whether `path` exists and holds exactly `text` (UTF-8): a report that would be rewritten unchanged."""
    try:
        return Path(path).read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False
