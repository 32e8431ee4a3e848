"""Pipelines: `SpatialLoRAPipeline` (a spatial LoRA fused into an SD 1.x / 2.x, SDXL, SD3.x or FLUX.1 pipeline, plus
TORE) and the registry of supported families (`families`)."""

from .families import FAMILIES, ModelFamily
from .pipeline_output import SpatialLoRAPipelineOutput
from .spatial_lora import (
    LORA_WEIGHT_NAME,
    SPATIAL_ADAPTER_NAME,
    SPATIAL_LORA_CONFIG_NAME,
    LoRAMismatchError,
    SpatialLoRAConfig,
    SpatialLoRAFluxPipeline,
    SpatialLoRAPipeline,
    SpatialLoRAStableDiffusion3Pipeline,
    SpatialLoRAStableDiffusionPipeline,
    SpatialLoRAStableDiffusionXLPipeline,
    SpatialLoRAZImagePipeline,
    check_lora_fits,
    read_lora,
)

__all__ = [
    "FAMILIES",
    "LORA_WEIGHT_NAME",
    "SPATIAL_ADAPTER_NAME",
    "SPATIAL_LORA_CONFIG_NAME",
    "LoRAMismatchError",
    "ModelFamily",
    "SpatialLoRAConfig",
    "SpatialLoRAFluxPipeline",
    "SpatialLoRAPipeline",
    "SpatialLoRAPipelineOutput",
    "SpatialLoRAStableDiffusion3Pipeline",
    "SpatialLoRAStableDiffusionPipeline",
    "SpatialLoRAStableDiffusionXLPipeline",
    "SpatialLoRAZImagePipeline",
    "check_lora_fits",
    "read_lora",
]
