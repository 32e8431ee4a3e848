"""Utilities shared by tests, benchmarks and demos."""

from .tiny_models import TINY_LORA_TARGETS, make_tiny_lora, make_tiny_sd, make_tiny_sdxl, tiny_clip_tokenizer

__all__ = ["TINY_LORA_TARGETS", "make_tiny_lora", "make_tiny_sd", "make_tiny_sdxl", "tiny_clip_tokenizer"]
