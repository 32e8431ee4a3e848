"""The synthetic, recursive round: generate with any diffusers pipeline, verify, keep what is right.

ESPLoRA's data is "recursion-ready": once a model has been fine-tuned on the curated photos, its own generations
for spatial prompts are judged by the same geometry, and the verified ones join the dataset as
`source="synthetic"` rows (`origin="<generator>#seed=<seed>"`, `prompt_origin="generation"`). The next round
fine-tunes on the larger set, and so on.

A round is a list of (prompt, seed) work items cut into shards (`synthetic-r<round>-<i>`), processed by the
same shard runner as curation: split over processes through accelerate, each shard committed atomically with
its manifest entry, resumable. Each image gets its own CPU `torch.Generator` seeded with its seed, so an image
depends only on (generator, prompt, seed) - not on batching, process count or device.

Verification is stricter than for captions: the prompt is the generation prompt, so an image whose relation is
false is skipped (`relation_false`), never rewritten; a prompt that is not a spatial prompt is skipped
(`no_relation`).

Examples:

```py
>>> from diffusers import StableDiffusionPipeline
>>> from diffusers_spatial.data import synthetic_round
>>> pipe = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")  # doctest: +SKIP
>>> stats = synthetic_round(pipe, ["a dog to the left of a bicycle"], "spatial-dataset/", seeds=range(4),
...                         pipeline_kwargs={"num_inference_steps": 30})  # doctest: +SKIP
>>> stats["rows_by_config"]["synthetic-2d"]  # doctest: +SKIP
3
```
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from accelerate import PartialState

from .config import CurationConfig
from .records import Record
from .runner import default_state, perception_for, run_shards
from .stages import caption_stage, perception_stage, quality_stage, verify_stage

__all__ = ["GenerationShard", "generator_name_of", "synthetic_round"]


def generator_name_of(pipeline) -> str:
    """A pipeline's name for `origin`: its model id / folder, else its class name."""
    name = getattr(pipeline, "name_or_path", None) or getattr(getattr(pipeline, "config", None), "_name_or_path", None)
    return str(name) if name else type(pipeline).__name__


class GenerationShard:
    """One shard of a synthetic round: generates its images lazily, `generation_batch_size` at a time.

    Iterating yields one `Record` per (prompt, seed) item with the PNG-encoded generation; `issues` is always
    empty (a failing pipeline is an error of the run, not of the data).
    """

    def __init__(
        self,
        name: str,
        items: Sequence[tuple[str, int]],
        pipeline,
        *,
        generator_name: str,
        pipeline_kwargs: dict[str, Any],
        generation_batch_size: int,
        license: str,
    ):
        self.name = name
        self.items = list(items)
        self.pipeline = pipeline
        self.generator_name = generator_name
        self.pipeline_kwargs = dict(pipeline_kwargs)
        self.generation_batch_size = generation_batch_size
        self.license = license
        self.issues: list[str] = []

    def __iter__(self) -> Iterator[Record]:
        import torch

        for start in range(0, len(self.items), self.generation_batch_size):
            chunk = self.items[start : start + self.generation_batch_size]
            generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for _, seed in chunk]
            output = self.pipeline(prompt=[p for p, _ in chunk], generator=generators, **self.pipeline_kwargs)
            for offset, ((prompt, seed), image) in enumerate(zip(chunk, output.images)):
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                index = start + offset
                yield Record(
                    key=f"{self.name}/{index:06d}",
                    caption=prompt,
                    image_bytes=buffer.getvalue(),
                    image=image,
                    image_name=f"{index:06d}.png",
                    source="synthetic",
                    origin=f"{self.generator_name}#seed={seed}",
                    license=self.license,
                )


def _synthetic_stages(batch, perception, config: CurationConfig):
    batch = caption_stage(batch, config)
    batch = perception_stage(batch, perception)
    batch = verify_stage(batch, config)
    batch = quality_stage(batch, config)
    return [replace(r, prompt_origin="generation") if r.kept else r for r in batch]


def synthetic_round(
    pipeline,
    prompts: Sequence[str],
    output_dir: str | os.PathLike,
    *,
    seeds: Sequence[int] = (0,),
    round_index: int = 0,
    config: CurationConfig | None = None,
    perception=None,
    generator_name: str | None = None,
    pipeline_kwargs: dict[str, Any] | None = None,
    shard_size: int = 256,
    generation_batch_size: int = 4,
    license: str = "generated: see the generator's licence",
    state: PartialState | None = None,
    progress: bool = True,
    on_shard_done=None,
    finalize: bool = True,
) -> dict:
    """Generate `prompts` x `seeds` with `pipeline`, verify each image, add the verified ones to `output_dir`.

    Args:
        pipeline: any diffusers text-to-image pipeline (called as `pipeline(prompt=[...], generator=[...],
            **pipeline_kwargs)`, reading `.images`), e.g. `SpatialLoRAPipeline` after a training round.
        prompts: spatial prompts ("a dog to the left of a bicycle").
        output_dir: the dataset folder (a curated one, to grow it; or a new one).
        seeds: seeds per prompt; item order is prompt-major.
        round_index: the round number, part of the shard names (rounds never overwrite each other).
        config: verification and quality settings (`synthesize` is ignored: generations are never rewritten).
        perception: a ready `Perception` (default `make_perception(config)`).
        generator_name: written into `origin` (default: the pipeline's model id or folder).
        pipeline_kwargs: extra call arguments (num_inference_steps, guidance_scale, height, width, ...).
        shard_size: (prompt, seed) items per shard.
        generation_batch_size: images per pipeline call.
        license: the `license` of the rows.
        state, progress, on_shard_done, finalize: as for `curate`.

    Returns:
        The run statistics of the whole output folder (curated and synthetic rows).

    Raises:
        ValueError: empty prompts or seeds, or the folder holds this round with other settings.
    """
    prompts, seeds = [str(p) for p in prompts], [int(s) for s in seeds]
    if not prompts or not seeds:
        raise ValueError(f"synthetic_round needs prompts and seeds, got {len(prompts)} prompts and {len(seeds)} seeds")
    if shard_size < 1 or generation_batch_size < 1:
        raise ValueError(
            f"shard_size and generation_batch_size must be >= 1, got {shard_size}, {generation_batch_size}"
        )
    config = replace(config if config is not None else CurationConfig(), synthesize=False)
    state = state if state is not None else default_state()
    generator_name = generator_name or generator_name_of(pipeline)
    pipeline_kwargs = dict(pipeline_kwargs or {})
    items = [(prompt, seed) for prompt in prompts for seed in seeds]
    readers = [
        GenerationShard(
            f"synthetic-r{round_index:02d}-{i // shard_size:05d}",
            items[i : i + shard_size],
            pipeline,
            generator_name=generator_name,
            pipeline_kwargs=pipeline_kwargs,
            generation_batch_size=generation_batch_size,
            license=license,
        )
        for i in range(0, len(items), shard_size)
    ]
    digest = hashlib.sha256(json.dumps(items).encode("utf-8")).hexdigest()
    settings = {
        "generator": generator_name,
        "items_sha256": digest,
        "items": len(items),
        "shard_size": shard_size,
        "pipeline_kwargs": json.loads(json.dumps(pipeline_kwargs, default=str)),
        **config.to_dict(),
        "runtime_only": ["batch_size"],
    }

    def make_stages():
        ready = perception if perception is not None else perception_for(state, config)
        return lambda batch: _synthetic_stages(batch, ready, config)

    return run_shards(
        readers,
        output_dir,
        make_stages,
        config,
        run=f"synthetic-r{round_index:02d}",
        settings=settings,
        state=state,
        progress=progress,
        on_shard_done=on_shard_done,
        finalize=finalize,
    )
