"""Library code of the ESPLoRA training scripts (`examples/train_esplora.py`, `train_esplora_sdxl.py`,
`train_esplora_flow.py`).

The scripts read like diffusers' `train_text_to_image_lora.py`; what they share lives here, small and tested:

| module | what it owns |
| --- | --- |
| `args` | the command-line arguments and their checks |
| `data` | loading the dataset (`--dataset_name` / `--train_data_dir`) and validating it before training |
| `transforms` | PIL / numpy resize, crop, spatially safe flip (`flip_caption`), per-sample augmentation plans |
| `sampler` | relation-balanced sampling (`relation_balanced_weights`, `RelationBalancedSampler`) |
| `train_dataset` | the torch `Dataset` of training samples and its collate function |
| `cache` | the latent and text-embedding caches |
| `randomness` | seeds derived from (seed, epoch, step): resumable, cache-independent randomness |
| `loss` | the denoising loss of one step (noise offset, v-prediction, Min-SNR; flow matching for SD3 / FLUX) |
| `lora` | LoRA adapters and their save / load in diffusers' format (incl. accelerate checkpoint hooks) |
| `checkpoints` | checkpoint naming, `latest`, total limit, atomic saves, the non-finite loss stop |
| `validation` | validation prompts, images, spatial scoring, tracker logging |
| `model_card` | the README.md model card |
| `setup` | the model-independent steps of the scripts around their training loop (accelerator, seed, data, ...) |
| `stats` | samples per second, peak memory and the loss curve of a run (`training_summary.json`) |
"""

from .args import add_training_arguments, check_training_args
from .cache import LatentCache, TextEmbeddingCache, build_latent_cache, build_text_embedding_cache
from .checkpoints import (
    NonFiniteLossError,
    check_finite_loss,
    checkpoint_step,
    list_checkpoints,
    prune_checkpoints,
    read_training_state,
    resolve_resume_checkpoint,
    save_checkpoint,
)
from .data import (
    DatasetProblem,
    DatasetValidationError,
    find_dataset_problems,
    load_training_dataset,
    validate_training_dataset,
)
from .lora import LORA_WEIGHT_NAME, add_lora_adapters, load_lora_into, register_lora_checkpoint_hooks, save_lora
from .loss import diffusion_loss, flow_matching_loss, sample_flow_sigmas, sample_latents
from .model_card import save_model_card
from .randomness import derive_seed, step_generator
from .sampler import (
    BalanceReport,
    RelationBalancedSampler,
    RelationKey,
    SeededRandomSampler,
    balance_report,
    build_training_sampler,
    dataset_relation_keys,
    relation_balanced_weights,
    relation_key,
)
from .stats import TrainingStats
from .train_dataset import SpatialTrainDataset, collate_training_batch
from .transforms import AugmentationPlan, TrainTransform, TransformConfig, flip_caption, plan_augmentation
from .validation import (
    SpatialValidationScorer,
    ValidationResult,
    load_validation_prompts,
    load_validation_scorer,
    log_validation,
    run_validation,
)

__all__ = [
    "LORA_WEIGHT_NAME",
    "AugmentationPlan",
    "BalanceReport",
    "DatasetProblem",
    "DatasetValidationError",
    "LatentCache",
    "NonFiniteLossError",
    "RelationBalancedSampler",
    "RelationKey",
    "SeededRandomSampler",
    "SpatialTrainDataset",
    "SpatialValidationScorer",
    "TextEmbeddingCache",
    "TrainTransform",
    "TrainingStats",
    "TransformConfig",
    "ValidationResult",
    "add_lora_adapters",
    "add_training_arguments",
    "balance_report",
    "build_latent_cache",
    "build_text_embedding_cache",
    "build_training_sampler",
    "check_finite_loss",
    "check_training_args",
    "checkpoint_step",
    "collate_training_batch",
    "dataset_relation_keys",
    "derive_seed",
    "diffusion_loss",
    "flow_matching_loss",
    "find_dataset_problems",
    "flip_caption",
    "list_checkpoints",
    "load_lora_into",
    "load_training_dataset",
    "load_validation_prompts",
    "load_validation_scorer",
    "log_validation",
    "plan_augmentation",
    "prune_checkpoints",
    "read_training_state",
    "register_lora_checkpoint_hooks",
    "relation_balanced_weights",
    "relation_key",
    "resolve_resume_checkpoint",
    "run_validation",
    "sample_flow_sigmas",
    "sample_latents",
    "save_checkpoint",
    "save_lora",
    "save_model_card",
    "step_generator",
    "validate_training_dataset",
]
