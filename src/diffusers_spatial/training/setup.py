"""The model-independent steps around an ESPLoRA script's training loop.

`examples/train_esplora.py` and `examples/train_esplora_sdxl.py` call these in the order diffusers' LoRA examples
run them; what differs between the models (loading, prompt encoding, the loop itself) stays in the scripts.

- before the loop: `make_accelerator`, `configure_logging`, `resolve_seed`, `prepare_output_dir`, `prepare_dataset`,
  `load_noise_scheduler`, `mixed_precision_dtype`, `make_optimizer`, `build_train_data`, `build_caches`,
  `make_train_dataloader`, `make_lr_scheduler`, `prepare_validation`, `log_training_start`, `resume_position`;
- after it: `publish_run` (training summary, model card, Hub upload).

Examples:

```py
>>> from diffusers_spatial.training.setup import mixed_precision_dtype
>>> from types import SimpleNamespace
>>> mixed_precision_dtype(SimpleNamespace(mixed_precision="bf16"))
torch.bfloat16

```
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets
import diffusers
import torch
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.utils import is_wandb_available

from ..pipelines.families import SD, ModelFamily
from .cache import build_latent_cache, build_text_embedding_cache
from .checkpoints import read_training_state
from .data import load_training_dataset, validate_training_dataset
from .model_card import save_model_card
from .sampler import build_training_sampler
from .stats import TrainingStats
from .train_dataset import SpatialTrainDataset, collate_training_batch
from .transforms import TransformConfig
from .validation import load_validation_prompts, load_validation_scorer

__all__ = [
    "build_caches",
    "build_train_data",
    "configure_logging",
    "log_training_start",
    "load_noise_scheduler",
    "make_accelerator",
    "make_lr_scheduler",
    "make_optimizer",
    "make_train_dataloader",
    "mixed_precision_dtype",
    "prepare_dataset",
    "prepare_output_dir",
    "prepare_validation",
    "publish_run",
    "resolve_seed",
    "resume_position",
]

logger = get_logger(__name__, log_level="INFO")


def make_accelerator(args) -> Accelerator:
    """The run's `Accelerator`: gradient accumulation, mixed precision, trackers, logs under `output_dir`."""
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=Path(args.output_dir, args.logging_dir)
        ),
    )
    if args.report_to == "wandb" and not is_wandb_available():
        raise ImportError("Make sure to install wandb if you want to use it for logging during training.")
    return accelerator


def configure_logging(accelerator: Accelerator) -> None:
    """One log line per process with the distributed configuration; library logs only on the local main process."""
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


def resolve_seed(args, resume_path: Path | None) -> int:
    """Set `args.seed` (if None: the resumed run's seed, else a fresh random one) and seed every RNG with it.

    A resumed run keeps the seed of the run it continues, since everything random is derived from it.
    """
    if args.seed is None:
        args.seed = read_training_state(resume_path).get("seed") if resume_path else None
        if args.seed is None:
            args.seed = random.SystemRandom().randrange(2**31)
        logger.info(f"No --seed given: using seed {args.seed}.")
    set_seed(args.seed)
    return args.seed


def prepare_output_dir(args, accelerator: Accelerator) -> str | None:
    """Create `args.output_dir` (and the Hub repo with `--push_to_hub`) on the main process; return the repo id."""
    if not accelerator.is_main_process:
        return None
    os.makedirs(args.output_dir, exist_ok=True)
    if not args.push_to_hub:
        return None
    from huggingface_hub import create_repo

    return create_repo(
        repo_id=args.hub_model_id or Path(args.output_dir).name, exist_ok=True, token=args.hub_token
    ).repo_id


def prepare_dataset(args, accelerator: Accelerator) -> datasets.Dataset:
    """Load the training dataset (`--max_train_samples` applied) and check it, so a broken one fails in seconds.

    Raises:
        DatasetValidationError: missing columns, unreadable images or empty captions (every process raises).
    """
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
    return dataset


def load_noise_scheduler(args) -> DDPMScheduler:
    """The training noise scheduler (DDPM) of the base model, with `--prediction_type` applied when given."""
    noise_scheduler = DDPMScheduler.from_pretrained(args.pretrained_model_name_or_path, subfolder="scheduler")
    if args.prediction_type is not None:
        noise_scheduler.register_to_config(prediction_type=args.prediction_type)
    return noise_scheduler


def mixed_precision_dtype(accelerator) -> torch.dtype:
    """The dtype of the frozen weights: half precision under fp16 / bf16 mixed precision, else float32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def make_optimizer(args, params_to_optimize: list, accelerator: Accelerator) -> torch.optim.Optimizer:
    """AdamW (8-bit with `--use_8bit_adam`) over the LoRA parameters; `--scale_lr` scales `args.learning_rate`."""
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
    return optimizer_cls(
        params_to_optimize,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )


def build_train_data(args, dataset) -> tuple[SpatialTrainDataset, torch.utils.data.Sampler]:
    """The training `Dataset` (spatially safe transforms) and its sampler (relation-balanced unless disabled)."""
    transform = TransformConfig(
        resolution=args.resolution,
        center_crop=args.center_crop,
        random_flip=args.random_flip,
        interpolation=args.image_interpolation_mode,
    )
    train_dataset = SpatialTrainDataset(dataset, args.image_column, args.caption_column, transform, seed=args.seed)
    sampler, balance = build_training_sampler(dataset, args.caption_column, args.balance_relations, args.seed)
    if balance is not None:
        logger.info(f"Relation-balanced sampling: {balance}")
    return train_dataset, sampler


def build_caches(
    args,
    train_dataset: SpatialTrainDataset,
    accelerator: Accelerator,
    encode_pixels: Callable[[torch.Tensor], torch.Tensor],
    encode_captions: Callable[[list[str]], dict[str, torch.Tensor]],
    stats: TrainingStats,
) -> None:
    """Fill `train_dataset`'s latent / text-embedding caches as `--cache_latents` / `--cache_text_embeddings` ask.

    Args:
        encode_pixels: pixel batch -> the VAE's latent distribution parameters.
        encode_captions: captions -> the named text embeddings the UNet takes (e.g. `{"prompt_embeds": ...}`).
        stats: receives the caching time (`cache_seconds`).
    """
    if not (args.cache_latents or args.cache_text_embeddings):
        return
    started = time.perf_counter()
    if args.cache_latents:
        train_dataset.latent_cache = build_latent_cache(
            train_dataset, encode_pixels, batch_size=args.cache_batch_size, accelerator=accelerator
        )
        logger.info(f"Latent cache: {train_dataset.latent_cache.nbytes / 2**20:.1f} MiB")
    if args.cache_text_embeddings:
        train_dataset.text_cache = build_text_embedding_cache(
            train_dataset.all_captions(), encode_captions, batch_size=args.cache_batch_size, accelerator=accelerator
        )
        logger.info(f"Text-embedding cache: {train_dataset.text_cache.nbytes / 2**20:.1f} MiB")
    stats.cache_seconds = time.perf_counter() - started


def make_train_dataloader(args, train_dataset: SpatialTrainDataset, sampler) -> torch.utils.data.DataLoader:
    """The training `DataLoader` over `train_dataset`, drawing indices from `sampler`."""
    return torch.utils.data.DataLoader(
        train_dataset,
        sampler=sampler,
        collate_fn=collate_training_batch,
        batch_size=args.train_batch_size,
        num_workers=args.dataloader_num_workers,
    )


def make_lr_scheduler(args, optimizer, num_batches: int, accelerator: Accelerator):
    """diffusers' learning-rate scheduler; sets `args.max_train_steps` from the epochs when it is not given.

    Args:
        num_batches: batches in one epoch of the (not yet prepared) training dataloader.
    """
    num_update_steps_per_epoch = math.ceil(
        math.ceil(num_batches / accelerator.num_processes) / args.gradient_accumulation_steps
    )
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * num_update_steps_per_epoch
    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )


def prepare_validation(args, accelerator: Accelerator) -> tuple[list, object]:
    """The validation prompts and, on the main process, their scorer; starts the trackers (`esplora`).

    Returns:
        `(validation_prompts, scorer)`; `scorer` is None off the main process or without validation prompts.
    """
    validation_prompts = load_validation_prompts(
        args.validation_prompt, args.validation_prompts, args.validation_suite, args.validation_num_pairs, args.seed
    )
    scorer = None
    if accelerator.is_main_process:
        if validation_prompts:
            scorer = load_validation_scorer(args.validation_scoring, args.validation_protocol)
        tracker_config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in vars(args).items()}
        accelerator.init_trackers("esplora", config=tracker_config)
    return validation_prompts, scorer


def log_training_start(args, accelerator: Accelerator, num_examples: int) -> None:
    """diffusers' "***** Running training *****" summary."""
    total_batch_size = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training *****")
    logger.info(f"  Num examples = {num_examples}")
    logger.info(f"  Num Epochs = {args.num_train_epochs}")
    logger.info(f"  Instantaneous batch size per device = {args.train_batch_size}")
    logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch_size}")
    logger.info(f"  Gradient Accumulation steps = {args.gradient_accumulation_steps}")
    logger.info(f"  Total optimization steps = {args.max_train_steps}")


def resume_position(
    args, accelerator: Accelerator, resume_path: Path | None, num_update_steps_per_epoch: int
) -> tuple[int, int, int]:
    """Load the checkpoint to resume from (if any) into `accelerator`; return where the loop starts again.

    Returns:
        `(global_step, first_epoch, resume_batches)`: steps done, the epoch to start in, and the batches of that
        epoch already trained on (to skip). `(0, 0, 0)` for a new run.
    """
    if args.resume_from_checkpoint and resume_path is None:
        logger.info(f"Checkpoint '{args.resume_from_checkpoint}' does not exist. Starting a new training run.")
        return 0, 0, 0
    if resume_path is None:
        return 0, 0, 0
    logger.info(f"Resuming from checkpoint {resume_path}")
    accelerator.load_state(os.fspath(resume_path))
    global_step = read_training_state(resume_path).get("global_step", int(resume_path.name.split("-")[1]))
    first_epoch = global_step // num_update_steps_per_epoch
    resume_batches = (global_step % num_update_steps_per_epoch) * args.gradient_accumulation_steps
    return global_step, first_epoch, resume_batches


def publish_run(
    args,
    *,
    repo_id: str | None,
    stats: TrainingStats,
    validation=None,
    family: ModelFamily = SD,
    mixed_precision: str | None = None,
    ignore_patterns: Iterable[str] = ("step_*", "epoch_*", "checkpoint-*", "logs/*"),
) -> None:
    """Main process, after the LoRA is saved: `training_summary.json`, the model card, and the Hub upload.

    Args:
        repo_id: from `prepare_output_dir` (None without `--push_to_hub`).
        validation: the last `ValidationResult` (None without validation).
        family: the base model's family (for the model card).
        mixed_precision: what the run used (`accelerator.mixed_precision`; `--mixed_precision` may be unset
            and come from the accelerate config).
    """
    stats.write(args.output_dir, validation=validation.metrics if validation is not None else None)
    save_model_card(
        args.output_dir,
        repo_id=repo_id or Path(args.output_dir).name,
        base_model=args.pretrained_model_name_or_path,
        dataset_name=args.dataset_name or args.train_data_dir,
        validation=validation,
        train_text_encoder=args.train_text_encoder,
        family=family,
        training_args=args,
        mixed_precision=mixed_precision,
    )
    if args.push_to_hub:
        from huggingface_hub import upload_folder

        upload_folder(
            repo_id=repo_id,
            folder_path=args.output_dir,
            commit_message="End of training",
            ignore_patterns=list(ignore_patterns),
            token=args.hub_token,
        )
