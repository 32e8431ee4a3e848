"""What a training run measured: steps, samples per second (training loop only), peak memory, the loss curve.

Written by the scripts as `<output_dir>/training_summary.json`; `bench/bench_training.py` reads it to compare
runs with and without the caches.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

__all__ = ["TrainingStats", "peak_rss_mib"]


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (`ru_maxrss`: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dataclass
class TrainingStats:
    """Accumulates per-step timings and losses; `samples_per_second` excludes caching, validation and saving.

    `train_cpu_seconds` is the process's CPU time over the same steps (all threads): on a shared CPU it measures
    the work of a step independently of what else the machine runs.
    """

    global_step: int = 0
    samples_seen: int = 0
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0
    cache_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    _started: tuple[float, float] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start (or restart, after validation / checkpointing) the clocks of the current optimisation step."""
        self._started = (time.perf_counter(), time.process_time())

    def step(self, global_step: int, loss: float) -> None:
        """Close an optimisation step."""
        if self._started is not None:
            self.train_seconds += time.perf_counter() - self._started[0]
            self.train_cpu_seconds += time.process_time() - self._started[1]
        self.global_step = global_step
        self.losses.append(float(loss))
        self._started = None

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        data["samples_per_second"] = self.samples_seen / self.train_seconds if self.train_seconds else None
        data["samples_per_cpu_second"] = self.samples_seen / self.train_cpu_seconds if self.train_cpu_seconds else None
        data["peak_rss_mib"] = peak_rss_mib()
        data["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        return data

    def write(self, output_dir: str | os.PathLike, **extra) -> Path:
        """Write `training_summary.json` (these figures plus `extra`, e.g. the validation metrics)."""
        path = Path(output_dir) / "training_summary.json"
        path.write_text(json.dumps({**self.to_dict(), **extra}, indent=2, default=str))
        return path
