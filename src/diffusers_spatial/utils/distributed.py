"""accelerate's process state for a `torchrun` / `accelerate launch` run, CPU processes included.

`PartialState` only joins torchrun peers on the CPU (gloo) when created with `cpu=True`; created without it, N CPU
processes each believe they are alone and all do all the work. Every long job (generation, evaluation, dataset
curation) gets its state here, so `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N ...` splits the work.

Examples:

```py
>>> from diffusers_spatial.utils.distributed import distributed_state
>>> distributed_state() is None  # a plain single-process run: no process group
True

```
"""

from __future__ import annotations

import os

__all__ = ["distributed_state", "process_state"]


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_state():
    """accelerate's `PartialState` for this launch, joined with the other processes of a torchrun / accelerate launch.

    CPU processes are set up (gloo) when `ACCELERATE_USE_CPU=1`, or when several processes run without a GPU.
    `PartialState` is a singleton: create it through here before anything else asks for one.

    Raises:
        RuntimeError: launched as several processes, but accelerate set up a different number.
    """
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    world_size = _world_size()
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or (world_size > 1 and not torch.cuda.is_available())
    state = PartialState(cpu=cpu)
    if world_size > 1 and state.num_processes != world_size:
        raise RuntimeError(
            f"launched as {world_size} processes but accelerate set up {state.num_processes}; set "
            "ACCELERATE_USE_CPU=1 for CPU processes"
        )
    return state


def distributed_state():
    """`process_state()` when launched on several processes (torchrun / accelerate launch), else None (then no
    process group is created)."""
    return process_state() if _world_size() > 1 else None
