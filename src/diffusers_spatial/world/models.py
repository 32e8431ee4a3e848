"""The world base model's components, built from configs: a Stable Diffusion 1.x pipeline in miniature.

The world base model is an ordinary `StableDiffusionPipeline` folder (tokenizer, CLIP text encoder, KL VAE,
`UNet2DConditionModel`, scheduler), so `SpatialLoRAPipeline.from_pretrained`, `examples/train_esplora.py`, TORE and
the bench load it exactly as they load SD 1.5. Only its size and its training are the world's own
(`examples/pretrain_world.py`):

- text encoder: a 3-layer, 128-wide `CLIPTextModel` (causal, pooled at end-of-text like CLIP), trained as the text
  tower of a CLIP on world images and captions, then frozen, as SD freezes CLIP;
- VAE: an `AutoencoderKL` with 4 latent channels that halves each side per level;
- UNet: a `UNet2DConditionModel` with cross-attention on the text, plus the text's attention-pooled summary added
  to the time embedding (`addition_embed_type="text"`, which the SD pipeline feeds from the same hidden states);
- scheduler: v-prediction on the cosine schedule, sampled with DDIM from the last timestep (`"trailing"`): the
  layout of an image is decided at the highest noise levels.

Examples:

```py
>>> from diffusers_spatial.world.models import build_world_pipeline
>>> pipe = build_world_pipeline()  # random weights, the architecture of the shipped model
>>> pipe.unet.config.sample_size * pipe.vae_scale_factor
32

```
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .config import WorldConfig
from .tokenizer import world_tokenizer

__all__ = [
    "WorldModelConfig",
    "assemble_world_pipeline",
    "build_world_pipeline",
    "world_scheduler",
    "world_text_encoder",
    "world_unet",
    "world_vae",
]


@dataclass(frozen=True)
class WorldModelConfig:
    """Sizes of the world base model (defaults: the shipped model).

    Args:
        text_hidden_size, text_layers, text_heads: the CLIP text encoder.
        vae_channels: channels per VAE level; the latent side is the image side / 2 ** (levels - 1).
        unet_channels: channels per UNet level (the first level has no attention; the others cross-attend).
        unet_heads: attention heads of the UNet's transformer blocks.
    """

    text_hidden_size: int = 128
    text_layers: int = 3
    text_heads: int = 4
    vae_channels: tuple[int, ...] = (32, 64)
    unet_channels: tuple[int, ...] = (32, 64, 128)
    unet_heads: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def world_text_encoder(tokenizer: CLIPTokenizer, config: WorldModelConfig | None = None) -> CLIPTextModel:
    config = config or WorldModelConfig()
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.text_hidden_size,
            intermediate_size=4 * config.text_hidden_size,
            num_attention_heads=config.text_heads,
            num_hidden_layers=config.text_layers,
            max_position_embeddings=tokenizer.model_max_length,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def world_vae(world: WorldConfig | None = None, config: WorldModelConfig | None = None) -> AutoencoderKL:
    world, config = world or WorldConfig(), config or WorldModelConfig()
    levels = len(config.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(config.vae_channels),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=world.resolution,
    )


def world_unet(
    world: WorldConfig | None = None, config: WorldModelConfig | None = None, *, cross_attention_dim: int | None = None
) -> UNet2DConditionModel:
    world, config = world or WorldConfig(), config or WorldModelConfig()
    levels = len(config.unet_channels)
    return UNet2DConditionModel(
        sample_size=world.resolution // 2 ** (len(config.vae_channels) - 1),
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(config.unet_channels),
        layers_per_block=1,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        cross_attention_dim=cross_attention_dim or config.text_hidden_size,
        attention_head_dim=config.unet_heads,  # diffusers' legacy name: the number of heads
        norm_num_groups=16,
        addition_embed_type="text",
        addition_embed_type_num_heads=config.unet_heads,
    )


def world_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # unused with "trailing" spacing; 1 is what SD pipelines expect to find
        timestep_spacing="trailing",
    )


def assemble_world_pipeline(vae, text_encoder, tokenizer, unet) -> StableDiffusionPipeline:
    """A `StableDiffusionPipeline` of world components, with the world's scheduler and no safety checker."""
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=world_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_world_pipeline(
    world: WorldConfig | None = None, config: WorldModelConfig | None = None
) -> StableDiffusionPipeline:
    """A world base model with random weights (what `examples/pretrain_world.py` starts from)."""
    world = world or WorldConfig()
    tokenizer = world_tokenizer(world)
    text_encoder = world_text_encoder(tokenizer, config)
    unet = world_unet(world, config, cross_attention_dim=text_encoder.config.hidden_size)
    return assemble_world_pipeline(world_vae(world, config), text_encoder, tokenizer, unet)
