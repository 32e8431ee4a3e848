"""Pipelines: `SpatialLoRAPipeline` (spatial LoRA fused into an SD 1.x / 2.x / SDXL pipeline, plus TORE)."""

from .pipeline_output import SpatialLoRAPipelineOutput
from .spatial_lora import (
    LORA_WEIGHT_NAME,
    SPATIAL_ADAPTER_NAME,
    SPATIAL_LORA_CONFIG_NAME,
    LoRAMismatchError,
    SpatialLoRAConfig,
    SpatialLoRAPipeline,
    SpatialLoRAStableDiffusionPipeline,
    SpatialLoRAStableDiffusionXLPipeline,
    check_lora_fits,
    read_lora,
)

__all__ = [
    "LORA_WEIGHT_NAME",
    "SPATIAL_ADAPTER_NAME",
    "SPATIAL_LORA_CONFIG_NAME",
    "LoRAMismatchError",
    "SpatialLoRAConfig",
    "SpatialLoRAPipeline",
    "SpatialLoRAPipelineOutput",
    "SpatialLoRAStableDiffusionPipeline",
    "SpatialLoRAStableDiffusionXLPipeline",
    "check_lora_fits",
    "read_lora",
]
