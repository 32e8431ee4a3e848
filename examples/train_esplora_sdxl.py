#!/usr/bin/env python
# Copyright 2026 The diffusers-spatial authors. Licensed under the Apache License, Version 2.0.
"""ESPLoRA for Stable Diffusion XL: LoRA fine-tuning on spatially explicit image-caption pairs.

The interface is diffusers' `examples/text_to_image/train_text_to_image_lora_sdxl.py` (same arguments, checkpoint
layout, output file and model card; two text encoders, SDXL's size / crop micro-conditioning, an optional fp16-safe
VAE), plus what spatial training needs, exactly as in `train_esplora.py`:

- relation-balanced sampling (`--balance_relations`, on by default);
- spatially safe flips (`--random_flip` swaps left/right in the caption, or does not flip);
- `--cache_latents` / `--cache_text_embeddings`: encode once, so a step is the UNet's forward and backward;
- validation on spatial prompts, scored by the spatial metric (per-relation accuracy in the trackers);
- resumable to the bit: a run resumed from `checkpoint-N` ends with the LoRA of an uninterrupted run;
- the dataset is checked before training (missing columns, unreadable images, empty captions), and a NaN loss
  stops the run after saving a checkpoint.

    accelerate launch examples/train_esplora_sdxl.py \\
      --pretrained_model_name_or_path stabilityai/stable-diffusion-xl-base-1.0 \\
      --pretrained_vae_model_name_or_path madebyollin/sdxl-vae-fp16-fix --mixed_precision fp16 \\
      --dataset_name <spatial dataset id or folder> --resolution 1024 --train_batch_size 4 \\
      --max_train_steps 5000 --learning_rate 1e-4 --rank 16 --cache_latents --cache_text_embeddings \\
      --validation_suite sr2d --checkpointing_steps 500 --output_dir esplora-sdxl --seed 0

See docs/training.md for every argument, multi-GPU (DDP / DeepSpeed / FSDP) and the output format.
"""

import argparse
import math

import torch
from accelerate.logging import get_logger
from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from diffusers_spatial.pipelines.families import SDXL
from diffusers_spatial.training import (
    LORA_WEIGHT_NAME,
    NonFiniteLossError,
    TrainingStats,
    add_lora_adapters,
    add_training_arguments,
    check_finite_loss,
    check_training_args,
    diffusion_loss,
    log_validation,
    register_lora_checkpoint_hooks,
    resolve_resume_checkpoint,
    sample_latents,
    save_checkpoint,
    save_lora,
    step_generator,
)
from diffusers_spatial.training.setup import (
    build_caches,
    build_train_data,
    configure_logging,
    load_noise_scheduler,
    log_training_start,
    make_accelerator,
    make_lr_scheduler,
    make_optimizer,
    make_train_dataloader,
    mixed_precision_dtype,
    prepare_dataset,
    prepare_output_dir,
    prepare_validation,
    publish_run,
    resolve_seed,
    resume_position,
)

logger = get_logger(__name__, log_level="INFO")


def parse_args(input_args=None):
    parser = argparse.ArgumentParser(description="ESPLoRA: spatial LoRA training for Stable Diffusion XL.")
    add_training_arguments(parser, default_resolution=1024)
    parser.add_argument(
        "--pretrained_vae_model_name_or_path",
        type=str,
        default=None,
        help="A VAE that is stable in fp16 (e.g. madebyollin/sdxl-vae-fp16-fix). Without it the VAE runs in fp32.",
    )
    args = parser.parse_args(input_args)
    return check_training_args(args)


def encode_prompt(text_encoders, tokenizers, captions):
    """Captions -> (`prompt_embeds`: both encoders' penultimate hidden states, concatenated; `pooled_prompt_embeds`:
    the second encoder's projected output), as `StableDiffusionXLPipeline.encode_prompt` computes them."""
    prompt_embeds_list = []
    for tokenizer, text_encoder in zip(tokenizers, text_encoders):
        input_ids = tokenizer(
            captions, max_length=tokenizer.model_max_length, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids
        output = text_encoder(input_ids.to(next(text_encoder.parameters()).device), output_hidden_states=True)
        pooled_prompt_embeds = output[0]  # the last encoder's (CLIPTextModelWithProjection) text_embeds
        prompt_embeds_list.append(output.hidden_states[-2])
    return torch.cat(prompt_embeds_list, dim=-1), pooled_prompt_embeds


def compute_time_ids(original_sizes, crop_top_lefts, resolution):
    """SDXL's micro-conditioning per sample: original (h, w) + crop (top, left) + target (h, w)."""
    rows = [list(size) + list(crop) + [resolution, resolution] for size, crop in zip(original_sizes, crop_top_lefts)]
    return torch.tensor(rows, dtype=torch.float32)


def main(args):
    accelerator = make_accelerator(args)
    configure_logging(accelerator)
    resume_path = resolve_resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    resolve_seed(args, resume_path)
    repo_id = prepare_output_dir(args, accelerator)

    # Load and check the data first: a broken dataset fails in seconds, before any model is loaded.
    dataset = prepare_dataset(args, accelerator)

    # Load scheduler, tokenizer and models.
    # safetensors only: a checkpoint that ships only pickled .bin weights is refused, never unpickled.
    model_kwargs = {"revision": args.revision, "variant": args.variant, "use_safetensors": True}
    noise_scheduler = load_noise_scheduler(args)
    tokenizers = [
        CLIPTokenizer.from_pretrained(args.pretrained_model_name_or_path, subfolder=name, revision=args.revision)
        for name in ("tokenizer", "tokenizer_2")
    ]
    text_encoder_one = CLIPTextModel.from_pretrained(
        args.pretrained_model_name_or_path, subfolder="text_encoder", **model_kwargs
    )
    text_encoder_two = CLIPTextModelWithProjection.from_pretrained(
        args.pretrained_model_name_or_path, subfolder="text_encoder_2", **model_kwargs
    )
    vae_path = args.pretrained_vae_model_name_or_path or args.pretrained_model_name_or_path
    vae_subfolder = None if args.pretrained_vae_model_name_or_path else "vae"
    vae = AutoencoderKL.from_pretrained(vae_path, subfolder=vae_subfolder, **model_kwargs)
    unet = UNet2DConditionModel.from_pretrained(args.pretrained_model_name_or_path, subfolder="unet", **model_kwargs)
    for model in (unet, vae, text_encoder_one, text_encoder_two):
        model.requires_grad_(False)

    # Frozen weights only run inference: keep them in half precision under mixed precision. SDXL's own VAE
    # overflows in fp16, so it stays in fp32 unless a fixed VAE is given.
    weight_dtype = mixed_precision_dtype(accelerator)
    unet.to(accelerator.device, dtype=weight_dtype)
    vae.to(accelerator.device, dtype=weight_dtype if args.pretrained_vae_model_name_or_path else torch.float32)
    text_encoder_one.to(accelerator.device, dtype=weight_dtype)
    text_encoder_two.to(accelerator.device, dtype=weight_dtype)
    text_encoders = [text_encoder_one, text_encoder_two]

    lora_kwargs = {"rank": args.rank, "alpha": args.lora_alpha, "dropout": args.lora_dropout}
    params_to_optimize = add_lora_adapters(unet, **lora_kwargs)
    trained_text_encoders = {}
    if args.train_text_encoder:
        params_to_optimize += add_lora_adapters(text_encoder_one, **lora_kwargs)
        params_to_optimize += add_lora_adapters(text_encoder_two, **lora_kwargs)
        trained_text_encoders = {"text_encoder": text_encoder_one, "text_encoder_2": text_encoder_two}

    if args.enable_xformers_memory_efficient_attention:
        unet.enable_xformers_memory_efficient_attention()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        for text_encoder in trained_text_encoders.values():
            text_encoder.gradient_checkpointing_enable()
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True

    # `accelerator.save_state` writes the LoRA in diffusers' format instead of pickling the whole UNet.
    register_lora_checkpoint_hooks(accelerator, StableDiffusionXLPipeline, unet, trained_text_encoders)

    optimizer = make_optimizer(args, params_to_optimize, accelerator)
    train_dataset, sampler = build_train_data(args, dataset)

    stats = TrainingStats()
    build_caches(
        args,
        train_dataset,
        accelerator,
        lambda pixels: vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.parameters,
        lambda captions: dict(
            zip(("prompt_embeds", "pooled_prompt_embeds"), encode_prompt(text_encoders, tokenizers, captions))
        ),
        stats,
    )
    train_dataloader = make_train_dataloader(args, train_dataset, sampler)

    # Scheduler and math around the number of training steps.
    lr_scheduler = make_lr_scheduler(args, optimizer, len(train_dataloader), accelerator)

    # Prepare everything with our `accelerator`.
    if args.train_text_encoder:
        unet, text_encoder_one, text_encoder_two, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            unet, text_encoder_one, text_encoder_two, optimizer, train_dataloader, lr_scheduler
        )
        text_encoders = [text_encoder_one, text_encoder_two]
        trained_models = (unet, text_encoder_one, text_encoder_two)
    else:
        unet, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            unet, optimizer, train_dataloader, lr_scheduler
        )
        trained_models = (unet,)
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    args.num_train_epochs = math.ceil(args.max_train_steps / num_update_steps_per_epoch)

    validation_prompts, scorer = prepare_validation(args, accelerator)
    log_training_start(args, accelerator, len(train_dataset))
    global_step, first_epoch, resume_batches = resume_position(
        args, accelerator, resume_path, num_update_steps_per_epoch
    )

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
                        latent_params = batch["latent_params"].to(vae.dtype)
                    else:
                        latent_params = vae.encode(batch["pixel_values"].to(vae.dtype)).latent_dist.parameters
                latents = sample_latents(latent_params, generator, vae.config.scaling_factor).to(weight_dtype)
                if "prompt_embeds" in batch:
                    prompt_embeds = batch["prompt_embeds"].to(weight_dtype)
                    pooled_prompt_embeds = batch["pooled_prompt_embeds"].to(weight_dtype)
                else:
                    prompt_embeds, pooled_prompt_embeds = encode_prompt(text_encoders, tokenizers, batch["captions"])
                time_ids = compute_time_ids(batch["original_size"], batch["crop_top_left"], args.resolution)
                added_cond_kwargs = {
                    "text_embeds": pooled_prompt_embeds,
                    "time_ids": time_ids.to(accelerator.device, dtype=weight_dtype),
                }
                loss = diffusion_loss(
                    unet,
                    latents,
                    prompt_embeds,
                    noise_scheduler,
                    generator,
                    noise_offset=args.noise_offset,
                    snr_gamma=args.snr_gamma,
                    unet_kwargs={"added_cond_kwargs": added_cond_kwargs},
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
            pipeline = StableDiffusionXLPipeline.from_pretrained(
                args.pretrained_model_name_or_path,
                unet=accelerator.unwrap_model(unet),
                text_encoder=accelerator.unwrap_model(text_encoder_one),
                text_encoder_2=accelerator.unwrap_model(text_encoder_two),
                vae=vae,
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
            StableDiffusionXLPipeline,
            accelerator.unwrap_model(unet),
            {name: accelerator.unwrap_model(te) for name, te in trained_text_encoders.items()},
        )
        logger.info(f"Saved the LoRA to {lora_path}")

        # Final inference: a plain pipeline loading the saved file, exactly as a user will.
        if validation_prompts:
            pipeline = StableDiffusionXLPipeline.from_pretrained(
                args.pretrained_model_name_or_path, vae=vae, **model_kwargs
            ).to(accelerator.device)
            for name in ("unet", "text_encoder", "text_encoder_2"):  # the VAE keeps its (fp32-safe) dtype
                getattr(pipeline, name).to(dtype=weight_dtype)
            pipeline.load_lora_weights(args.output_dir, weight_name=LORA_WEIGHT_NAME)
            validation = log_validation(
                pipeline, args, accelerator, validation_prompts, scorer, global_step, weight_dtype, tag="test"
            )
            del pipeline

        publish_run(
            args,
            repo_id=repo_id,
            stats=stats,
            validation=validation,
            family=SDXL,
            mixed_precision=accelerator.mixed_precision,
        )
    accelerator.end_training()


if __name__ == "__main__":
    try:
        main(parse_args())
    except NonFiniteLossError as err:
        raise SystemExit(f"ERROR: {err}") from None
