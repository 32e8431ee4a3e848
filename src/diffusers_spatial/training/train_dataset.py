"""The torch Dataset the training scripts iterate: one row -> pixels (or cached latents) + caption (or embeddings).

Each item is a dict:

- `index`: the row;
- `caption`: the caption actually trained on (one of the row's captions, rewritten by `flip_caption` if flipped);
- `pixel_values` (3, R, R) in [-1, 1], or `latent_params` (2C, R/8, R/8) when a `LatentCache` is attached;
- `original_size` (h, w) and `crop_top_left` (top, left): SDXL's micro-conditioning;
- the text cache's tensors (`prompt_embeds`, and `pooled_prompt_embeds` for SDXL) when a `TextEmbeddingCache`
  is attached.

Augmentation is planned per (seed, epoch, row) (`transforms.plan_augmentation`), so with a latent cache the flip
and caption choice stay exactly those of the uncached run; only a random crop is frozen at its first draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import torch
from torch.utils.data import Dataset

from .transforms import (
    AugmentationPlan,
    TrainTransform,
    TransformConfig,
    augmentation_rng,
    caption_variants,
    flip_caption,
    plan_augmentation,
)

__all__ = ["SpatialTrainDataset", "collate_training_batch"]


class SpatialTrainDataset(Dataset):
    """Training samples from a `datasets.Dataset` (validated beforehand with `validate_training_dataset`).

    Args:
        dataset: the training split.
        image_column / caption_column: its image and caption (str or list of str) columns.
        transform: resize / crop / flip options.
        seed: augmentation seed.

    Examples:

    ```py
    >>> import datasets
    >>> from PIL import Image
    >>> rows = datasets.Dataset.from_dict({"image": [Image.new("RGB", (40, 32))], "prompt": ["a dog left of a cat"]})
    >>> sample = SpatialTrainDataset(rows, "image", "prompt", TransformConfig(resolution=16))[0]
    >>> tuple(sample["pixel_values"].shape), sample["caption"]
    ((3, 16, 16), 'a dog left of a cat')

    ```
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        image_column: str,
        caption_column: str,
        transform: TransformConfig,
        seed: int = 0,
    ):
        images = dataset.select_columns([image_column])
        if not isinstance(images.features[image_column], datasets.Image):
            images = images.cast_column(image_column, datasets.Image())  # a column of file paths
        self.images = images
        self.image_column = image_column
        self.captions = [caption_variants(c) for c in list(dataset[caption_column])]
        self.config = transform
        self.transform = TrainTransform(transform)
        self.seed = int(seed)
        self.epoch = 0
        self.latent_cache = None
        self.text_cache = None

    def __len__(self) -> int:
        return len(self.captions)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def plan(self, index: int, epoch: int | None = None) -> AugmentationPlan:
        """The augmentation of row `index` in `epoch` (default: the current epoch)."""
        rng = augmentation_rng(self.seed, self.epoch if epoch is None else epoch, index)
        return plan_augmentation(rng, self.captions[index], self.config)

    def load_image(self, index: int):
        return self.images[index][self.image_column]

    def transformed(self, index: int, plan: AugmentationPlan) -> dict:
        """Row `index` decoded and transformed under `plan` (what the latent cache encodes)."""
        return self.transform(self.load_image(index), self.captions[index], plan)

    def all_captions(self) -> list[str]:
        """Every caption training can see (all variants, and their flipped forms when flipping is on)."""
        seen: dict[str, None] = {}
        for variants in self.captions:
            for caption in variants:
                seen[caption] = None
                if self.config.random_flip and (flipped := flip_caption(caption)) is not None:
                    seen[flipped] = None
        return list(seen)

    def __getitem__(self, index: int) -> dict:
        plan = self.plan(index)
        if self.latent_cache is not None:
            caption = self.captions[index][plan.caption_index]
            item = {
                "caption": flip_caption(caption) if plan.flip else caption,
                **self.latent_cache.lookup(index, plan),
            }
        else:
            item = self.transformed(index, plan)
        if self.text_cache is not None:
            item.update(self.text_cache.lookup(item["caption"]))
        item["index"] = index
        return item


def collate_training_batch(examples: Sequence[dict]) -> dict:
    """Stack tensors, keep captions / sizes / crops as lists (the scripts' `collate_fn`)."""
    batch: dict = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values).contiguous()
        elif key == "index":
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    if "caption" in batch:
        batch["captions"] = batch.pop("caption")
    return batch
