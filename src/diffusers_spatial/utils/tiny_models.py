"""Tiny Stable Diffusion 1.x / 2.x, SDXL, SD3 and FLUX.1 pipelines built from configs, fully offline.

They have the real architectures (the same diffusers / transformers classes and the same `from_pretrained` /
`save_pretrained` / `load_lora_weights` code paths as a real checkpoint) at a size where a 2-step 64 px inference
takes a fraction of a second on a CPU. Tests, benchmarks and the offline demo use them.

Examples:

```py
>>> from diffusers_spatial.utils import make_tiny_sd, make_tiny_lora
>>> pipe = make_tiny_sd("tiny-sd")  # also saved as a diffusers folder (safetensors)
>>> lora = make_tiny_lora(pipe, "tiny-lora", rank=4)  # writes tiny-lora/pytorch_lora_weights.safetensors
>>> image = pipe("a dog to the left of a cat", num_inference_steps=2, height=64, width=64).images[0]
>>> image.size
(64, 64)

```
"""

from __future__ import annotations

import os

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3Model,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

__all__ = [
    "TINY_LORA_TARGETS",
    "byte_level_alphabet",
    "make_tiny_lora",
    "make_tiny_flux",
    "make_tiny_sd",
    "make_tiny_sd3",
    "make_tiny_sdxl",
    "make_tiny_zimage",
    "tiny_clip_tokenizer",
    "tiny_qwen_tokenizer",
    "tiny_t5_tokenizer",
]

# The attention projections ESPLoRA (and most diffusers LoRA scripts) adapt.
TINY_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
_TEXT_ENCODER_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def byte_level_alphabet() -> list[str]:
    """The 256 printable symbols GPT-2 / CLIP byte-level BPE uses for the bytes 0..255, in CLIP's vocabulary order."""
    return list(_bytes_to_unicode().values())


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2 / CLIP byte-level alphabet: every byte maps to a printable unicode character.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def tiny_clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with no merges (one token per character), built in memory.

    The layout mirrors the real CLIP vocabulary: 256 byte symbols, their end-of-word forms, then
    `<|startoftext|>` and `<|endoftext|>` as the two largest ids (so text encoders pooling at the argmax id pool at
    the end-of-text token, as with real CLIP). Any text tokenizes; nothing is downloaded.
    """
    symbols = byte_level_alphabet()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_t5_tokenizer() -> T5Tokenizer:
    """A character-level T5 (Unigram) tokenizer built in memory: `<pad>` 0, `</s>` 1, `<unk>` 2 as in T5, then one
    piece per printable ASCII character and the word-start marker. Any text tokenizes; nothing is downloaded."""
    pieces = [chr(c) for c in range(ord("!"), ord("~") + 1)] + ["\u2581"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(piece, -1.0) for piece in pieces]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _tiny_t5(tokenizer: T5Tokenizer, d_model: int = 32) -> T5EncoderModel:
    config = T5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4, dropout_rate=0.0
    )
    return T5EncoderModel(config)


def _text_config(tokenizer: CLIPTokenizer, hidden_size: int = 32, projection_dim: int | None = None) -> CLIPTextConfig:
    kwargs = {"projection_dim": projection_dim} if projection_dim is not None else {}
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=tokenizer.model_max_length,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )


def _tiny_vae(**overrides) -> AutoencoderKL:
    # The two-level VAE of the SD-family tiny pipelines; `overrides` give a family its own size / latent statistics.
    config = {
        "block_out_channels": (8, 16),
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
        "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
        "latent_channels": 4,
        "norm_num_groups": 2,
        "sample_size": 64,
    }
    return AutoencoderKL(**{**config, **overrides})


def _tiny_unet(**kwargs) -> UNet2DConditionModel:
    # The two-level UNet every tiny pipeline shares; `kwargs` adds the flavour (attention, added conditioning).
    return UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        **kwargs,
    )


def _vae_and_text_encoder(seed: int) -> dict:
    # `vae`, `tokenizer`, `text_encoder` of every tiny pipeline. Each component has its own seed, so changing one
    # component's config leaves the others' weights unchanged.
    torch.manual_seed(seed + 1)
    vae = _tiny_vae()
    torch.manual_seed(seed + 2)
    tokenizer = tiny_clip_tokenizer()
    return {"vae": vae, "tokenizer": tokenizer, "text_encoder": CLIPTextModel(_text_config(tokenizer))}


# The noise schedule of SD 1.x / 2.x / XL.
_SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}


def _finish(pipe, path: str | os.PathLike | None):
    pipe.set_progress_bar_config(disable=True)
    if path is not None:
        pipe.save_pretrained(os.fspath(path), safe_serialization=True)
    return pipe


def make_tiny_sd(
    path: str | os.PathLike | None = None, seed: int = 0, *, sd2: bool = False
) -> StableDiffusionPipeline:
    """Build a tiny Stable Diffusion 1.x pipeline (or 2.x with `sd2=True`) from configs.

    Args:
        path: if given, the pipeline is also saved there with `save_pretrained` (safetensors).
        seed: seed of the random weights (same seed, same weights).
        sd2: SD 2.x flavour: v-prediction scheduler, linear-projection transformer blocks, per-block head dims.

    Returns:
        A `StableDiffusionPipeline` (no safety checker) on the CPU in float32.
    """
    torch.manual_seed(seed)
    unet = _tiny_unet(cross_attention_dim=32, attention_head_dim=(2, 4) if sd2 else 8, use_linear_projection=sd2)
    components = _vae_and_text_encoder(seed)
    scheduler = DDIMScheduler(
        **_SD_BETAS,
        clip_sample=False,
        set_alpha_to_one=False,
        prediction_type="v_prediction" if sd2 else "epsilon",
    )
    pipe = StableDiffusionPipeline(
        **components,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    return _finish(pipe, path)


def make_tiny_sdxl(path: str | os.PathLike | None = None, seed: int = 0) -> StableDiffusionXLPipeline:
    """Build a tiny Stable Diffusion XL pipeline (two text encoders, text-time added conditioning) from configs.

    Args:
        path: if given, the pipeline is also saved there with `save_pretrained` (safetensors).
        seed: seed of the random weights.

    Returns:
        A `StableDiffusionXLPipeline` on the CPU in float32.
    """
    torch.manual_seed(seed)
    addition_time_embed_dim, projection_dim = 8, 32
    unet = _tiny_unet(
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=addition_time_embed_dim,
        transformer_layers_per_block=(1, 2),
        # 6 micro-conditioning numbers (original size, crop, target size) + the pooled text embedding.
        projection_class_embeddings_input_dim=6 * addition_time_embed_dim + projection_dim,
        cross_attention_dim=64,  # the two text encoders' hidden states, concatenated
    )
    components = _vae_and_text_encoder(seed)
    torch.manual_seed(seed + 3)
    tokenizer_2 = tiny_clip_tokenizer()
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer_2, projection_dim=projection_dim))
    scheduler = EulerDiscreteScheduler(**_SD_BETAS, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(
        **components,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    return _finish(pipe, path)


def _tiny_flow_vae(latent_channels: int) -> AutoencoderKL:
    # One level (no downsampling) and the shift / scale a flow-matching VAE has.
    return AutoencoderKL(
        block_out_channels=(8,),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=latent_channels,
        norm_num_groups=2,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def make_tiny_sd3(path: str | os.PathLike | None = None, seed: int = 0) -> StableDiffusion3Pipeline:
    """Build a tiny Stable Diffusion 3.x pipeline (MMDiT transformer, two CLIP encoders and a T5) from configs.

    Args:
        path: if given, the pipeline is also saved there with `save_pretrained` (safetensors).
        seed: seed of the random weights.

    Returns:
        A `StableDiffusion3Pipeline` on the CPU in float32.
    """
    torch.manual_seed(seed)
    # The two CLIP encoders' hidden states (16 + 16) are padded to the T5 width (32), the joint attention width;
    # their pooled projections (16 + 16) are the pooled conditioning.
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,  # inner width 16, FLUX's tiny one 32: a LoRA of one does not fit the other
        joint_attention_dim=32,
        caption_projection_dim=16,
        pooled_projection_dim=32,
        out_channels=4,
    )
    components = {}
    for index, suffix in enumerate(("", "_2")):
        torch.manual_seed(seed + 2 + index)
        tokenizer = tiny_clip_tokenizer()
        components[f"tokenizer{suffix}"] = tokenizer
        components[f"text_encoder{suffix}"] = CLIPTextModelWithProjection(
            _text_config(tokenizer, hidden_size=16, projection_dim=16)
        )
    torch.manual_seed(seed + 4)
    tokenizer_3 = tiny_t5_tokenizer()
    torch.manual_seed(seed + 1)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        vae=_tiny_flow_vae(latent_channels=4),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        tokenizer_3=tokenizer_3,
        text_encoder_3=_tiny_t5(tokenizer_3),
        **components,
    )
    return _finish(pipe, path)


def make_tiny_flux(path: str | os.PathLike | None = None, seed: int = 0) -> FluxPipeline:
    """Build a tiny FLUX.1 pipeline (dev layout: double- and single-stream blocks, guidance embedding, CLIP pooled
    conditioning and T5 token conditioning) from configs.

    Args:
        path: if given, the pipeline is also saved there with `save_pretrained` (safetensors).
        seed: seed of the random weights.

    Returns:
        A `FluxPipeline` on the CPU in float32.
    """
    torch.manual_seed(seed)
    # FLUX packs 2 x 2 latent patches into tokens: 1 latent channel -> 4 transformer input channels.
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )
    torch.manual_seed(seed + 2)
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    torch.manual_seed(seed + 3)
    tokenizer_2 = tiny_t5_tokenizer()
    torch.manual_seed(seed + 1)
    pipe = FluxPipeline(
        transformer=transformer,
        vae=_tiny_flow_vae(latent_channels=1),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        tokenizer_2=tokenizer_2,
        text_encoder_2=_tiny_t5(tokenizer_2),
    )
    return _finish(pipe, path)


_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_qwen_tokenizer() -> Qwen2Tokenizer:
    """A byte-level Qwen2 / Qwen3 tokenizer with no merges (one token per byte) and a minimal chat template, built in
    memory: the 256 byte symbols, then `<|endoftext|>` (padding), `<|im_start|>` and `<|im_end|>`."""
    vocab = {symbol: index for index, symbol in enumerate(byte_level_alphabet())}
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def make_tiny_zimage(path: str | os.PathLike | None = None, seed: int = 0) -> ZImagePipeline:
    """Build a tiny Z-Image pipeline (single-stream DiT, Qwen3 text encoder with a chat template) from configs.

    Args:
        path: if given, the pipeline is also saved there with `save_pretrained` (safetensors).
        seed: seed of the random weights.

    Returns:
        A `ZImagePipeline` on the CPU in float32.
    """
    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=4,
        dim=32,
        n_layers=1,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=16,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    )
    with torch.no_grad():  # allocated with torch.empty: give them values
        transformer.x_pad_token.normal_(0.0, 0.02)
        transformer.cap_pad_token.normal_(0.0, 0.02)
    torch.manual_seed(seed + 2)
    tokenizer = tiny_qwen_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed + 1)
    vae = _tiny_vae(sample_size=32, scaling_factor=0.3611, shift_factor=0.1159)  # Z-Image's latent statistics
    pipe = ZImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder=Qwen3Model(config),
        tokenizer=tokenizer,
    )
    return _finish(pipe, path)


def make_tiny_lora(
    pipe,
    path: str | os.PathLike | None = None,
    *,
    rank: int = 4,
    seed: int = 0,
    text_encoder: bool = False,
    target_modules: tuple[str, ...] = TINY_LORA_TARGETS,
) -> dict[str, torch.Tensor]:
    """Make a random (non-zero) LoRA for `pipe`'s denoiser (UNet or transformer) the way a training script does,
    without changing `pipe`.

    The adapter is created with peft (`LoraConfig` + `add_adapter`), its weights randomised (peft's
    `init_lora_weights=False`, so the LoRA really changes the output), read back with `get_peft_model_state_dict`
    and converted to diffusers' key layout, then removed from the pipeline again.

    Args:
        pipe: a Stable Diffusion / SDXL / SD3 / FLUX pipeline (e.g. from `make_tiny_sd`).
        path: if given, a folder where `pytorch_lora_weights.safetensors` is written with the pipeline class's
            `save_lora_weights` (so `load_lora_weights(path)` reads it).
        rank: LoRA rank `r` (alpha = rank, i.e. scale 1).
        seed: seed of the random LoRA weights.
        text_encoder: also adapt the (first) text encoder's attention projections.
        target_modules: denoiser module names to adapt.

    Returns:
        The diffusers-format state dict (`unet.` or `transformer.`, and `text_encoder.` prefixed keys).
    """
    from peft import LoraConfig

    from ..training.lora import denoiser_role, lora_layers_to_save

    denoiser = denoiser_role(pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer)

    def _extract(model, targets, name):
        torch.manual_seed(seed)
        config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=list(targets))
        model.add_adapter(config, adapter_name=name)
        try:
            # The key layout the family's training scripts save (diffusers' for SD / SDXL, peft's for the others).
            state = lora_layers_to_save(model, diffusers_layout=denoiser == "unet", adapter_name=name)
            return {k: v.detach().clone().contiguous() for k, v in state.items()}
        finally:
            model.delete_adapters(name) if hasattr(model, "delete_adapters") else model.delete_adapter(name)

    adapter = f"_tiny_lora_{seed}"
    denoiser_layers = _extract(getattr(pipe, denoiser), target_modules, adapter)
    text_layers = _extract(pipe.text_encoder, _TEXT_ENCODER_LORA_TARGETS, adapter) if text_encoder else None

    state = {f"{denoiser}.{k}": v for k, v in denoiser_layers.items()}
    if text_layers:
        state.update({f"text_encoder.{k}": v for k, v in text_layers.items()})
    if path is not None:
        kwargs = {f"{denoiser}_lora_layers": denoiser_layers}
        if text_layers:
            kwargs["text_encoder_lora_layers"] = text_layers
        type(pipe).save_lora_weights(os.fspath(path), safe_serialization=True, **kwargs)
    return state
