"""The output of `SpatialLoRAPipeline.__call__`, a diffusers `BaseOutput`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diffusers.utils import BaseOutput

if TYPE_CHECKING:
    from ..tore.core import ToreDecision


@dataclass
class SpatialLoRAPipelineOutput(BaseOutput):
    """Output of a `SpatialLoRAPipeline` call.

    With `return_dict=False` the pipeline returns the tuple `(images, nsfw_content_detected, prompts_used,
    tore_decisions)`, in this order, whatever is None.

    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`):
            The generated images (or latents with `output_type="latent"`), as the base pipeline returns them.
        nsfw_content_detected (`list[bool]`, *optional*):
            The safety checker's verdicts (SD 1.x / 2.x with a safety checker), else None.
        prompts_used (`list[str]`, *optional*):
            The prompts the model was asked for, one per prompt of the call (TORE's rewrites where it rewrote);
            None when the call gave `prompt_embeds` instead of a prompt.
        tore_decisions (`list[ToreDecision]`, *optional*):
            What TORE decided for each prompt and why; None when TORE was off for the call.
    """

    images: Any
    nsfw_content_detected: list[bool] | None = None
    prompts_used: list[str] | None = None
    tore_decisions: list[ToreDecision] | None = None
