"""Spatial dataset curation: LAION-style shards in, a verified, Hub-ready spatial dataset out.

The pipeline (`docs/dataset.md`): read shards (`readers`) -> caption filter and relation parsing -> decode ->
detection and depth (`diffusers_spatial.perception`) -> verification of the caption's relation with the esplora
protocol (`diffusers_spatial.geometry`) -> synthesis of explicit prompts from verified geometry -> quality
filters -> atomic, resumable parquet shards with embedded images (`writer`, `runner`) -> statistics, plots and
a dataset card with typed `configs:` (`statistics`, `card`). `synthetic_round` adds verified generations of
any diffusers pipeline to the same dataset; `build_sample` builds a small offline sample from real photos.

Examples:

```py
>>> from diffusers_spatial.data import CurationConfig, curate
>>> stats = curate("laion-shards/", "spatial-dataset/", CurationConfig(detector="embedded"))  # doctest: +SKIP
>>> import datasets
>>> ds = datasets.load_dataset("spatial-dataset/", split="train")  # doctest: +SKIP
>>> ds[0]["prompt"], ds[0]["relation"]  # doctest: +SKIP
('a photo of a dog to the left of a bicycle', 'left_of')
```
"""

from .card import CONFIG_PATTERNS, dataset_card, finalize_dataset, push_to_hub
from .config import CurationConfig
from .language import looks_english
from .readers import ShardReader, ShardSpec, discover_shards
from .records import Record, batched
from .runner import curate, make_perception, process_shard
from .sample import build_sample, write_webdataset_shard
from .schema import SHARD_REASONS, SKIP_REASONS, SPATIAL_FEATURES
from .stages import (
    balance_stage,
    caption_stage,
    perception_stage,
    quality_stage,
    run_stages,
    synthesis_stage,
    to_rows,
    verify_stage,
)
from .statistics import run_statistics
from .synthesis import explicit_prompt, synthesize_prompt
from .synthetic import synthetic_round

__all__ = [
    "CONFIG_PATTERNS",
    "SHARD_REASONS",
    "SKIP_REASONS",
    "SPATIAL_FEATURES",
    "CurationConfig",
    "Record",
    "ShardReader",
    "ShardSpec",
    "balance_stage",
    "batched",
    "build_sample",
    "caption_stage",
    "curate",
    "dataset_card",
    "discover_shards",
    "explicit_prompt",
    "finalize_dataset",
    "looks_english",
    "make_perception",
    "perception_stage",
    "process_shard",
    "push_to_hub",
    "quality_stage",
    "run_stages",
    "run_statistics",
    "synthesis_stage",
    "synthesize_prompt",
    "synthetic_round",
    "to_rows",
    "verify_stage",
    "write_webdataset_shard",
]
