"""Checkpoints of a training run: naming, `latest`, the total limit, atomic saves, and the non-finite loss stop.

`checkpoint-N/` (N = optimisation steps done) holds what `accelerator.save_state` writes: the LoRA
(`pytorch_lora_weights.safetensors`, via `lora.register_lora_checkpoint_hooks`), `optimizer.bin`,
`scheduler.bin`, `random_states_<process>.pkl`, plus `training_state.json` (step, epoch, seed). It is written to
`checkpoint-N.partial/` and renamed when complete, so a run killed while saving never leaves a half-written
folder for `--resume_from_checkpoint latest` to pick up.

Examples:

```py
>>> from diffusers_spatial.training.checkpoints import checkpoint_step
>>> checkpoint_step("out/checkpoint-1500"), checkpoint_step("out/checkpoint-1500.partial")
(1500, None)

```
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

__all__ = [
    "TRAINING_STATE_NAME",
    "NonFiniteLossError",
    "checkpoint_step",
    "check_finite_loss",
    "list_checkpoints",
    "prune_checkpoints",
    "read_training_state",
    "resolve_resume_checkpoint",
    "save_checkpoint",
]

TRAINING_STATE_NAME = "training_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step of a `checkpoint-N` folder name, or None for any other name."""
    match = _CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete `checkpoint-N` folders in `output_dir`, oldest (lowest N) first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def resolve_resume_checkpoint(output_dir: str | os.PathLike, resume_from_checkpoint: str | None) -> Path | None:
    """The folder to resume from: "latest" -> newest checkpoint in `output_dir` (None if there is none).

    A path or a bare name (`checkpoint-500`, looked up in `output_dir`) must exist.

    Raises:
        ValueError: if the named checkpoint does not exist or is not a `checkpoint-N` folder.
    """
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    for candidate in (Path(resume_from_checkpoint), Path(output_dir) / resume_from_checkpoint):
        if candidate.is_dir() and checkpoint_step(candidate) is not None:
            return candidate
    raise ValueError(
        f"--resume_from_checkpoint {resume_from_checkpoint!r}: no such checkpoint-N folder "
        f"(existing in {os.fspath(output_dir)!r}: {[p.name for p in list_checkpoints(output_dir)]})"
    )


def prune_checkpoints(output_dir: str | os.PathLike, total_limit: int | None, *, keep_room: int = 1) -> list[Path]:
    """Delete the oldest checkpoints so that at most `total_limit - keep_room` remain; return what was deleted.

    Called before saving a new checkpoint (`keep_room=1`), as diffusers' scripts do.
    """
    if total_limit is None:
        return []
    if total_limit < 1:
        raise ValueError(f"checkpoints_total_limit must be >= 1, got {total_limit}")
    found = list_checkpoints(output_dir)
    excess = len(found) - (total_limit - keep_room)
    removed = found[: max(excess, 0)]
    for path in removed:
        shutil.rmtree(path)
    return removed


def save_checkpoint(
    accelerator, output_dir: str | os.PathLike, step: int, state: dict, total_limit: int | None = None
) -> Path:
    """`accelerator.save_state` into `checkpoint-<step>/`, atomically. Call on EVERY process.

    Args:
        accelerator: the run's `Accelerator` (each process writes its own RNG state).
        output_dir: the run's output folder.
        step: optimisation steps done.
        state: extra JSON written as `training_state.json` (epoch, seed, ...).
        total_limit: `--checkpoints_total_limit`: older checkpoints are deleted first to make room.
    """
    final = Path(output_dir) / f"checkpoint-{step}"
    partial = final.with_name(final.name + ".partial")
    if accelerator.is_main_process:
        prune_checkpoints(output_dir, total_limit, keep_room=0 if final.exists() else 1)
        if partial.exists():
            shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(os.fspath(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (partial / TRAINING_STATE_NAME).write_text(json.dumps({"global_step": step, **state}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
    accelerator.wait_for_everyone()
    return final


def read_training_state(checkpoint: str | os.PathLike) -> dict:
    """The checkpoint's `training_state.json` ({} for a checkpoint written without one)."""
    path = Path(checkpoint) / TRAINING_STATE_NAME
    return json.loads(path.read_text()) if path.exists() else {}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message says where and which checkpoint holds the last good state."""


def check_finite_loss(loss: float, *, step: int, epoch: int, checkpoint: str | os.PathLike | None = None) -> None:
    """Raise `NonFiniteLossError` if `loss` is NaN or infinite.

    Args:
        loss: the (process-averaged) loss of the micro-batch about to be back-propagated.
        step: optimisation steps completed so far (the weights are still those of this step).
        epoch: the current epoch.
        checkpoint: where the state of `step` was saved, named in the message.
    """
    if math.isfinite(loss):
        return
    saved = (
        f"The LoRA, optimizer and scheduler state after step {step} (the last finite one) were saved to "
        f"{os.fspath(checkpoint)}. "
        if checkpoint is not None
        else ""
    )
    raise NonFiniteLossError(
        f"Training stopped: the loss is {loss} at step {step + 1} (epoch {epoch}). {saved}"
        "Lower --learning_rate, set --max_grad_norm, try --snr_gamma 5.0 or bf16 instead of fp16, and check the "
        f"data; resume with --resume_from_checkpoint {os.fspath(checkpoint) if checkpoint else 'latest'}."
    )
