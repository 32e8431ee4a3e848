"""Argument types and checks shared by the sub-commands (argparse `type=` callables raise ArgumentTypeError;
the checks raise ValueError naming the flag and its value, before any model loads)."""

from __future__ import annotations

import argparse
import math
import os

__all__ = [
    "DTYPES",
    "CommandError",
    "add_device_arguments",
    "add_sampling_arguments",
    "check_source",
    "finite_float",
    "int_at_least",
    "resolve_device_and_dtype",
]


class CommandError(SystemExit):
    """A sub-command's one-line error: `cli.main` prints the message and the process exits 2, as argparse does.

    A `SystemExit`, so that code calling a command outside `cli.main` still stops without a traceback.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.code = 2


DTYPES = ("auto", "float32", "float16", "bfloat16")
"""Choices of the --dtype flags; "auto" keeps the checkpoint's dtype."""


def int_at_least(minimum: int, multiple_of: int = 1):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if value % multiple_of:
            raise argparse.ArgumentTypeError(f"must be a multiple of {multiple_of}, got {value}")
        return value

    return parse


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def check_source(value: str | None, flag: str) -> None:
    """A local path must exist; anything else must at least be a valid Hub id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if value is None or os.path.exists(value):
        return
    try:
        validate_repo_id(value)
    except HFValidationError:
        raise ValueError(f"{flag} {value!r} is neither an existing path nor a Hub id") from None


def resolve_device_and_dtype(args):
    import torch

    from ..utils.distributed import process_state

    try:
        device = torch.device(args.device) if args.device else process_state().device
    except RuntimeError as err:
        raise ValueError(f"--device {args.device!r} is not a device ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device!r}: CUDA is not available on this machine")
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("--dtype float16 does not run on the CPU; use float32 or bfloat16")
    return device, dtype


def add_device_arguments(group) -> None:
    """--device / --dtype, as every command that loads a pipeline takes them."""
    group.add_argument("--device", help="e.g. cuda, cuda:1, cpu (default: the accelerate process's device).")
    group.add_argument("--dtype", choices=DTYPES, default="auto", help="Weights dtype (default: the checkpoint's).")


def add_sampling_arguments(group) -> None:
    """The image-generation flags shared by `generate` and `bench` (seeded per image, so resumable)."""
    group.add_argument("--images-per-prompt", type=int_at_least(1), default=4, help="Images per prompt (default 4).")
    group.add_argument("--seed", type=int_at_least(0), default=0, help="Run seed; each image's seed derives from it.")
    group.add_argument("--batch-size", type=int_at_least(1), default=4, help="Images per pipeline call (default 4).")
    group.add_argument("--steps", type=int_at_least(1), help="Denoising steps (default: the pipeline's).")
    group.add_argument(
        "--guidance", type=finite_float, help="Classifier-free guidance scale (default: the pipeline's)."
    )
    group.add_argument("--height", type=int_at_least(8, 8), help="Image height in pixels, a multiple of 8.")
    group.add_argument("--width", type=int_at_least(8, 8), help="Image width in pixels, a multiple of 8.")
