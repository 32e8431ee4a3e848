"""Utilities shared by tests, benchmarks and demos (`tiny_models`), and by the long jobs (`distributed`).

The tiny-model builders import diffusers and transformers, so they load on first use: light modules (the metric,
the dataset runner) can import `diffusers_spatial.utils.distributed` without them.
"""

import importlib

_LAZY = {
    "TINY_LORA_TARGETS": "tiny_models",
    "make_tiny_lora": "tiny_models",
    "make_tiny_sd": "tiny_models",
    "make_tiny_sdxl": "tiny_models",
    "tiny_clip_tokenizer": "tiny_models",
    "distributed_state": "distributed",
    "process_state": "distributed",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
