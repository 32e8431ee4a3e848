#!/usr/bin/env python
# Copyright 2026 The diffusers-spatial authors. Licensed under the Apache License, Version 2.0.
"""Pretrain the world base model: a Stable Diffusion 1.x pipeline in miniature, trained on the synthetic world.

The proving ground of the method (docs/world.md). Three stages, each resumable from its last checkpoint, run in
order (or one at a time with `--stage`):

1. `text_encoder`: a CLIP on world images and captions (a CLIP text tower and a small image tower, contrastive
   loss, the mirrored caption of each image as a hard negative). Its text tower becomes the frozen text encoder,
   as CLIP's is in Stable Diffusion;
2. `vae`: a KL autoencoder on world images (L1 + L2 reconstruction, a small KL term); its `scaling_factor` is set
   from the latents' spread, as for SD;
3. `unet`: the denoiser, on the **LAION-like** caption regime (`diffusers_spatial.world.LAION_LIKE`: mostly "A and
   B" in reading order, a third relation captions, a quarter of those mirrored), with the text encoder and the VAE
   frozen; v-prediction, EMA weights, classifier-free guidance dropout. Every `--eval_steps` the EMA model is
   sampled on the `world` suite and judged by the world's exact perception: `learning_curve.jsonl` / `.png`.

The output folder is a diffusers `StableDiffusionPipeline` folder (plus `world_config.json` and a model card) that
`SpatialLoRAPipeline.from_pretrained`, `examples/train_esplora.py` and `diffusers-spatial bench` load:

    accelerate launch examples/pretrain_world.py --output_dir world-base --seed 0
    accelerate launch examples/pretrain_world.py --output_dir world-base --resume_from_checkpoint latest  # after a stop

Training state lives in `<output_dir>/training/<stage>/checkpoint-N` (model weights as safetensors, the UNet's EMA
as a diffusers folder); a finished stage's component (`text_encoder/`, `vae/`, `unet/`) is never trained again.
"""

import argparse
import json
import logging
import math
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from diffusers_spatial.relations import CONVERSE
from diffusers_spatial.training.checkpoints import (
    checkpoint_step,
    resolve_resume_checkpoint,
    save_checkpoint,
)
from diffusers_spatial.training.loss import diffusion_loss, sample_latents
from diffusers_spatial.training.randomness import derive_seed, step_generator
from diffusers_spatial.utils.distributed import process_state
from diffusers_spatial.world import LAION_LIKE, CaptionRegime, WorldConfig, world_prompt, world_sample
from diffusers_spatial.world.evaluation import evaluate_world_model, world_scorer
from diffusers_spatial.world.layout_readout import PLANAR_AXES, LayoutReadout, grid_cells, layout_relation_holds
from diffusers_spatial.world.model_card import plot_learning_curve, write_world_model_card
from diffusers_spatial.world.models import (
    WorldModelConfig,
    assemble_world_pipeline,
    world_scheduler,
    world_text_encoder,
    world_unet,
    world_vae,
)
from diffusers_spatial.world.perception import palette_index
from diffusers_spatial.world.tokenizer import world_tokenizer

logger = get_logger(__name__, log_level="INFO")

STAGES = ("text_encoder", "vae", "unet")
# The captions CLIP learns from: true relations in both orders, and object lists.
CLIP_CAPTIONS = CaptionRegime("clip", p_relation_caption=0.8, p_reading_order=0.5, p_mirror_error=0.0)


def parse_args(input_args=None):
    parser = argparse.ArgumentParser(description="Pretrain the world base model (text encoder, VAE, UNet).")
    parser.add_argument("--output_dir", type=str, required=True, help="Where the pipeline folder is written.")
    parser.add_argument(
        "--stage", choices=("all",) + STAGES, default="all", help="Train every stage in order (default) or one."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data streams, the noise and the init.")
    parser.add_argument(
        "--relations",
        type=str,
        nargs="+",
        default=None,
        help="Relation ids the world draws (default: the four 2D relations; add in_front_of behind for 3D).",
    )
    parser.add_argument("--resume_from_checkpoint", type=str, default=None, help='"latest" or a checkpoint path.')
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=2)
    parser.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None)
    parser.add_argument("--report_to", type=str, default=None, help="accelerate trackers (tensorboard, wandb).")
    parser.add_argument("--logging_dir", type=str, default="logs")

    text = parser.add_argument_group("stage 1: text encoder (CLIP)")
    text.add_argument("--text_encoder_steps", type=int, default=3000)
    text.add_argument("--text_encoder_batch_size", type=int, default=128)
    text.add_argument("--text_encoder_learning_rate", type=float, default=1e-3)
    text.add_argument(
        "--text_encoder_layout_weight",
        type=float,
        default=1.0,
        help="Weight of the layout-readout loss beside CLIP's (0: CLIP alone): grid queries attend to the token "
        "states and paint the scene's colours, so that the tokens carry where each object goes.",
    )

    vae = parser.add_argument_group("stage 2: VAE")
    vae.add_argument("--vae_steps", type=int, default=1200)
    vae.add_argument("--vae_batch_size", type=int, default=32)
    vae.add_argument("--vae_learning_rate", type=float, default=1e-3)
    vae.add_argument("--vae_kl_weight", type=float, default=1e-4)

    unet = parser.add_argument_group("stage 3: UNet")
    unet.add_argument("--max_train_steps", type=int, default=30000, help="UNet optimisation steps.")
    unet.add_argument("--train_batch_size", type=int, default=32)
    unet.add_argument("--learning_rate", type=float, default=5e-4)
    unet.add_argument("--lr_scheduler", type=str, default="constant_with_warmup")
    unet.add_argument("--lr_warmup_steps", type=int, default=200)
    unet.add_argument("--ema_decay", type=float, default=0.999)
    unet.add_argument("--conditioning_dropout", type=float, default=0.1, help="Share of empty captions (CFG).")
    unet.add_argument("--max_grad_norm", type=float, default=1.0)
    unet.add_argument("--eval_steps", type=int, default=2000, help="Learning-curve evaluation every N steps.")
    unet.add_argument("--eval_num_pairs", type=int, default=None, help="Object pairs of the world suite (all: 36).")
    unet.add_argument("--eval_images_per_prompt", type=int, default=1)
    unet.add_argument("--eval_inference_steps", type=int, default=20)
    unet.add_argument("--eval_guidance_scale", type=float, default=4.0)
    args = parser.parse_args(input_args)
    for name in ("text_encoder_steps", "vae_steps", "max_train_steps", "checkpointing_steps", "eval_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if not 0.0 <= args.conditioning_dropout < 1.0:
        parser.error("--conditioning_dropout must be in [0, 1)")
    return args


def world_batch(config, regime, seed, step, batch_size, accelerator):
    """This process's micro-batch of step `step`: a pure function of the step, so a resumed run sees the same data."""
    first = (step * accelerator.num_processes + accelerator.process_index) * batch_size
    samples = [world_sample(config, regime, seed, index) for index in range(first, first + batch_size)]
    pixels = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return pixels.to(accelerator.device), samples


def make_accelerator(args, stage):
    return Accelerator(
        mixed_precision=args.mixed_precision,
        log_with=args.report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=str(Path(args.output_dir, args.logging_dir))
        ),
    )


def resume(accelerator, args, stage_dir):
    """Load the stage's latest checkpoint when asked to; returns the step to start from."""
    path = resolve_resume_checkpoint(stage_dir, args.resume_from_checkpoint)
    if path is None:
        return 0
    accelerator.print(f"Resuming from {path}")
    accelerator.load_state(str(path))
    return checkpoint_step(path)


def peak_memory_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def end_step(accelerator, args, stage_dir, progress, done, checkpoint=False, **logs):
    """Log a finished step, advance the progress bar, and checkpoint every `--checkpointing_steps` (or now)."""
    accelerator.log(logs, step=done)
    progress.update(1)
    progress.set_postfix(**logs)
    if checkpoint or done % args.checkpointing_steps == 0:
        save_checkpoint(accelerator, stage_dir, done, {"seed": args.seed}, args.checkpoints_total_limit)


def record_timing(stage_dir, steps, seconds):
    """Append this session's training time to `timing.jsonl` (a resumed stage has one line per session)."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    record = {"steps": steps, "seconds": round(seconds, 1), "seconds_per_step": round(seconds / max(steps, 1), 4)}
    record.update(peak_memory_mb=round(peak_memory_mb(), 1), threads=torch.get_num_threads())
    with open(stage_dir / "timing.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


# ----------------------------------------------------------------------------------------------------------------
# Stage 1: the text encoder, as the text tower of a CLIP trained on the world
# ----------------------------------------------------------------------------------------------------------------


class WorldImageTower(nn.Module):
    """A small CNN image encoder with x / y coordinate channels (positions are what the captions are about)."""

    def __init__(self, resolution, embed_dim):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(5, 32, 3, 1, 1), nn.SiLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, 1, 1), nn.SiLU(), nn.Conv2d(64, 128, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(128, 128, 3, 2, 1), nn.SiLU(),
        )  # fmt: skip
        side = resolution // 8
        self.proj = nn.Linear(128 * side * side, embed_dim)
        grid = torch.linspace(-1.0, 1.0, resolution)
        self.register_buffer("coords", torch.stack(torch.meshgrid(grid, grid, indexing="ij"))[None], persistent=False)

    def forward(self, pixels):
        x = torch.cat([pixels, self.coords.expand(len(pixels), -1, -1, -1)], dim=1)
        return self.proj(self.convs(x).flatten(1))


def layout_targets(samples, world, grid):
    """Each grid cell's palette index (0: background) at the cell's centre pixel of the rendered image."""
    centres = (np.arange(grid) * world.resolution // grid + world.resolution // (2 * grid)).astype(np.int64)
    maps = [palette_index(s.image, world)[np.ix_(centres, centres)] for s in samples]
    return torch.from_numpy(np.stack(maps)).view(len(samples), -1)


class WorldCLIP(nn.Module):
    def __init__(self, text_encoder, resolution, embed_dim=128, num_colors=4, grid=8):
        super().__init__()
        self.text_encoder = text_encoder
        self.layout = LayoutReadout(text_encoder.config.hidden_size, num_colors + 1, grid)
        self.image_tower = WorldImageTower(resolution, embed_dim)
        self.text_projection = nn.Linear(text_encoder.config.hidden_size, embed_dim)
        # A cooler start than CLIP's 1/0.07: the world's captions differ by one word, and a hot softmax early on
        # separates them through the pooled vector alone (see docs/world.md, "the text encoder").
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, pixels, input_ids):
        """Normalised image and text embeddings, the temperature, and the layout logits of every caption."""
        encoded = self.text_encoder(input_ids)
        pooled = encoded.pooler_output  # the end-of-text token, as in CLIP
        text_embeds = F.normalize(self.text_projection(pooled), dim=-1)
        image_embeds = F.normalize(self.image_tower(pixels), dim=-1)
        return image_embeds, text_embeds, self.logit_scale.exp(), self.layout(encoded.last_hidden_state)


def mirrored(caption):
    """The same caption with the relation mirrored: the hard negative CLIP must tell apart."""
    return world_prompt(caption.first.name, CONVERSE[caption.relation], caption.second.name)


def train_text_encoder(args, world, model_config):
    stage_dir = Path(args.output_dir, "training", "text_encoder")
    accelerator = make_accelerator(args, "text_encoder")
    set_seed(args.seed)
    tokenizer = world_tokenizer(world)
    model = WorldCLIP(world_text_encoder(tokenizer, model_config), world.resolution, num_colors=len(world.colors))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.text_encoder_learning_rate, weight_decay=0.01)
    lr_scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=100, num_training_steps=args.text_encoder_steps)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    start = resume(accelerator, args, stage_dir)
    unwrap = accelerator.unwrap_model

    def tokens(texts):
        return tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt").input_ids.to(
            accelerator.device
        )

    seed = derive_seed(args.seed, 1)
    progress = tqdm(range(args.text_encoder_steps), initial=start, desc="text encoder (CLIP)")
    started = time.perf_counter()
    for step in range(start, args.text_encoder_steps):
        model.train()
        pixels, samples = world_batch(world, CLIP_CAPTIONS, seed, step, args.text_encoder_batch_size, accelerator)
        captions = [s.caption for s in samples]
        negatives = [mirrored(c) for c in captions if c.relation is not None]
        with accelerator.autocast():
            image_embeds, text_embeds, scale, layout = model(pixels, tokens([c.text for c in captions] + negatives))
            logits = scale * image_embeds @ text_embeds.T
            labels = torch.arange(len(captions), device=logits.device)
            clip_loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits[:, : len(captions)].T, labels)) / 2
            targets = layout_targets(samples, world, unwrap(model).layout.grid).to(layout.device)
            layout_loss = F.cross_entropy(layout[: len(captions)].reshape(-1, layout.shape[-1]), targets.reshape(-1))
            loss = clip_loss + args.text_encoder_layout_weight * layout_loss
        accelerator.backward(loss)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        with torch.no_grad():  # the temperature parameter itself is kept in [1, 100], as CLIP's training does
            unwrap(model).logit_scale.clamp_(0, math.log(100))
        with torch.no_grad():  # how often the image prefers its caption over the mirrored one
            relational = [i for i, c in enumerate(captions) if c.relation is not None]
            true = logits[relational, relational]
            mirror = logits[relational, len(captions) + torch.arange(len(relational))]
            mirror_accuracy = (true > mirror).float().mean().item()
        end_step(
            accelerator,
            args,
            stage_dir,
            progress,
            step + 1,
            clip_loss=clip_loss.item(),
            layout_loss=layout_loss.item(),
            mirror_accuracy=mirror_accuracy,
        )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        record_timing(stage_dir, args.text_encoder_steps - start, time.perf_counter() - started)
        clip = accelerator.unwrap_model(model).eval()
        # Held out: does the text tower tell a caption from its mirror image, and do its token states say where the
        # objects go? (The UNet can only follow what they carry.)
        held_out = text_encoder_held_out(clip, tokens, world, args.seed, accelerator)
        (stage_dir / "eval.json").write_text(json.dumps(held_out))
        logger.info(f"text encoder, held out: {held_out}")
        clip.text_encoder.save_pretrained(Path(args.output_dir, "text_encoder"))
        tokenizer.save_pretrained(Path(args.output_dir, "tokenizer"))
    accelerator.end_training()


@torch.no_grad()
def text_encoder_held_out(clip, tokens, world, seed, accelerator, num_samples=1024):
    """On fresh relation captions (another seed):

    - `mirror_accuracy`: the share of images that match their caption better than its mirror image;
    - `layout_accuracy`: the share of captions whose painted layout (the readout head, from text alone) puts the
      subject's colour on the relation's side of the object's colour.
    """
    regime = CaptionRegime("relations", p_relation_caption=1.0, p_reading_order=0.5, p_mirror_error=0.0)
    pixels, samples = world_batch(world, regime, derive_seed(seed, 10), 0, num_samples, accelerator)
    captions = [s.caption for s in samples]
    image_embeds, true_embeds, _, layout = clip(pixels, tokens([c.text for c in captions]))
    _, mirror_embeds, _, _ = clip(pixels, tokens([mirrored(c) for c in captions]))
    better = (image_embeds * true_embeds).sum(-1) > (image_embeds * mirror_embeds).sum(-1)
    cells = grid_cells(clip.layout.grid)
    probabilities, colours = layout.softmax(-1).cpu(), [name for name, _ in world.colors]
    placed = [
        layout_relation_holds(
            painted, colours.index(c.first.color) + 1, colours.index(c.second.color) + 1, c.relation, cells
        )
        for painted, c in zip(probabilities, captions)
        if c.relation in PLANAR_AXES
    ]
    return {
        "mirror_accuracy": round(better.float().mean().item(), 4),
        "layout_accuracy": round(float(np.mean(placed)), 4),
    }


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: the VAE
# ----------------------------------------------------------------------------------------------------------------


class VAEWithLoss(nn.Module):
    """The VAE's reconstruction loss in one forward, so that distributed training synchronises its gradients."""

    def __init__(self, vae, kl_weight):
        super().__init__()
        self.vae, self.kl_weight = vae, kl_weight

    def forward(self, pixels, noise):
        posterior = self.vae.encode(pixels).latent_dist
        reconstruction = self.vae.decode(posterior.mean + posterior.std * noise).sample
        kl = posterior.kl().mean() / noise[0].numel()
        loss = F.l1_loss(reconstruction, pixels) + F.mse_loss(reconstruction, pixels) + self.kl_weight * kl
        return loss, kl


def train_vae(args, world, model_config):
    stage_dir = Path(args.output_dir, "training", "vae")
    accelerator = make_accelerator(args, "vae")
    set_seed(args.seed)
    vae = VAEWithLoss(world_vae(world, model_config), args.vae_kl_weight)
    side = world.resolution // 2 ** (len(vae.vae.config.block_out_channels) - 1)
    latent_shape = (vae.vae.config.latent_channels, side, side)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.vae_learning_rate)
    lr_scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=50, num_training_steps=args.vae_steps)
    vae, optimizer, lr_scheduler = accelerator.prepare(vae, optimizer, lr_scheduler)
    start = resume(accelerator, args, stage_dir)
    seed = derive_seed(args.seed, 2)
    progress = tqdm(range(args.vae_steps), initial=start, desc="VAE")
    started = time.perf_counter()
    for step in range(start, args.vae_steps):
        vae.train()
        pixels, _ = world_batch(world, LAION_LIKE, seed, step, args.vae_batch_size, accelerator)
        generator = step_generator(seed, accelerator.process_index, 0, step)
        noise = torch.randn((len(pixels), *latent_shape), generator=generator).to(accelerator.device)
        with accelerator.autocast():
            loss, kl = vae(pixels, noise)
        accelerator.backward(loss)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        end_step(accelerator, args, stage_dir, progress, step + 1, vae_loss=loss.item(), kl=kl.item())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        record_timing(stage_dir, args.vae_steps - start, time.perf_counter() - started)
        vae = accelerator.unwrap_model(vae).vae.eval()
        # SD's recipe: scale latents to unit variance, measured on a fixed sample of the training distribution.
        pixels, _ = world_batch(world, LAION_LIKE, derive_seed(args.seed, 20), 0, 256, accelerator)
        with torch.no_grad():
            spread = vae.encode(pixels).latent_dist.mean.std().item()
        vae.register_to_config(scaling_factor=1.0 / spread)
        vae.save_pretrained(Path(args.output_dir, "vae"))
    accelerator.end_training()


# ----------------------------------------------------------------------------------------------------------------
# Stage 3: the UNet, on LAION-like captions
# ----------------------------------------------------------------------------------------------------------------


def train_unet(args, world, model_config):
    output_dir = Path(args.output_dir)
    stage_dir = output_dir / "training" / "unet"
    accelerator = make_accelerator(args, "unet")
    set_seed(args.seed)
    tokenizer = CLIPTokenizer.from_pretrained(output_dir, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(output_dir, subfolder="text_encoder", use_safetensors=True)
    vae = AutoencoderKL.from_pretrained(output_dir, subfolder="vae", use_safetensors=True)
    noise_scheduler = DDPMScheduler.from_config(world_scheduler().config)
    unet = world_unet(world, model_config, cross_attention_dim=text_encoder.config.hidden_size)
    for frozen in (text_encoder, vae):
        frozen.requires_grad_(False).eval().to(accelerator.device)
    ema_unet = EMAModel(
        unet.parameters(), decay=args.ema_decay, model_cls=UNet2DConditionModel, model_config=unet.config
    )

    # The EMA weights are checkpointed as a diffusers folder (safetensors), as in diffusers' train_text_to_image.py.
    def save_model_hook(models, weights, checkpoint_dir):
        if accelerator.is_main_process:
            ema_unet.save_pretrained(os.path.join(checkpoint_dir, "unet_ema"))

    def load_model_hook(models, checkpoint_dir):
        loaded = EMAModel.from_pretrained(os.path.join(checkpoint_dir, "unet_ema"), UNet2DConditionModel)
        ema_unet.load_state_dict(loaded.state_dict())
        ema_unet.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=0.0)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    ema_unet.to(accelerator.device)
    start = resume(accelerator, args, stage_dir)
    if accelerator.is_main_process:
        accelerator.init_trackers("pretrain_world", config={k: str(v) for k, v in vars(args).items()})

    @torch.no_grad()
    def encode(captions):
        ids = tokenizer(captions, padding="max_length", truncation=True, return_tensors="pt").input_ids
        return text_encoder(ids.to(accelerator.device))[0]

    curve_path = stage_dir / "learning_curve.jsonl"
    eval_unet = None
    scorer = world_scorer("esplora") if accelerator.is_main_process else None

    def evaluate(step, seconds_per_step):
        nonlocal eval_unet
        if eval_unet is None:
            eval_unet = world_unet(world, model_config, cross_attention_dim=text_encoder.config.hidden_size)
        ema_unet.copy_to(eval_unet.parameters())
        pipe = assemble_world_pipeline(vae, text_encoder, tokenizer, eval_unet.to(accelerator.device).eval())
        pipe.set_progress_bar_config(disable=True)
        started = time.perf_counter()
        result = evaluate_world_model(
            pipe,
            num_pairs=args.eval_num_pairs,
            images_per_prompt=args.eval_images_per_prompt,
            num_inference_steps=args.eval_inference_steps,
            guidance_scale=args.eval_guidance_scale,
            seed=args.seed,
            scorer=scorer,
            world=world,
        )
        record = {
            "step": step,
            **{k: round(v, 4) for k, v in result.metrics.items()},
            "seconds_per_step": round(seconds_per_step, 4),
            "eval_seconds": round(time.perf_counter() - started, 1),
            "peak_memory_mb": round(peak_memory_mb(), 1),
        }
        with open(curve_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        samples = stage_dir / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        result.grid().save(samples / f"step-{step:06d}.png")
        plot_learning_curve(curve_path, stage_dir / "learning_curve.png")
        accelerator.log({f"eval/{k}": v for k, v in result.metrics.items()}, step=step)
        logger.info(f"step {step}: {record}")

    seed = derive_seed(args.seed, 3)
    progress = tqdm(range(args.max_train_steps), initial=start, desc="UNet")
    tick, ticks = time.perf_counter(), 0
    started, eval_seconds = tick, 0.0
    for step in range(start, args.max_train_steps):
        unet.train()
        pixels, samples = world_batch(world, LAION_LIKE, seed, step, args.train_batch_size, accelerator)
        generator = step_generator(seed, accelerator.process_index, 0, step)
        drop = torch.rand(len(samples), generator=generator) < args.conditioning_dropout
        captions = ["" if d else s.caption.text for s, d in zip(samples, drop.tolist())]
        with torch.no_grad():
            latent_params = vae.encode(pixels).latent_dist.parameters
        latents = sample_latents(latent_params, generator, vae.config.scaling_factor)
        with accelerator.autocast():
            loss = diffusion_loss(unet, latents, encode(captions), noise_scheduler, generator)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        ema_unet.step(unet.parameters())
        ticks += 1
        done = step + 1
        last = done == args.max_train_steps  # checkpointed too, so that a longer run can continue from it
        end_step(
            accelerator, args, stage_dir, progress, done, last, loss=loss.item(), lr=lr_scheduler.get_last_lr()[0]
        )
        if accelerator.is_main_process and (done % args.eval_steps == 0 or done == args.max_train_steps):
            evaluating = time.perf_counter()
            evaluate(done, (evaluating - tick) / max(ticks, 1))
            eval_seconds += time.perf_counter() - evaluating
            tick, ticks = time.perf_counter(), 0

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        record_timing(stage_dir, args.max_train_steps - start, time.perf_counter() - started - eval_seconds)
        unet = accelerator.unwrap_model(unet)
        ema_unet.copy_to(unet.parameters())
        assemble_world_pipeline(vae, text_encoder, tokenizer, unet).save_pretrained(output_dir)
        world.save(output_dir)
        held_out = output_dir / "training" / "text_encoder" / "eval.json"
        write_world_model_card(
            output_dir,
            args=vars(args),
            curve_path=curve_path,
            model_config=model_config,
            text_encoder_eval=json.loads(held_out.read_text()) if held_out.exists() else None,
        )
        logger.info(f"Saved the world base model to {output_dir}")
    accelerator.end_training()


def main(args):
    process_state()  # the process group first (CPU processes under torchrun included); logging needs it
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    world = WorldConfig(**({"relations": tuple(args.relations)} if args.relations else {}))
    model_config = WorldModelConfig()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    saved = output_dir / "world_config.json"
    if saved.exists() and WorldConfig.load(saved) != world:
        raise SystemExit(f"ERROR: {saved} describes another world; use the same --relations or another --output_dir")
    world.save(output_dir)
    stages = STAGES if args.stage == "all" else (args.stage,)
    for stage in stages:
        if (output_dir / stage / "config.json").exists():
            logger.info(f"Stage {stage}: {output_dir / stage} exists, skipping.")
            continue
        if stage == "unet" and not (output_dir / "text_encoder" / "config.json").exists():
            raise SystemExit("ERROR: the unet stage needs the text_encoder and vae stages first (--stage all)")
        {"text_encoder": train_text_encoder, "vae": train_vae, "unet": train_unet}[stage](args, world, model_config)


if __name__ == "__main__":
    main(parse_args())
