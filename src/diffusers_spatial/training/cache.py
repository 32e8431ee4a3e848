"""Encode each image and each caption once, before training, so a step is the UNet's forward and backward only.

- `LatentCache` holds the VAE posterior parameters (mean and log-variance) of every row, and of its mirrored
  image when flipping is on. The latents are still SAMPLED from them at every step (with the step's generator),
  exactly as the uncached path samples `vae.encode(pixels).latent_dist`: same seed, same loss curve.
- `TextEmbeddingCache` holds the text encoder outputs of every distinct caption (SD: `prompt_embeds`; SDXL also
  `pooled_prompt_embeds`). It cannot be used while a text encoder is trained.

Both live in CPU memory in the dtype they were encoded in; `nbytes` says how much. In a distributed run each
process encodes a share of the rows and the shares are exchanged (`accelerate.utils.gather_object`).

Memory per row at 512 px in fp32: latents 2 x 4 x 64 x 64 x 4 B = 128 KiB (x2 with flipping); SD 1.x text
embeddings 77 x 768 x 4 B = 231 KiB per distinct caption (SDXL: 77 x 2048). Use `--mixed_precision` to halve
that, or cache only latents for very large datasets.

Examples:

```py
>>> import torch
>>> from diffusers_spatial.training.cache import TextEmbeddingCache
>>> cache = TextEmbeddingCache({"a dog left of a cat": {"prompt_embeds": torch.zeros(77, 32)}})
>>> tuple(cache.lookup("a dog left of a cat")["prompt_embeds"].shape), cache.nbytes
((77, 32), 9856)

```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .transforms import AugmentationPlan, flip_caption

__all__ = ["LatentCache", "TextEmbeddingCache", "build_latent_cache", "build_text_embedding_cache"]


def _share(items: Sequence, accelerator) -> Sequence:
    if accelerator is None or accelerator.num_processes == 1:
        return items
    return items[accelerator.process_index :: accelerator.num_processes]


def _gather(pairs: list, accelerator) -> list:
    if accelerator is None or accelerator.num_processes == 1:
        return pairs
    from accelerate.utils import gather_object

    return gather_object(pairs)


def _show(accelerator) -> bool:
    return accelerator is None or accelerator.is_local_main_process


@dataclass
class LatentCache:
    """VAE posterior parameters per (row, flipped): `params[row, int(flipped)]`, plus SDXL's size / crop ids."""

    params: torch.Tensor  # (rows, 1 or 2, 2C, h, w)
    original_sizes: list[tuple[int, int]]
    crop_top_lefts: list[list[tuple[int, int]]]  # [row][flipped]

    def lookup(self, index: int, plan: AugmentationPlan) -> dict:
        variant = int(plan.flip)
        return {
            "latent_params": self.params[index, variant],
            "original_size": self.original_sizes[index],
            "crop_top_left": self.crop_top_lefts[index][variant],
        }

    @property
    def nbytes(self) -> int:
        return self.params.numel() * self.params.element_size()


@dataclass
class TextEmbeddingCache:
    """Text-encoder outputs per distinct caption."""

    embeddings: dict[str, dict[str, torch.Tensor]]

    def lookup(self, caption: str) -> dict[str, torch.Tensor]:
        try:
            return self.embeddings[caption]
        except KeyError:
            raise KeyError(f"caption {caption!r} is not in the text-embedding cache") from None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for item in self.embeddings.values() for t in item.values())


@torch.no_grad()
def build_latent_cache(
    dataset,
    encode: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = 8,
    accelerator=None,
) -> LatentCache:
    """Encode every row of a `SpatialTrainDataset` (and its mirror image when flipping is on).

    Args:
        dataset: the `SpatialTrainDataset` (no caches attached yet).
        encode: pixels (B, 3, R, R) in [-1, 1] on the CPU -> posterior parameters (B, 2C, R/8, R/8), e.g.
            `lambda x: vae.encode(x.to(vae.device, vae.dtype)).latent_dist.parameters`.
        batch_size: images per `encode` call.
        accelerator: share the work between processes.

    A random crop is drawn once (epoch 0) and frozen; flips and caption choice still vary per epoch.
    """
    flipping = dataset.config.random_flip
    jobs = []  # (row, flipped)
    for row in range(len(dataset)):
        jobs.append((row, False))
        if flipping and any(flip_caption(c) is not None for c in dataset.captions[row]):
            jobs.append((row, True))
    mine = _share(jobs, accelerator)

    results = []
    for start in tqdm(range(0, len(mine), batch_size), desc="Caching latents", disable=not _show(accelerator)):
        chunk = mine[start : start + batch_size]
        samples = []
        for row, flipped in chunk:
            frozen = dataset.plan(row, epoch=0)
            plan = AugmentationPlan(0, frozen.crop_x, frozen.crop_y, flipped)
            samples.append(dataset.transformed(row, plan))
        params = encode(torch.stack([s["pixel_values"] for s in samples])).cpu()
        for (row, flipped), sample, p in zip(chunk, samples, params):
            results.append((row, flipped, p.clone(), sample["original_size"], sample["crop_top_left"]))
    results = _gather(results, accelerator)

    first = results[0][2]
    params = torch.zeros((len(dataset), 2 if flipping else 1, *first.shape), dtype=first.dtype)
    original_sizes: list = [None] * len(dataset)
    crops: list = [[None, None] for _ in range(len(dataset))]
    for row, flipped, p, original_size, crop in results:
        params[row, int(flipped)] = p
        original_sizes[row] = tuple(original_size)
        crops[row][int(flipped)] = tuple(crop)
    return LatentCache(params, original_sizes, crops)


@torch.no_grad()
def build_text_embedding_cache(
    captions: Iterable[str],
    encode: Callable[[list[str]], dict[str, torch.Tensor]],
    *,
    batch_size: int = 32,
    accelerator=None,
) -> TextEmbeddingCache:
    """Encode every distinct caption once.

    Args:
        captions: the captions training can see (`SpatialTrainDataset.all_captions()`).
        encode: list of captions -> dict of batched tensors, e.g. `{"prompt_embeds": (B, 77, D)}`.
        batch_size: captions per `encode` call.
        accelerator: share the work between processes.
    """
    unique = list(dict.fromkeys(captions))
    mine = _share(unique, accelerator)
    results = []
    for start in tqdm(range(0, len(mine), batch_size), desc="Caching text embeddings", disable=not _show(accelerator)):
        chunk = list(mine[start : start + batch_size])
        outputs = {k: v.cpu() for k, v in encode(chunk).items()}
        for i, caption in enumerate(chunk):
            results.append((caption, {k: v[i].clone() for k, v in outputs.items()}))
    return TextEmbeddingCache(dict(_gather(results, accelerator)))
