"""LoRA adapters for the UNet and text encoders, and how they are saved: diffusers' own LoRA format throughout.

Adapters are peft `LoraConfig`s added with `add_adapter`, as in diffusers' `train_text_to_image_lora.py`. Both the
checkpoints (`checkpoint-N/pytorch_lora_weights.safetensors`, through accelerate's save/load hooks) and the final
output are written by the pipeline class's `save_lora_weights` from `get_peft_model_state_dict` converted with
`convert_state_dict_to_diffusers`, with the adapter config in the safetensors metadata, so plain diffusers'
`pipe.load_lora_weights(output_dir)` reads them.

Examples:

```py
>>> from diffusers_spatial.utils import make_tiny_sd
>>> from diffusers_spatial.training.lora import add_lora_adapters, lora_layers_to_save
>>> pipe = make_tiny_sd()
>>> params = add_lora_adapters(pipe.unet, rank=4)
>>> sorted(lora_layers_to_save(pipe.unet))[0]
'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.lora.down.weight'

```
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from diffusers import UNet2DConditionModel
from diffusers.training_utils import _set_state_dict_into_text_encoder, cast_training_params
from diffusers.utils import convert_state_dict_to_diffusers, convert_unet_state_dict_to_peft
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from ..pipelines.families import ATTENTION_PROJECTIONS

__all__ = [
    "LORA_WEIGHT_NAME",
    "TEXT_ENCODER_LORA_TARGETS",
    "UNET_LORA_TARGETS",
    "add_lora_adapters",
    "denoiser_role",
    "lora_layers_to_save",
    "register_lora_checkpoint_hooks",
    "save_lora",
]

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
UNET_LORA_TARGETS = ATTENTION_PROJECTIONS  # also the transformer families' (see pipelines/families.py)
TEXT_ENCODER_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def add_lora_adapters(
    model: torch.nn.Module,
    *,
    rank: int,
    alpha: float | None = None,
    dropout: float = 0.0,
    target_modules: tuple[str, ...] | None = None,
) -> list[torch.nn.Parameter]:
    """Add a trainable LoRA adapter ("default") to a UNet or CLIP text encoder; return its parameters (float32).

    Args:
        model: a frozen `UNet2DConditionModel`, SD3 / FLUX transformer, or transformers CLIP text model.
        rank: LoRA rank r.
        alpha: LoRA alpha (default: rank, i.e. scale 1, as diffusers' scripts).
        dropout: LoRA dropout.
        target_modules: module names to adapt (default: attention projections of the model's kind).
    """
    if target_modules is None:
        is_text_encoder = not hasattr(model, "attn_processors")
        target_modules = TEXT_ENCODER_LORA_TARGETS if is_text_encoder else UNET_LORA_TARGETS
    config = LoraConfig(
        r=rank,
        lora_alpha=rank if alpha is None else alpha,
        lora_dropout=dropout,
        init_lora_weights="gaussian",
        target_modules=list(target_modules),
    )
    model.add_adapter(config)
    # Train the adapter in float32 even when the frozen base runs in fp16 / bf16 (autocast does the compute).
    cast_training_params(model, dtype=torch.float32)
    return [p for p in model.parameters() if p.requires_grad]


def denoiser_role(model: torch.nn.Module) -> str:
    """`"unet"` or `"transformer"`: the pipeline attribute, and LoRA key prefix, of a denoising model."""
    return "unet" if isinstance(model, UNet2DConditionModel) else "transformer"


def lora_layers_to_save(
    model: torch.nn.Module, diffusers_layout: bool = True, adapter_name: str = "default"
) -> dict[str, torch.Tensor]:
    """The model's LoRA weights as `save_lora_weights` takes them: diffusers' key layout (the SD / SDXL scripts) or
    peft's (`diffusers_layout=False`: what diffusers' SD3 / FLUX scripts save)."""
    # No embedding layer is adapted; saying so also stops peft from looking the base model up on the Hub.
    state = get_peft_model_state_dict(model, adapter_name=adapter_name, save_embedding_layers=False)
    return convert_state_dict_to_diffusers(state) if diffusers_layout else state


def _adapter_metadata(model: torch.nn.Module) -> dict:
    return model.peft_config["default"].to_dict()


def save_lora(
    save_directory: str | os.PathLike,
    pipeline_cls,
    denoiser: torch.nn.Module,
    text_encoders: Mapping[str, torch.nn.Module] | None = None,
) -> str:
    """Write `pytorch_lora_weights.safetensors` for `pipeline_cls` (e.g. `StableDiffusionPipeline`).

    Args:
        save_directory: output folder (created).
        pipeline_cls: the pipeline class whose `save_lora_weights` / `load_lora_weights` define the format.
        denoiser: the (unwrapped) UNet or transformer with its "default" LoRA adapter.
        text_encoders: trained text encoders by pipeline attribute ("text_encoder", "text_encoder_2").

    Returns:
        The path of the written file.
    """
    role = denoiser_role(denoiser)
    layout = role == "unet"
    kwargs = {
        f"{role}_lora_layers": lora_layers_to_save(denoiser, layout),
        f"{role}_lora_adapter_metadata": _adapter_metadata(denoiser),
    }
    for name, encoder in (text_encoders or {}).items():
        kwargs[f"{name}_lora_layers"] = lora_layers_to_save(encoder, layout)
        kwargs[f"{name}_lora_adapter_metadata"] = _adapter_metadata(encoder)
    pipeline_cls.save_lora_weights(os.fspath(save_directory), safe_serialization=True, **kwargs)
    return os.path.join(os.fspath(save_directory), LORA_WEIGHT_NAME)


def load_lora_into(
    input_dir: str | os.PathLike,
    pipeline_cls,
    denoiser: torch.nn.Module,
    text_encoders: Mapping[str, torch.nn.Module] | None = None,
) -> None:
    """Load a folder written by `save_lora` back into models that carry the same "default" adapters."""
    state_dict = pipeline_cls.lora_state_dict(os.fspath(input_dir))
    state_dict = state_dict[0] if isinstance(state_dict, tuple) else state_dict  # SD: (state dict, alphas)
    role = denoiser_role(denoiser)
    state = {k[len(role) + 1 :]: v for k, v in state_dict.items() if k.startswith(f"{role}.")}
    state = convert_unet_state_dict_to_peft(state) if role == "unet" else state
    incompatible = set_peft_model_state_dict(denoiser, state, adapter_name="default")
    unexpected = getattr(incompatible, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"{input_dir}: LoRA keys that do not match the {role}'s adapter: {unexpected[:5]} ...")
    for name, encoder in (text_encoders or {}).items():
        _set_state_dict_into_text_encoder(state_dict, prefix=f"{name}.", text_encoder=encoder)


def register_lora_checkpoint_hooks(
    accelerator,
    pipeline_cls,
    denoiser: torch.nn.Module,
    text_encoders: Mapping[str, torch.nn.Module] | None = None,
) -> None:
    """Make `accelerator.save_state` / `load_state` store only the LoRA weights, in diffusers' format.

    accelerate would otherwise pickle the full UNet / transformer into every checkpoint. The hooks write / read
    `pytorch_lora_weights.safetensors`; optimizer, scheduler and RNG states are still saved by accelerate.
    """
    text_encoders = dict(text_encoders or {})

    def unwrap(model):
        model = accelerator.unwrap_model(model)
        return getattr(model, "_orig_mod", model)  # torch.compile

    def role_of(model) -> str:
        model = unwrap(model)
        if model is unwrap(denoiser):
            return "denoiser"
        for name, encoder in text_encoders.items():
            if model is unwrap(encoder):
                return name
        raise ValueError(f"unexpected model in the checkpoint: {model.__class__.__name__}")

    def save_model_hook(models, weights, output_dir):
        roles = [role_of(m) for m in models]
        for _ in models:
            weights.pop()  # we save the LoRA ourselves: stop accelerate from saving the full models too
        if accelerator.is_main_process:
            models_by_role = {role: unwrap(m) for role, m in zip(roles, models)}
            save_lora(
                output_dir,
                pipeline_cls,
                models_by_role["denoiser"],
                {k: v for k, v in models_by_role.items() if k != "denoiser"},
            )

    def load_model_hook(models, input_dir):
        models_by_role = {}
        while models:
            model = models.pop()  # loaded here, not by accelerate
            models_by_role[role_of(model)] = unwrap(model)
        load_lora_into(
            input_dir,
            pipeline_cls,
            models_by_role["denoiser"],
            {k: v for k, v in models_by_role.items() if k != "denoiser"},
        )
        cast_training_params(list(models_by_role.values()), dtype=torch.float32)

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
