"""The base-model families `SpatialLoRAPipeline` supports: one small record each.

A family is detected from the `_class_name` of a base's `model_index.json` (the diffusers pipeline class). Its record
says which component denoises (`unet` or `transformer`: the one ESPLoRA adapts and the LoRA's key prefix), which of
that component's modules ESPLoRA targets, how the family's base is described and tagged, the documented default base
on the Hub, and whether the family's pipeline exposes what TORE's sampling-time layout callback needs.

Adding a family: a record here, the spatial pipeline class (two lines, in `spatial_lora.py`) and a tiny config in
`utils/tiny_models.py` for its tests.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "ModelFamily", "family_named", "supported_bases"]

# The attention projections of UNet and MMDiT / FLUX blocks alike (diffusers names them the same).
ATTENTION_PROJECTIONS = ("to_k", "to_q", "to_v", "to_out.0")


@dataclass(frozen=True)
class ModelFamily:
    """One supported base-model family.

    Args:
        name: how reports and errors name it ("SDXL").
        pipeline_class: the diffusers pipeline class name in `model_index.json` ("StableDiffusionXLPipeline").
        denoiser: the denoising component, `"unet"` or `"transformer"`.
        lora_target_modules: the denoiser's modules ESPLoRA adapts.
        hub_tag: the Hub tag of a model card ("stable-diffusion-xl").
        license: the licence id of the family's reference weights, for model cards of LoRAs trained on them.
        default_base: the documented base on the Hub, for users who have it.
        layout_callback: whether TORE's sampling-time layout callback (mode "layout") fits the family's pipeline;
            where it does not, the prompt rewrite (mode "rewrite") is what TORE does.
    """

    name: str
    pipeline_class: str
    denoiser: str
    lora_target_modules: tuple[str, ...]
    hub_tag: str
    license: str
    default_base: str
    layout_callback: bool


SD = ModelFamily(
    "SD 1.x/2.x",
    "StableDiffusionPipeline",
    "unet",
    ATTENTION_PROJECTIONS,
    "stable-diffusion",
    "creativeml-openrail-m",
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    layout_callback=True,
)
SDXL = ModelFamily(
    "SDXL",
    "StableDiffusionXLPipeline",
    "unet",
    ATTENTION_PROJECTIONS,
    "stable-diffusion-xl",
    "openrail++",
    "stabilityai/stable-diffusion-xl-base-1.0",
    layout_callback=True,
)
# SD3.x: an MMDiT; its step-end callback exposes `pooled_prompt_embeds`, not SDXL's `add_text_embeds`.
SD3 = ModelFamily(
    "SD3.x",
    "StableDiffusion3Pipeline",
    "transformer",
    ATTENTION_PROJECTIONS,
    "sd3",
    "other",  # the Stability AI Community License
    "stabilityai/stable-diffusion-3.5-medium",
    layout_callback=False,
)
# FLUX.1 [dev] / [schnell]: its step-end callback exposes `prompt_embeds` but not the pooled CLIP conditioning.
FLUX = ModelFamily(
    "FLUX.1",
    "FluxPipeline",
    "transformer",
    ATTENTION_PROJECTIONS,
    "flux",
    "other",  # FLUX.1 [dev] Non-Commercial License ([schnell]: Apache 2.0)
    "black-forest-labs/FLUX.1-dev",
    layout_callback=False,
)

# Z-Image (Tongyi-MAI, late 2025): a single-stream DiT with a Qwen3 text encoder, the most fine-tuned open family
# of its generation with a diffusers LoRA loader. Its callback exposes per-prompt token lists, not one tensor.
ZIMAGE = ModelFamily(
    "Z-Image",
    "ZImagePipeline",
    "transformer",
    ATTENTION_PROJECTIONS,
    "z-image",
    "apache-2.0",
    "Tongyi-MAI/Z-Image-Turbo",
    layout_callback=False,
)

FAMILIES: tuple[ModelFamily, ...] = (SD, SDXL, SD3, FLUX, ZIMAGE)


def family_named(pipeline_class: str | None) -> ModelFamily | None:
    """The family whose diffusers pipeline class is `pipeline_class`, or None."""
    return next((f for f in FAMILIES if f.pipeline_class == pipeline_class), None)


def supported_bases() -> str:
    """'SD 1.x/2.x (StableDiffusionPipeline), SDXL (StableDiffusionXLPipeline), ...' for error messages."""
    return ", ".join(f"{f.name} ({f.pipeline_class})" for f in FAMILIES)
