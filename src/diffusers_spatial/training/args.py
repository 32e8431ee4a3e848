"""Command-line arguments of `examples/train_esplora.py` and `examples/train_esplora_sdxl.py`.

The familiar arguments of diffusers' `train_text_to_image_lora.py` keep their names, meanings and defaults (except
`--caption_column`, which defaults to the spatial dataset's `prompt`); the ESPLoRA ones are grouped after them.
`check_training_args` rejects combinations that cannot work before any model is loaded, naming the flags.
"""

from __future__ import annotations

import argparse
import os

from accelerate.tracking import get_available_trackers
from accelerate.utils import is_tensorboard_available
from diffusers.utils import logging

from .transforms import INTERPOLATION_MODES

__all__ = ["add_training_arguments", "check_training_args"]

logger = logging.get_logger(__name__)


def add_training_arguments(parser: argparse.ArgumentParser, *, default_resolution: int = 512) -> None:
    """Add every argument both training scripts share to `parser`."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        required=True,
        help="Path to a pretrained diffusers model folder or a model id on huggingface.co/models.",
    )
    model.add_argument("--revision", type=str, default=None, help="Revision of the pretrained model on the Hub.")
    model.add_argument("--variant", type=str, default=None, help="Variant of the model files, e.g. fp16.")

    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset_name",
        type=str,
        default=None,
        help="A dataset on the Hub (e.g. the ESPLoRA spatial dataset) or a local folder / file that "
        "datasets.load_dataset reads (parquet, ImageFolder with metadata.jsonl, ...).",
    )
    data.add_argument("--dataset_config_name", type=str, default=None, help="The dataset's config, if several.")
    data.add_argument(
        "--train_data_dir",
        type=str,
        default=None,
        help="An ImageFolder directory (images + metadata.jsonl holding the captions). Ignored with --dataset_name "
        "except as its data_dir.",
    )
    data.add_argument("--image_column", type=str, default="image", help="The dataset column holding the images.")
    data.add_argument(
        "--caption_column",
        type=str,
        default="prompt",
        help="The dataset column holding a caption (or a list of captions) per image. The spatial dataset's is "
        "'prompt'; diffusers' examples use 'text'.",
    )
    data.add_argument(
        "--max_train_samples", type=int, default=None, help="Truncate the training set to this many rows (debug)."
    )
    data.add_argument("--cache_dir", type=str, default=None, help="Where downloaded models and datasets are stored.")
    data.add_argument(
        "--skip_image_validation",
        action="store_true",
        help="Do not open every image before training (columns and captions are still checked). For very large "
        "datasets already checked once.",
    )
    data.add_argument(
        "--resolution", type=int, default=default_resolution, help="Training resolution (square, multiple of 8)."
    )
    data.add_argument(
        "--image_interpolation_mode",
        type=str,
        default="lanczos",
        choices=INTERPOLATION_MODES,
        help="The resampling filter used to resize images to --resolution (as in diffusers' scripts).",
    )
    data.add_argument(
        "--center_crop", action="store_true", help="Center crop to the resolution instead of a random crop."
    )
    data.add_argument(
        "--random_flip",
        action="store_true",
        help="Randomly mirror images horizontally. Spatially safe: 'left' and 'right' are swapped in the caption's "
        "relation, and captions where that cannot be done reliably are never flipped.",
    )
    data.add_argument(
        "--dataloader_num_workers", type=int, default=0, help="Data loading subprocesses (0: the main process)."
    )

    esplora = parser.add_argument_group("ESPLoRA")
    esplora.add_argument(
        "--balance_relations",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Relation-balanced sampling: each relation, and each object order of a pair, equally likely "
        "(default: on; --no-balance_relations for plain shuffled epochs). Rows that are not spatial prompts keep "
        "their natural share.",
    )
    esplora.add_argument(
        "--cache_latents",
        action="store_true",
        help="Encode every image with the VAE once before training (a random crop is then frozen; flips still vary).",
    )
    esplora.add_argument(
        "--cache_text_embeddings",
        action="store_true",
        help="Encode every caption once before training (not with --train_text_encoder).",
    )
    esplora.add_argument(
        "--cache_batch_size", type=int, default=16, help="Batch size used to build the latent / text caches."
    )
    esplora.add_argument("--train_text_encoder", action="store_true", help="Also train LoRA on the text encoder(s).")
    esplora.add_argument("--rank", type=int, default=4, help="The dimension (rank) of the LoRA update matrices.")
    esplora.add_argument("--lora_alpha", type=float, default=None, help="LoRA alpha (default: the rank).")
    esplora.add_argument("--lora_dropout", type=float, default=0.0, help="Dropout of the LoRA layers.")

    validation = parser.add_argument_group("validation")
    validation.add_argument(
        "--validation_prompt", type=str, default=None, help="A prompt sampled during training for inference."
    )
    validation.add_argument(
        "--validation_prompts",
        type=str,
        nargs="+",
        default=None,
        help="Several validation prompts, or one .txt (a prompt per line) / .json / .jsonl file of prompts.",
    )
    validation.add_argument(
        "--validation_suite",
        type=str,
        default=None,
        help="A spatial prompt suite (diffusers_spatial.suites: sr2d, 3d, geneval_position, heldout) sampled "
        "for validation; combine with --validation_num_pairs.",
    )
    validation.add_argument(
        "--validation_num_pairs", type=int, default=2, help="Object pairs drawn from --validation_suite."
    )
    validation.add_argument(
        "--num_validation_images", type=int, default=4, help="Images generated per validation prompt."
    )
    validation.add_argument(
        "--validation_epochs", type=int, default=1, help="Run validation every X epochs (and after training)."
    )
    validation.add_argument(
        "--validation_inference_steps", type=int, default=30, help="Denoising steps of validation images."
    )
    validation.add_argument(
        "--validation_guidance_scale", type=float, default=7.5, help="Guidance scale of validation images."
    )
    validation.add_argument(
        "--validation_scoring",
        choices=["auto", "on", "off"],
        default="auto",
        help="Score validation images with the spatial metric (per-relation accuracy): 'auto' scores when the "
        "perception backend is available, 'on' requires it, 'off' never scores.",
    )
    validation.add_argument(
        "--validation_protocol",
        type=str,
        default="esplora",
        help="The geometry protocol that judges validation images (esplora, visor, t2i_compbench, geneval).",
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--output_dir", type=str, default="esplora-lora", help="Where the LoRA, checkpoints and model card go."
    )
    training.add_argument("--seed", type=int, default=None, help="A seed for reproducible training.")
    training.add_argument("--train_batch_size", type=int, default=16, help="Batch size per device.")
    training.add_argument("--num_train_epochs", type=int, default=100)
    training.add_argument(
        "--max_train_steps", type=int, default=None, help="Total optimisation steps; overrides --num_train_epochs."
    )
    training.add_argument(
        "--gradient_accumulation_steps", type=int, default=1, help="Micro-batches accumulated per optimisation step."
    )
    training.add_argument(
        "--gradient_checkpointing", action="store_true", help="Trade compute for memory in the backward pass."
    )
    training.add_argument("--learning_rate", type=float, default=1e-4, help="Initial learning rate (after warmup).")
    training.add_argument(
        "--scale_lr",
        action="store_true",
        help="Scale the learning rate by the number of processes, accumulation steps and batch size.",
    )
    training.add_argument(
        "--lr_scheduler",
        type=str,
        default="constant",
        help='One of "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup".',
    )
    training.add_argument("--lr_warmup_steps", type=int, default=500, help="Warmup steps of the lr scheduler.")
    training.add_argument(
        "--snr_gamma",
        type=float,
        default=None,
        help="Min-SNR weighting gamma (recommended 5.0; https://arxiv.org/abs/2303.09556).",
    )
    training.add_argument("--noise_offset", type=float, default=0, help="The scale of noise offset.")
    training.add_argument(
        "--prediction_type",
        type=str,
        default=None,
        choices=["epsilon", "v_prediction"],
        help="Override the scheduler's prediction type.",
    )
    training.add_argument("--use_8bit_adam", action="store_true", help="Use bitsandbytes' 8-bit AdamW.")
    training.add_argument("--adam_beta1", type=float, default=0.9)
    training.add_argument("--adam_beta2", type=float, default=0.999)
    training.add_argument("--adam_weight_decay", type=float, default=1e-2)
    training.add_argument("--adam_epsilon", type=float, default=1e-08)
    training.add_argument("--max_grad_norm", default=1.0, type=float, help="Max gradient norm.")
    training.add_argument("--allow_tf32", action="store_true", help="Allow TF32 matmuls on Ampere+ GPUs.")
    training.add_argument(
        "--enable_xformers_memory_efficient_attention", action="store_true", help="Use xformers attention."
    )
    training.add_argument(
        "--mixed_precision",
        type=str,
        default=None,
        choices=["no", "fp16", "bf16"],
        help="Mixed precision (default: the accelerate config). bf16 also works on CPU; fp16 needs a GPU.",
    )

    logging_group = parser.add_argument_group("logging, checkpoints, Hub")
    logging_group.add_argument(
        "--report_to",
        type=str,
        default=None,
        help='Trackers: "tensorboard", "wandb", "comet_ml", "all", or "none" (default: tensorboard when it is '
        "installed, else none, with a warning). A tracker named here that is not installed is an error.",
    )
    logging_group.add_argument(
        "--logging_dir", type=str, default="logs", help="TensorBoard log directory, under --output_dir."
    )
    logging_group.add_argument(
        "--checkpointing_steps",
        type=int,
        default=500,
        help="Save the training state (LoRA, optimizer, scheduler, RNG) every X steps as checkpoint-X/.",
    )
    logging_group.add_argument(
        "--checkpoints_total_limit", type=int, default=None, help="Keep at most this many checkpoints."
    )
    logging_group.add_argument(
        "--resume_from_checkpoint",
        type=str,
        default=None,
        help='Resume from a checkpoint-N folder, or "latest" for the newest in --output_dir.',
    )
    logging_group.add_argument("--push_to_hub", action="store_true", help="Push the LoRA and model card to the Hub.")
    logging_group.add_argument("--hub_token", type=str, default=None, help="Token for the Hub (or `hf auth login`).")
    logging_group.add_argument(
        "--hub_model_id", type=str, default=None, help="Hub repository name (default: --output_dir's name)."
    )
    logging_group.add_argument("--local_rank", type=int, default=-1, help="For distributed training: local_rank.")


def check_training_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill derived values and reject impossible combinations (ValueError naming the flags)."""
    env_local_rank = int(os.environ.get("LOCAL_RANK", -1))
    if env_local_rank != -1 and env_local_rank != args.local_rank:
        args.local_rank = env_local_rank
    if args.dataset_name is None and args.train_data_dir is None:
        raise ValueError("Need either --dataset_name or --train_data_dir.")
    if args.train_text_encoder and args.cache_text_embeddings:
        raise ValueError(
            "--cache_text_embeddings cannot be used with --train_text_encoder: the embeddings change while the "
            "text encoder trains. Drop one of them."
        )
    if args.resolution % 8:
        raise ValueError(f"--resolution must be a multiple of 8, got {args.resolution}")
    for name in ("train_batch_size", "gradient_accumulation_steps", "rank", "checkpointing_steps", "cache_batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise ValueError(f"--checkpoints_total_limit must be >= 1, got {args.checkpoints_total_limit}")
    if args.max_train_steps is not None and args.max_train_steps < 1:
        raise ValueError(f"--max_train_steps must be >= 1, got {args.max_train_steps}")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning_rate must be > 0, got {args.learning_rate}")
    if args.report_to is None:
        args.report_to = "tensorboard" if is_tensorboard_available() else "none"
        if args.report_to == "none":
            logger.warning("tensorboard is not installed: no training curves are logged (pip install tensorboard).")
    elif args.report_to not in ("none", "all") and args.report_to not in {t.value for t in get_available_trackers()}:
        raise ImportError(f"--report_to {args.report_to}: that tracker is not installed (or pass --report_to none).")
    if args.report_to == "none":
        args.report_to = None
    if args.hub_token is not None and args.report_to == "wandb":
        raise ValueError(
            "You cannot use both --report_to=wandb and --hub_token due to a security risk of exposing your token."
            " Please use `hf auth login` to authenticate with the Hub."
        )
    return args
