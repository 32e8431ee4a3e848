"""Per-image results as JSON Lines, appended as they are computed, so a killed evaluation resumes where it stopped.

One line per evaluated image (a *record*, see `evaluate.build_record`), keyed by `"key"` (the image's path
relative to the images folder, or its index). A run writes `results.jsonl` (or one `results-<rank>-of-<world>.jsonl`
per process when sharded) next to `run.json`, which pins the settings the results were computed with: resuming
with other settings would mix incomparable figures, so it is refused with a message naming the differences.

A process killed mid-write leaves at most one truncated last line; `ResultsStore` drops it (and truncates the
file back to the last complete line) when it opens the file again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..utils.atomic import atomic_write_json

RUN_FILE = "run.json"
RESULTS_GLOB = "results*.jsonl"


def results_file_name(process_index: int = 0, num_processes: int = 1) -> str:
    """`results.jsonl` for a single process, `results-<rank>-of-<world>.jsonl` for each shard of a parallel run."""
    return "results.jsonl" if num_processes == 1 else f"results-{process_index:05d}-of-{num_processes:05d}.jsonl"


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> plain JSON types (records hold detector outputs)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _jsonable(value.tolist())
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


class ResultsStore:
    """Append-only JSONL file of per-image records.

    Args:
        path: the `.jsonl` file (created with its parent folders if missing).

    Examples:

    ```py
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "results.jsonl")
    >>> store = ResultsStore(path)
    >>> store.append([{"key": "a.png", "scores": {}}])
    >>> sorted(ResultsStore(path).keys())
    ['a.png']

    ```
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()

    def _repair(self) -> None:
        """Truncate a partial last line left by a process killed mid-write."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        end = data.rfind(b"\n") + 1
        from diffusers.utils import logging  # imported here: diffusers takes seconds to import

        logging.get_logger(__name__).warning(
            f"{self.path}: dropping a partial last line ({len(data) - end} bytes) left by an interrupted run"
        )
        with open(self.path, "r+b") as f:
            f.truncate(end)

    def __iter__(self) -> Iterator[dict]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{self.path}:{line_no}: corrupt results line ({err}); delete the file to restart"
                    ) from None
                yield record

    def keys(self) -> set[str]:
        """Keys of the records already stored."""
        return {str(record["key"]) for record in self}

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records and flush them to disk before returning (a kill after this loses none of them)."""
        lines = [json.dumps(_jsonable(r), ensure_ascii=False) + "\n" for r in records]
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())


def read_results(out_dir: str | os.PathLike) -> list[dict]:
    """All records under `out_dir` (every shard's file), one per key; the last written wins."""
    by_key: dict[str, dict] = {}
    for path in sorted(Path(out_dir).glob(RESULTS_GLOB)):
        for record in ResultsStore(path):
            by_key[str(record["key"])] = record
    return list(by_key.values())


def check_run_settings(
    out_dir: str | os.PathLike, settings: Mapping[str, Any], *, overwrite: bool = False, write: bool = True
) -> None:
    """Pin the settings of a run in `out_dir/run.json`; refuse to resume results computed with other settings.

    Args:
        out_dir: the output folder.
        settings: JSON-serialisable settings that change the figures (protocols, detector, depth model, options).
        overwrite: delete previous results and settings instead of refusing.
        write: pin the settings (and with `overwrite`, delete old results); False only checks (the processes of
            a parallel run other than the main one).

    Raises:
        ValueError: naming each differing setting, when `out_dir` holds results of a run with other settings.
    """
    out_dir = Path(out_dir)
    run_file = out_dir / RUN_FILE
    settings = _jsonable(dict(settings))
    # Settings pinned by a run that failed before its first result bind nothing: the rerun may change them.
    computed = any(path.stat().st_size for path in out_dir.glob(RESULTS_GLOB)) if out_dir.is_dir() else False
    if not write:
        if not overwrite and computed and run_file.exists():
            _compare(out_dir, _read_run_file(run_file), settings)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for path in out_dir.glob(RESULTS_GLOB):
            path.unlink()
    elif computed and run_file.exists():
        _compare(out_dir, _read_run_file(run_file), settings)
    elif computed:
        raise ValueError(
            f"{out_dir} holds results but no {RUN_FILE}; pass overwrite=True (--overwrite) to start again"
        )
    atomic_write_json(run_file, settings)


def _read_run_file(run_file: Path) -> dict:
    try:
        return json.loads(run_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{run_file} is damaged ({err}); pass overwrite=True (--overwrite) to start again") from None


def _compare(out_dir: Path, previous: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    if previous != settings:
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        diffs = "; ".join(f"{k}: {previous.get(k)!r} -> {settings.get(k)!r}" for k in changed)
        raise ValueError(
            f"{out_dir} holds results computed with other settings ({diffs}); pass overwrite=True "
            "(--overwrite) to start again, or choose another output folder"
        )
