#!/usr/bin/env python
# Copyright 2026 The diffusers-spatial authors. Licensed under the Apache License, Version 2.0.
"""ESPLoRA: LoRA fine-tuning of Stable Diffusion 1.x / 2.x on spatially explicit image-caption pairs.

The interface is diffusers' `examples/text_to_image/train_text_to_image_lora.py` (same arguments, checkpoint
layout, output file and model card), plus what spatial training needs:

- relation-balanced sampling (`--balance_relations`, on by default);
- spatially safe flips (`--random_flip` swaps left/right in the caption, or does not flip);
- `--cache_latents` / `--cache_text_embeddings`: encode once, so a step is the UNet's forward and backward;
- validation on spatial prompts, scored by the spatial metric (per-relation accuracy in the trackers);
- resumable to the bit: a run resumed from `checkpoint-N` ends with the LoRA of an uninterrupted run;
- the dataset is checked before training (missing columns, unreadable images, empty captions), and a NaN loss
  stops the run after saving a checkpoint.

    accelerate launch examples/train_esplora.py \\
      --pretrained_model_name_or_path stable-diffusion-v1-5/stable-diffusion-v1-5 \\
      --dataset_name <spatial dataset id or folder> --resolution 512 --train_batch_size 8 \\
      --max_train_steps 5000 --learning_rate 1e-4 --rank 16 --cache_latents --cache_text_embeddings \\
      --validation_suite sr2d --checkpointing_steps 500 --output_dir esplora-sd15 --seed 0

See docs/training.md for every argument, multi-GPU (DDP / DeepSpeed / FSDP) and the output format.
"""

import argparse
import logging
import math
import os
import random
import time
from pathlib import Path

import datasets
import diffusers
import torch
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.utils import is_wandb_available
from huggingface_hub import create_repo, upload_folder
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from diffusers_spatial.training import (
    LORA_WEIGHT_NAME,
    NonFiniteLossError,
    SpatialTrainDataset,
    TrainingStats,
    TransformConfig,
    add_lora_adapters,
    add_training_arguments,
    build_latent_cache,
    build_text_embedding_cache,
    build_training_sampler,
    check_finite_loss,
    check_training_args,
    collate_training_batch,
    diffusion_loss,
    load_training_dataset,
    load_validation_prompts,
    load_validation_scorer,
    log_validation,
    read_training_state,
    register_lora_checkpoint_hooks,
    resolve_resume_checkpoint,
    sample_latents,
    save_checkpoint,
    save_lora,
    save_model_card,
    step_generator,
    validate_training_dataset,
)

logger = get_logger(__name__, log_level="INFO")


def parse_args(input_args=None):
    parser = argparse.ArgumentParser(description="ESPLoRA: spatial LoRA training for Stable Diffusion 1.x / 2.x.")
    add_training_arguments(parser, default_resolution=512)
    args = parser.parse_args(input_args)
    return check_training_args(args)


def encode_prompt(text_encoder, tokenizer, captions):
    """Captions -> the UNet's `encoder_hidden_states` (the last hidden state of CLIP, as in SD 1.x / 2.x)."""
    input_ids = tokenizer(
        captions, max_length=tokenizer.model_max_length, padding="max_length", truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(input_ids.to(next(text_encoder.parameters()).device), return_dict=False)[0]


def main(args):
    logging_dir = Path(args.output_dir, args.logging_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=logging_dir),
    )
    if args.report_to == "wandb" and not is_wandb_available():
        raise ImportError("Make sure to install wandb if you want to use it for logging during training.")

    # Make one log on every process with the configuration for debugging.
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO
    )
    logger.info(accelerator.state, main_process_only=False)
    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        transformers.utils.logging.set_verbosity_warning()
        diffusers.utils.logging.set_verbosity_info()
    else:
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.set_verbosity_error()

    # A resumed run keeps the seed of the run it continues (everything random is derived from it).
    resume_path = resolve_resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if args.seed is None:
        args.seed = read_training_state(resume_path).get("seed") if resume_path else None
        if args.seed is None:
            args.seed = random.SystemRandom().randrange(2**31)
        logger.info(f"No --seed given: using seed {args.seed}.")
    set_seed(args.seed)

    repo_id = None
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        if args.push_to_hub:
            repo_id = create_repo(
                repo_id=args.hub_model_id or Path(args.output_dir).name, exist_ok=True, token=args.hub_token
            ).repo_id

    # Load and check the data first: a broken dataset fails in seconds, before any model is loaded.
    with accelerator.main_process_first():
        dataset = load_training_dataset(
            args.dataset_name,
            dataset_config_name=args.dataset_config_name,
            train_data_dir=args.train_data_dir,
            cache_dir=args.cache_dir,
        )
        if args.max_train_samples is not None:
            dataset = dataset.shuffle(seed=args.seed).select(range(min(args.max_train_samples, len(dataset))))
    validate_training_dataset(
        dataset,
        args.image_column,
        args.caption_column,
        check_images=not args.skip_image_validation,
        accelerator=accelerator,
        source=args.dataset_name or args.train_data_dir,
    )

    # Load scheduler, tokenizer and models.
    model_kwargs = {"revision": args.revision, "variant": args.variant}
    noise_scheduler = DDPMScheduler.from_pretrained(args.pretrained_model_name_or_path, subfolder="scheduler")
    if args.prediction_type is not None:
        noise_scheduler.register_to_config(prediction_type=args.prediction_type)
    tokenizer = CLIPTokenizer.from_pretrained(
        args.pretrained_model_name_or_path, subfolder="tokenizer", revision=args.revision
    )
    text_encoder = CLIPTextModel.from_pretrained(
        args.pretrained_model_name_or_path, subfolder="text_encoder", **model_kwargs
    )
    vae = AutoencoderKL.from_pretrained(args.pretrained_model_name_or_path, subfolder="vae", **model_kwargs)
    unet = UNet2DConditionModel.from_pretrained(args.pretrained_model_name_or_path, subfolder="unet", **model_kwargs)
    for model in (unet, vae, text_encoder):
        model.requires_grad_(False)

    # Frozen weights only run inference: keep them in half precision under mixed precision.
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    unet.to(accelerator.device, dtype=weight_dtype)
    vae.to(accelerator.device, dtype=weight_dtype)
    text_encoder.to(accelerator.device, dtype=weight_dtype)

    lora_kwargs = {"rank": args.rank, "alpha": args.lora_alpha, "dropout": args.lora_dropout}
    params_to_optimize = add_lora_adapters(unet, **lora_kwargs)
    trained_text_encoders = {}
    if args.train_text_encoder:
        params_to_optimize += add_lora_adapters(text_encoder, **lora_kwargs)
        trained_text_encoders["text_encoder"] = text_encoder

    if args.enable_xformers_memory_efficient_attention:
        unet.enable_xformers_memory_efficient_attention()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if args.train_text_encoder:
            text_encoder.gradient_checkpointing_enable()
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True

    # `accelerator.save_state` writes the LoRA in diffusers' format instead of pickling the whole UNet.
    register_lora_checkpoint_hooks(accelerator, StableDiffusionPipeline, unet, trained_text_encoders)

    if args.scale_lr:
        args.learning_rate *= args.gradient_accumulation_steps * args.train_batch_size * accelerator.num_processes
    if args.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError as err:
            raise ImportError("To use 8-bit Adam, install bitsandbytes: `pip install bitsandbytes`.") from err
        optimizer_cls = bnb.optim.AdamW8bit
    else:
        optimizer_cls = torch.optim.AdamW
    optimizer = optimizer_cls(
        params_to_optimize,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )

    transform = TransformConfig(resolution=args.resolution, center_crop=args.center_crop, random_flip=args.random_flip)
    train_dataset = SpatialTrainDataset(dataset, args.image_column, args.caption_column, transform, seed=args.seed)
    sampler, balance = build_training_sampler(dataset, args.caption_column, args.balance_relations, args.seed)
    if balance is not None:
        logger.info(f"Relation-balanced sampling: {balance}")

    stats = TrainingStats()
    if args.cache_latents or args.cache_text_embeddings:
        started = time.perf_counter()
        if args.cache_latents:
            train_dataset.latent_cache = build_latent_cache(
                train_dataset,
                lambda pixels: vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.parameters,
                batch_size=args.cache_batch_size,
                accelerator=accelerator,
            )
            logger.info(f"Latent cache: {train_dataset.latent_cache.nbytes / 2**20:.1f} MiB")
        if args.cache_text_embeddings:
            train_dataset.text_cache = build_text_embedding_cache(
                train_dataset.all_captions(),
                lambda captions: {"prompt_embeds": encode_prompt(text_encoder, tokenizer, captions)},
                batch_size=args.cache_batch_size,
                accelerator=accelerator,
            )
            logger.info(f"Text-embedding cache: {train_dataset.text_cache.nbytes / 2**20:.1f} MiB")
        stats.cache_seconds = time.perf_counter() - started

    train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        sampler=sampler,
        collate_fn=collate_training_batch,
        batch_size=args.train_batch_size,
        num_workers=args.dataloader_num_workers,
    )

    # Scheduler and math around the number of training steps.
    num_update_steps_per_epoch = math.ceil(
        math.ceil(len(train_dataloader) / accelerator.num_processes) / args.gradient_accumulation_steps
    )
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * num_update_steps_per_epoch
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )

    # Prepare everything with our `accelerator`.
    if args.train_text_encoder:
        unet, text_encoder, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            unet, text_encoder, optimizer, train_dataloader, lr_scheduler
        )
        trained_models = (unet, text_encoder)
    else:
        unet, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            unet, optimizer, train_dataloader, lr_scheduler
        )
        trained_models = (unet,)
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    args.num_train_epochs = math.ceil(args.max_train_steps / num_update_steps_per_epoch)

    validation_prompts = load_validation_prompts(
        args.validation_prompt, args.validation_prompts, args.validation_suite, args.validation_num_pairs, args.seed
    )
    scorer = None
    if accelerator.is_main_process:
        if validation_prompts:
            scorer = load_validation_scorer(args.validation_scoring, args.validation_protocol)
        tracker_config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in vars(args).items()}
        accelerator.init_trackers("esplora", config=tracker_config)

    total_batch_size = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training *****")
    logger.info(f"  Num examples = {len(train_dataset)}")
    logger.info(f"  Num Epochs = {args.num_train_epochs}")
    logger.info(f"  Instantaneous batch size per device = {args.train_batch_size}")
    logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch_size}")
    logger.info(f"  Gradient Accumulation steps = {args.gradient_accumulation_steps}")
    logger.info(f"  Total optimization steps = {args.max_train_steps}")

    global_step, first_epoch, resume_batches = 0, 0, 0
    if args.resume_from_checkpoint and resume_path is None:
        logger.info(f"Checkpoint '{args.resume_from_checkpoint}' does not exist. Starting a new training run.")
    elif resume_path is not None:
        logger.info(f"Resuming from checkpoint {resume_path}")
        accelerator.load_state(os.fspath(resume_path))
        global_step = read_training_state(resume_path).get("global_step", int(resume_path.name.split("-")[1]))
        first_epoch = global_step // num_update_steps_per_epoch
        resume_batches = (global_step % num_update_steps_per_epoch) * args.gradient_accumulation_steps

    def checkpoint(epoch):
        state = {"epoch": epoch, "seed": args.seed}
        path = save_checkpoint(accelerator, args.output_dir, global_step, state, args.checkpoints_total_limit)
        logger.info(f"Saved state to {path}")
        return path

    progress_bar = tqdm(
        range(args.max_train_steps),
        initial=global_step,
        desc="Steps",
        disable=not accelerator.is_local_main_process,
    )
    validation = None
    for epoch in range(first_epoch, args.num_train_epochs):
        for model in trained_models:
            model.train()
        # Every random choice is a function of (seed, epoch, position): a resumed epoch replays exactly.
        train_dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        train_dataloader.set_epoch(epoch)
        skip = resume_batches if epoch == first_epoch else 0
        epoch_loader = accelerator.skip_first_batches(train_dataloader, skip) if skip else train_dataloader
        train_loss = 0.0
        stats.start()
        for batch_index, batch in enumerate(epoch_loader, start=skip):
            with accelerator.accumulate(*trained_models):
                generator = step_generator(args.seed, accelerator.process_index, epoch, batch_index)
                with torch.no_grad():
                    if "latent_params" in batch:
                        latent_params = batch["latent_params"].to(weight_dtype)
                    else:
                        latent_params = vae.encode(batch["pixel_values"].to(weight_dtype)).latent_dist.parameters
                latents = sample_latents(latent_params, generator, vae.config.scaling_factor)
                if "prompt_embeds" in batch:
                    encoder_hidden_states = batch["prompt_embeds"].to(weight_dtype)
                else:
                    encoder_hidden_states = encode_prompt(text_encoder, tokenizer, batch["captions"])
                loss = diffusion_loss(
                    unet,
                    latents,
                    encoder_hidden_states,
                    noise_scheduler,
                    generator,
                    noise_offset=args.noise_offset,
                    snr_gamma=args.snr_gamma,
                )

                # Gather the losses across all processes for logging; a NaN anywhere stops every process.
                avg_loss = accelerator.gather(loss.detach().repeat(len(batch["captions"]))).mean().item()
                if not math.isfinite(avg_loss):
                    saved = checkpoint(epoch)
                    accelerator.end_training()
                    check_finite_loss(avg_loss, step=global_step, epoch=epoch, checkpoint=saved)
                train_loss += avg_loss / args.gradient_accumulation_steps
                stats.samples_seen += len(batch["captions"]) * accelerator.num_processes

                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params_to_optimize, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()

            if accelerator.sync_gradients:
                progress_bar.update(1)
                global_step += 1
                stats.step(global_step, train_loss)
                accelerator.log({"train_loss": train_loss, "lr": lr_scheduler.get_last_lr()[0]}, step=global_step)
                train_loss = 0.0
                if global_step % args.checkpointing_steps == 0:
                    checkpoint(epoch)
                stats.start()
            progress_bar.set_postfix(step_loss=loss.detach().item(), lr=lr_scheduler.get_last_lr()[0])
            if global_step >= args.max_train_steps:
                break

        if accelerator.is_main_process and validation_prompts and (epoch + 1) % args.validation_epochs == 0:
            pipeline = StableDiffusionPipeline.from_pretrained(
                args.pretrained_model_name_or_path,
                unet=accelerator.unwrap_model(unet),
                text_encoder=accelerator.unwrap_model(text_encoder),
                vae=vae,
                tokenizer=tokenizer,
                safety_checker=None,
                **model_kwargs,
            )
            validation = log_validation(
                pipeline, args, accelerator, validation_prompts, scorer, global_step, weight_dtype
            )
            del pipeline

    # Save the LoRA layers.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        lora_path = save_lora(
            args.output_dir,
            StableDiffusionPipeline,
            accelerator.unwrap_model(unet),
            {name: accelerator.unwrap_model(te) for name, te in trained_text_encoders.items()},
        )
        logger.info(f"Saved the LoRA to {lora_path}")

        # Final inference: a plain pipeline loading the saved file, exactly as a user will.
        if validation_prompts:
            pipeline = StableDiffusionPipeline.from_pretrained(
                args.pretrained_model_name_or_path, safety_checker=None, **model_kwargs
            ).to(accelerator.device, dtype=weight_dtype)
            pipeline.load_lora_weights(args.output_dir, weight_name=LORA_WEIGHT_NAME)
            validation = log_validation(
                pipeline, args, accelerator, validation_prompts, scorer, global_step, weight_dtype, tag="test"
            )
            del pipeline

        stats.write(args.output_dir, validation=validation.metrics if validation is not None else None)
        save_model_card(
            args.output_dir,
            repo_id=repo_id or Path(args.output_dir).name,
            base_model=args.pretrained_model_name_or_path,
            dataset_name=args.dataset_name or args.train_data_dir,
            validation=validation,
            train_text_encoder=args.train_text_encoder,
            sdxl=False,
            training_args=args,
        )
        if args.push_to_hub:
            upload_folder(
                repo_id=repo_id,
                folder_path=args.output_dir,
                commit_message="End of training",
                ignore_patterns=["step_*", "epoch_*", "checkpoint-*", "logs/*"],
                token=args.hub_token,
            )
    accelerator.end_training()


if __name__ == "__main__":
    try:
        main(parse_args())
    except NonFiniteLossError as err:
        raise SystemExit(f"ERROR: {err}") from None
