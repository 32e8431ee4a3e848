#!/usr/bin/env python
# Copyright 2026 The diffusers-spatial authors. Licensed under the Apache License, Version 2.0.
"""ESPLoRA for the flow-matching transformers: LoRA fine-tuning of SD3.x or FLUX.1 on spatial image-caption pairs.

The objective and timestep sampling are those of diffusers' `train_dreambooth_lora_sd3.py` / `_flux.py`
(rectified flow: `noisy = (1 - sigma) * latents + sigma * noise`, velocity target, `--weighting_scheme` with
logit-normal / mode / uniform timestep densities; SD3's output preconditioning; FLUX's packed latents and distilled
guidance), and the LoRA is saved as those scripts save it, so `pipe.load_lora_weights(output_dir)` loads it into a
plain `StableDiffusion3Pipeline` / `FluxPipeline`. The family is read from the base's `model_index.json`.

Everything else is `train_esplora.py`'s: the same arguments and dataset checks, relation-balanced sampling, spatially
safe flips, latent and text-embedding caches (with `--cache_text_embeddings` the text encoders, T5 included, are
freed once the captions are encoded), validation scored by the spatial metric, exact resume, model card.

    accelerate launch examples/train_esplora_flow.py \\
      --pretrained_model_name_or_path stabilityai/stable-diffusion-3.5-medium \\
      --dataset_name <spatial dataset id or folder> --resolution 1024 --train_batch_size 4 \\
      --mixed_precision bf16 --gradient_checkpointing --cache_latents --cache_text_embeddings \\
      --max_train_steps 3000 --learning_rate 1e-4 --rank 16 --checkpointing_steps 500 --output_dir esplora-sd35

See docs/training.md for the memory levers and what fits on which GPU.
"""

import argparse
import math

import diffusers
import torch
from accelerate.logging import get_logger
from diffusers import AutoencoderKL, DiffusionPipeline, FlowMatchEulerDiscreteScheduler, FluxPipeline
from tqdm.auto import tqdm

from diffusers_spatial.pipelines.families import FLUX, SD3, family_named
from diffusers_spatial.training import (
    LORA_WEIGHT_NAME,
    NonFiniteLossError,
    TrainingStats,
    add_lora_adapters,
    add_training_arguments,
    check_finite_loss,
    check_training_args,
    flow_matching_loss,
    log_validation,
    register_lora_checkpoint_hooks,
    resolve_resume_checkpoint,
    sample_flow_sigmas,
    sample_latents,
    save_checkpoint,
    save_lora,
    step_generator,
)
from diffusers_spatial.training.loss import WEIGHTING_SCHEMES
from diffusers_spatial.training.setup import (
    build_caches,
    build_train_data,
    configure_logging,
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

# Per family, what diffusers' own LoRA script uses when the flag is not given.
FAMILY_DEFAULTS = {
    SD3: {"weighting_scheme": "logit_normal", "precondition_outputs": 1, "max_sequence_length": 77},
    FLUX: {"weighting_scheme": "none", "precondition_outputs": 0, "max_sequence_length": 512},
}


def parse_args(input_args=None):
    parser = argparse.ArgumentParser(description="ESPLoRA: spatial LoRA training for SD3.x and FLUX.1.")
    add_training_arguments(parser, default_resolution=1024)
    flow = parser.add_argument_group("flow matching (defaults: those of diffusers' script for the family)")
    flow.add_argument(
        "--weighting_scheme", choices=WEIGHTING_SCHEMES, default=None, help="SD3: logit_normal; FLUX: none."
    )
    flow.add_argument("--logit_mean", type=float, default=0.0, help="Mean of the logit-normal timestep density.")
    flow.add_argument("--logit_std", type=float, default=1.0, help="Std of the logit-normal timestep density.")
    flow.add_argument("--mode_scale", type=float, default=1.29, help="Scale of the 'mode' timestep density.")
    flow.add_argument(
        "--precondition_outputs", type=int, choices=(0, 1), default=None, help="SD3: 1 (as diffusers); FLUX: 0."
    )
    flow.add_argument(
        "--guidance_scale", type=float, default=3.5, help="FLUX.1 [dev]'s distilled guidance while training."
    )
    flow.add_argument("--max_sequence_length", type=int, default=None, help="T5 tokens. SD3: 77; FLUX: 512.")
    args = check_training_args(parser.parse_args(input_args))
    if args.train_text_encoder:
        raise ValueError("--train_text_encoder: text-encoder LoRA is not supported for SD3.x / FLUX.1 yet")
    if args.snr_gamma is not None or args.prediction_type is not None:
        raise ValueError("--snr_gamma / --prediction_type are DDPM options; flow matching uses --weighting_scheme")
    if args.max_sequence_length is not None and args.max_sequence_length < 1:
        raise ValueError(f"--max_sequence_length must be >= 1, got {args.max_sequence_length}")
    return args


def resolve_family(args):
    """The base's family (SD3.x or FLUX.1) and its defaults filled into `args`."""
    index = DiffusionPipeline.load_config(args.pretrained_model_name_or_path, revision=args.revision)
    family = family_named(index.get("_class_name"))
    if family not in FAMILY_DEFAULTS:
        raise ValueError(
            f"{args.pretrained_model_name_or_path} is a {index.get('_class_name')!r}: this script trains SD3.x "
            "(StableDiffusion3Pipeline) and FLUX.1 (FluxPipeline) bases; SD 1.x / 2.x and SDXL have "
            "train_esplora.py and train_esplora_sdxl.py"
        )
    for name, value in FAMILY_DEFAULTS[family].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return family, getattr(diffusers, family.pipeline_class), getattr(diffusers, index["transformer"][1])


def encode_captions(text_pipeline, family, captions, max_sequence_length, device):
    """Captions -> {"prompt_embeds", "pooled_prompt_embeds"}, computed by the pipeline's own `encode_prompt`."""
    with torch.no_grad():
        if family is SD3:
            prompt_embeds, _, pooled, _ = text_pipeline.encode_prompt(
                captions,
                None,
                None,
                device=device,
                do_classifier_free_guidance=False,
                max_sequence_length=max_sequence_length,
            )
        else:
            prompt_embeds, pooled, _ = text_pipeline.encode_prompt(
                captions, None, device=device, max_sequence_length=max_sequence_length
            )
    return {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled}


def predict(transformer, family, noisy_latents, timesteps, prompt_embeds, pooled, guidance_scale):
    """The transformer's velocity prediction for latents of shape (B, C, h, w), in that shape."""
    if family is SD3:
        return transformer(
            hidden_states=noisy_latents,
            timestep=timesteps,
            encoder_hidden_states=prompt_embeds,
            pooled_projections=pooled,
            return_dict=False,
        )[0]
    # FLUX: 2 x 2 latent patches are tokens, with (row, column) position ids; its timestep is in [0, 1].
    batch, channels, height, width = noisy_latents.shape
    packed = FluxPipeline._pack_latents(noisy_latents, batch, channels, height, width)
    image_ids = FluxPipeline._prepare_latent_image_ids(
        batch, height // 2, width // 2, noisy_latents.device, noisy_latents.dtype
    )
    text_ids = torch.zeros(prompt_embeds.shape[1], 3, device=noisy_latents.device, dtype=noisy_latents.dtype)
    config = getattr(transformer, "module", transformer).config
    guidance = None
    if config.guidance_embeds:
        guidance = torch.full((batch,), guidance_scale, device=noisy_latents.device, dtype=torch.float32)
    prediction = transformer(
        hidden_states=packed,
        timestep=timesteps / 1000,
        guidance=guidance,
        pooled_projections=pooled,
        encoder_hidden_states=prompt_embeds,
        txt_ids=text_ids,
        img_ids=image_ids,
        return_dict=False,
    )[0]
    # `_unpack_latents` takes the image size in pixels; with a scale factor of 1 that is the latent size.
    return FluxPipeline._unpack_latents(prediction, height=height, width=width, vae_scale_factor=1)


def main(args):
    accelerator = make_accelerator(args)
    configure_logging(accelerator)
    resume_path = resolve_resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    resolve_seed(args, resume_path)
    repo_id = prepare_output_dir(args, accelerator)

    # Load and check the data first: a broken dataset fails in seconds, before any model is loaded.
    dataset = prepare_dataset(args, accelerator)
    family, pipeline_cls, transformer_cls = resolve_family(args)

    # safetensors only: a checkpoint that ships only pickled .bin weights is refused, never unpickled.
    model_kwargs = {"revision": args.revision, "variant": args.variant, "use_safetensors": True}
    base = args.pretrained_model_name_or_path
    noise_scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(
        base, subfolder="scheduler", revision=args.revision
    )
    # The text side is the pipeline itself without transformer and VAE: prompts are encoded exactly as at inference.
    text_pipeline = pipeline_cls.from_pretrained(base, transformer=None, vae=None, **model_kwargs)
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae", **model_kwargs)
    transformer = transformer_cls.from_pretrained(base, subfolder="transformer", **model_kwargs)
    text_encoders = [m for name, m in text_pipeline.components.items() if name.startswith("text_encoder") and m]
    for model in (transformer, vae, *text_encoders):
        model.requires_grad_(False)

    # Frozen weights only run inference: keep them in half precision under mixed precision (the VAE in float32,
    # as diffusers' SD3 / FLUX scripts do).
    weight_dtype = mixed_precision_dtype(accelerator)
    transformer.to(accelerator.device, dtype=weight_dtype)
    vae.to(accelerator.device, dtype=torch.float32)
    text_pipeline.to(accelerator.device, dtype=weight_dtype)

    lora_kwargs = {"rank": args.rank, "alpha": args.lora_alpha, "dropout": args.lora_dropout}
    params_to_optimize = add_lora_adapters(transformer, target_modules=family.lora_target_modules, **lora_kwargs)
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True

    # `accelerator.save_state` writes the LoRA in the family's format instead of pickling the whole transformer.
    register_lora_checkpoint_hooks(accelerator, pipeline_cls, transformer)

    optimizer = make_optimizer(args, params_to_optimize, accelerator)
    train_dataset, sampler = build_train_data(args, dataset)

    def encode(captions):
        return encode_captions(text_pipeline, family, captions, args.max_sequence_length, accelerator.device)

    stats = TrainingStats()
    build_caches(
        args,
        train_dataset,
        accelerator,
        lambda pixels: vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.parameters,
        encode,
        stats,
    )
    if args.cache_text_embeddings:  # every caption is encoded: the text encoders (T5: most of the memory) can go
        text_pipeline = None
        del text_encoders
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    train_dataloader = make_train_dataloader(args, train_dataset, sampler)
    lr_scheduler = make_lr_scheduler(args, optimizer, len(train_dataloader), accelerator)

    transformer, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        transformer, optimizer, train_dataloader, lr_scheduler
    )
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

    def validation_pipeline():
        pipeline = pipeline_cls.from_pretrained(
            base, transformer=accelerator.unwrap_model(transformer), vae=vae, **model_kwargs
        )
        return pipeline.to(accelerator.device)

    progress_bar = tqdm(
        range(args.max_train_steps),
        initial=global_step,
        desc="Steps",
        disable=not accelerator.is_local_main_process,
    )
    validation = None
    for epoch in range(first_epoch, args.num_train_epochs):
        transformer.train()
        # Every random choice is a function of (seed, epoch, position): a resumed epoch replays exactly.
        train_dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        train_dataloader.set_epoch(epoch)
        skip = resume_batches if epoch == first_epoch else 0
        epoch_loader = accelerator.skip_first_batches(train_dataloader, skip) if skip else train_dataloader
        train_loss = 0.0
        stats.start()
        for batch_index, batch in enumerate(epoch_loader, start=skip):
            with accelerator.accumulate(transformer):
                generator = step_generator(args.seed, accelerator.process_index, epoch, batch_index)
                with torch.no_grad():
                    if "latent_params" in batch:
                        latent_params = batch["latent_params"].to(vae.dtype)
                    else:
                        latent_params = vae.encode(batch["pixel_values"].to(vae.dtype)).latent_dist.parameters
                latents = sample_latents(
                    latent_params, generator, vae.config.scaling_factor, vae.config.shift_factor
                ).to(weight_dtype)
                if "prompt_embeds" in batch:
                    prompt_embeds = batch["prompt_embeds"].to(weight_dtype)
                    pooled = batch["pooled_prompt_embeds"].to(weight_dtype)
                else:
                    prompt_embeds, pooled = encode(batch["captions"]).values()

                noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
                timesteps, sigmas = sample_flow_sigmas(
                    noise_scheduler,
                    len(latents),
                    generator,
                    weighting_scheme=args.weighting_scheme,
                    logit_mean=args.logit_mean,
                    logit_std=args.logit_std,
                    mode_scale=args.mode_scale,
                )
                timesteps = timesteps.to(latents.device)
                sigma = sigmas.to(latents.device, latents.dtype).view(-1, 1, 1, 1)
                noisy_latents = (1.0 - sigma) * latents + sigma * noise
                model_pred = predict(
                    transformer, family, noisy_latents, timesteps, prompt_embeds, pooled, args.guidance_scale
                )
                loss = flow_matching_loss(
                    model_pred,
                    latents,
                    noise,
                    noisy_latents,
                    sigmas,
                    weighting_scheme=args.weighting_scheme,
                    precondition_outputs=bool(args.precondition_outputs),
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
            validation = log_validation(
                validation_pipeline(), args, accelerator, validation_prompts, scorer, global_step, weight_dtype
            )

    # Save the LoRA layers.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        lora_path = save_lora(args.output_dir, pipeline_cls, accelerator.unwrap_model(transformer))
        logger.info(f"Saved the LoRA to {lora_path}")

        # Final inference: a plain pipeline loading the saved file, exactly as a user will.
        if validation_prompts:
            pipeline = pipeline_cls.from_pretrained(base, **model_kwargs).to(accelerator.device, dtype=weight_dtype)
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
            family=family,
            mixed_precision=accelerator.mixed_precision,
        )
    accelerator.end_training()


if __name__ == "__main__":
    try:
        main(parse_args())
    except NonFiniteLossError as err:
        raise SystemExit(f"ERROR: {err}") from None
