"""The shard runner: curate a folder of shards into a spatial dataset, resumably, over several processes.

Shards are the unit of work. Processes split them through accelerate's `PartialState` (shard `i` goes to
process `i % num_processes`), so the same code runs on one CPU, on 8 GPUs (`accelerate launch`) or on many
nodes; on CPU use `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N` (accelerate's launcher starts one CPU
process only). Each finished shard is committed atomically with a manifest entry (`writer.py`), so a killed
run, started again with the same command, skips the finished shards, redoes the others from their start and
ends with exactly the rows an uninterrupted run writes. Memory is bounded by `CurationConfig.batch_size`
whatever the input size: records stream from the shard, through the stages, into the parquet writer.

When every process is done, the main process merges the manifest into `.curation/stats.json` (rows read and written,
every skip reason, every shard issue), draws the statistics plots and writes the dataset card.

Examples:

```py
>>> from diffusers_spatial.data import CurationConfig, curate
>>> stats = curate("laion-shards/", "spatial-dataset/", CurationConfig(max_rows_per_pair=100))  # doctest: +SKIP
>>> stats["rows_out"], stats["skipped"]  # doctest: +SKIP
(1873, {'no_relation': 0, 'non_english': 412, 'objects_not_found': 3021, ...})
```
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from accelerate import PartialState
from diffusers.utils import logging
from tqdm.auto import tqdm

from ..utils.distributed import process_state
from .card import finalize_dataset
from .config import CurationConfig
from .readers import ShardReader, discover_shards
from .records import Record, batched, count_skipped
from .stages import balance_stage, run_stages, to_rows
from .statistics import merge_entries
from .writer import (
    ShardWriter,
    atomic_write_json,
    completed_shards,
    manifest_dir,
    remove_stale_temporaries,
    stats_path,
)

logger = logging.get_logger(__name__)

__all__ = ["check_run_settings", "curate", "default_state", "make_perception", "process_shard", "run_shards"]


def default_state() -> PartialState:
    """accelerate's `PartialState` for this launch (`diffusers_spatial.utils.distributed.process_state`)."""
    return process_state()


def make_perception(config: CurationConfig, device: str | None = None, *, processes_per_host: int = 1):
    """The `Perception` a run uses: `config.detector` and `config.depth`, batched by `config.batch_size`.

    With several processes on one CPU host, the embedded detector gets an equal share of the cores each
    (onnxruntime would otherwise start one thread per core in every process and oversubscribe them).
    """
    from ..perception import Perception

    kwargs = {"detector": config.detector, "depth": config.depth, "batch_size": config.batch_size, "progress": False}
    if device is not None:
        kwargs["device"] = device
    if config.detector == "embedded" and processes_per_host > 1 and (device is None or str(device).startswith("cpu")):
        kwargs["detector_kwargs"] = {"num_threads": max(1, (os.cpu_count() or 1) // processes_per_host)}
    return Perception(**kwargs)


def perception_for(state: PartialState, config: CurationConfig):
    """`make_perception` on this process's device, sharing the host's cores with its local peers."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
    return make_perception(config, device=str(state.device), processes_per_host=local)


def check_run_settings(output_dir: str | os.PathLike, run: str, settings: dict[str, Any], *, write: bool) -> None:
    """Record a run's settings in `manifest/runs/<run>.json`, or check them against the recorded ones.

    Raises:
        ValueError: naming every differing setting, when the output was started with other settings
            (resuming would mix rows curated under two rules).
    """
    path = manifest_dir(output_dir) / "runs" / f"{run}.json"
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        runtime_only = set(previous.get("runtime_only", [])) | set(settings.get("runtime_only", []))
        differing = {
            key: (previous.get(key), value)
            for key, value in settings.items()
            if key not in runtime_only and key != "runtime_only" and previous.get(key) != value
        }
        if differing:
            details = ", ".join(f"{k}: was {old!r}, now {new!r}" for k, (old, new) in sorted(differing.items()))
            raise ValueError(
                f"output folder {str(output_dir)!r} holds a {run!r} run started with other settings ({details}); "
                "resume with the same settings, or write to a new folder"
            )
    elif write:
        atomic_write_json(path, settings)


def process_shard(
    reader,
    output_dir: str | os.PathLike,
    stages: Callable[[list[Record]], list[Record]],
    config: CurationConfig,
    *,
    worker: str = "0/1",
) -> dict:
    """Curate one shard into its parquet files and manifest entry; returns the entry.

    Args:
        reader: the shard's records: an iterable with `name` (the shard name) and `issues` (shard-level
            reasons, complete once iterated), e.g. a `ShardReader`.
        output_dir: the output folder.
        stages: batch -> batch (e.g. `partial(run_stages, perception=..., config=...)`).
        config: the settings (`batch_size`, `max_rows_per_pair`, row defaults).
        worker: "<process index>/<number of processes>" of the process doing it (recorded, for provenance).

    The entry: `shard`, `files` (`[{"path", "rows"}]`), `rows_in`, `rows_out`, `skipped` (reason -> rows),
    `issues` (shard-level reasons), `worker`. Invariant: `rows_in == rows_out + sum(skipped.values())`.
    """
    output_dir = Path(output_dir)
    for stale in (output_dir / "data").glob(f"*/{reader.name}.parquet"):
        stale.unlink()  # written by an attempt killed before its manifest entry: redone below
    writer = ShardWriter(output_dir, reader.name)
    rows_in = rows_out = 0
    skipped: Counter = Counter()
    pair_counts: Counter = Counter()
    try:
        for batch in batched(reader, config.batch_size):
            rows_in += len(batch)
            batch, pair_counts = balance_stage(stages(batch), pair_counts, config.max_rows_per_pair)
            skipped.update(count_skipped(batch))
            rows = to_rows(batch, config)
            rows_out += len(rows)
            writer.write(rows)
        files = writer.commit()
    except BaseException:
        writer.abort()
        raise
    entry = {
        "shard": reader.name,
        "files": files,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "skipped": dict(sorted(skipped.items())),
        "issues": sorted(reader.issues),
        "worker": worker,
    }
    atomic_write_json(manifest_dir(output_dir) / f"{reader.name}.json", entry)
    return entry


def run_shards(
    readers: list,
    output_dir: str | os.PathLike,
    make_stages: Callable[[], Callable[[list[Record]], list[Record]]],
    config: CurationConfig,
    *,
    run: str,
    settings: dict[str, Any],
    state: PartialState | None = None,
    progress: bool = True,
    on_shard_done: Callable[[dict], None] | None = None,
    finalize: bool = True,
) -> dict:
    """Process this process's share of `readers` (skipping finished shards), then finalize on the main process.

    `make_stages()` is called once, only if this process has work (it builds the models). `settings` are
    recorded as run `run` and checked on resume (`check_run_settings`). Returns the run statistics when
    finalized, else this process's entries merged.
    """
    state = state if state is not None else default_state()
    output_dir = Path(output_dir)
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        check_run_settings(output_dir, run, settings, write=True)
    state.wait_for_everyone()
    if not state.is_main_process:
        check_run_settings(output_dir, run, settings, write=False)

    mine = readers[state.process_index :: state.num_processes]
    done = completed_shards(output_dir)
    todo = [reader for reader in mine if reader.name not in done]
    logger.info(
        f"{run}: process {state.process_index}/{state.num_processes} has {len(mine)} of {len(readers)} shards, "
        f"{len(mine) - len(todo)} already done"
    )
    entries = []
    if todo:
        stages = make_stages()
        for reader in tqdm(todo, desc=f"{run} [{state.process_index}]", disable=not progress, unit="shard"):
            entry = process_shard(
                reader, output_dir, stages, config, worker=f"{state.process_index}/{state.num_processes}"
            )
            entries.append(entry)
            if on_shard_done is not None:
                on_shard_done(entry)
    state.wait_for_everyone()
    if not finalize:
        return merge_entries(entries)
    if state.is_main_process:
        remove_stale_temporaries(output_dir)
        finalize_dataset(output_dir)
    state.wait_for_everyone()
    return json.loads(stats_path(output_dir).read_text(encoding="utf-8"))


def curate(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: CurationConfig | None = None,
    *,
    perception=None,
    state: PartialState | None = None,
    progress: bool = True,
    on_shard_done: Callable[[dict], None] | None = None,
    finalize: bool = True,
) -> dict:
    """Curate every shard of `input_path` into the spatial dataset at `output_dir` (resumable, multi-process).

    Args:
        input_path: img2dataset webdataset output (`*.tar` + `*.parquet`) or an image folder with captions
            (see `readers.discover_shards`).
        output_dir: the dataset folder (created; an unfinished one is resumed).
        config: the curation settings (default `CurationConfig()`); must match the settings the folder was
            started with (`batch_size` may change).
        perception: a ready `Perception` (default: `make_perception(config)` on this process's device).
        state: accelerate's `PartialState` (default: `default_state()`, from the launcher's environment).
        progress: show a progress bar over this process's shards.
        on_shard_done: called with each shard's manifest entry right after it is committed.
        finalize: write `.curation/stats.json`, the plots and the dataset card when every process is done.

    Returns:
        The run statistics (`statistics.run_statistics`, also in `.curation/stats.json`) once finalized, else this
        process's shard entries merged.

    Raises:
        FileNotFoundError / ValueError: the input does not exist or holds no shards or images; the output was
            started with other settings.
    """
    config = config if config is not None else CurationConfig()
    state = state if state is not None else default_state()
    readers = [ShardReader(spec) for spec in discover_shards(input_path, shard_size=config.shard_size)]
    settings = {"input": str(Path(input_path).resolve()), **config.to_dict(), "runtime_only": ["batch_size"]}

    def make_stages():
        ready = perception if perception is not None else perception_for(state, config)
        return partial(run_stages, perception=ready, config=config)

    return run_shards(
        readers,
        output_dir,
        make_stages,
        config,
        run="curate",
        settings=settings,
        state=state,
        progress=progress,
        on_shard_done=on_shard_done,
        finalize=finalize,
    )
