"""Image and caption transforms for training, in PIL / numpy (no torchvision), with spatially safe flips.

A horizontal flip mirrors the image, so "a dog to the left of a cat" becomes a picture of a dog to the RIGHT of a
cat. Flipping the pixels and keeping the caption teaches the model the opposite of what the data says, exactly the
relations ESPLoRA trains. `flip_caption` rewrites the caption to match the mirrored image (left <-> right in the
relation phrase, the rest verbatim) and refuses (returns None) when it cannot tell: a caption that mentions left
or right outside a single parsed relation ("a man raising his left hand", two relations). The transform then does
not flip that sample.

Every random decision of one sample (which caption of several, crop offset, flip) comes from `plan_augmentation`
with a generator seeded by (seed, epoch, row index): the same run, resumed from a checkpoint or cached, sees the
same augmentations.

Examples:

```py
>>> from diffusers_spatial.training.transforms import flip_caption
>>> flip_caption("a photo of a dog on the left of a cat, in the snow")
'a photo of a dog on the right of a cat, in the snow'
>>> flip_caption("a cup above a book")  # vertical relations survive a horizontal flip
'a cup above a book'
>>> flip_caption("a man raising his left hand") is None
True

```
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..relations import CONVERSE, MultipleRelationsError, parse_spatial_prompt

__all__ = [
    "INTERPOLATION_MODES",
    "AugmentationPlan",
    "TrainTransform",
    "TransformConfig",
    "augmentation_rng",
    "caption_variants",
    "flip_caption",
    "image_to_tensor",
    "plan_augmentation",
]

_LEFT_RIGHT_RE = re.compile(r"(?<![\w-])(left|right)(?:most|wards?|-hand(?:ed)?)?(?![\w])", re.IGNORECASE)


def _swap_left_right(text: str) -> str:
    def swap(match: re.Match) -> str:
        word = match.group(0)
        core = match.group(1)
        other = {"left": "right", "right": "left"}[core.lower()]
        if core.isupper():
            other = other.upper()
        elif core[0].isupper():
            other = other.capitalize()
        return other + word[len(core) :]

    return _LEFT_RIGHT_RE.sub(swap, text)


def flip_caption(caption: str) -> str | None:
    """The caption of the horizontally mirrored image, or None when it cannot be written safely.

    - A spatial prompt with a left/right relation keeps its words and object order and swaps "left" and "right"
      in the relation phrase ("on the left of" -> "on the right of").
    - Any other caption is returned unchanged if it says neither "left" nor "right" anywhere (above, below, in
      front of, behind and next to are unchanged by a mirror, and so is a caption without a relation).
    - None if "left" / "right" appear where a mirror would make them wrong and no rewrite is certain: outside the
      relation phrase ("a left shoe above a box"), or in a caption with two relation phrases.
    """
    try:
        prompt = parse_spatial_prompt(caption)
    except MultipleRelationsError:
        return None if _LEFT_RIGHT_RE.search(caption) else caption
    if prompt is None:
        return None if _LEFT_RIGHT_RE.search(caption) else caption
    outside = prompt.prefix + prompt.subject + prompt.before_phrase + prompt.after_phrase + prompt.object
    if _LEFT_RIGHT_RE.search(outside + prompt.suffix):
        return None
    if prompt.relation not in ("left_of", "right_of"):
        return caption
    mirrored = dataclasses.replace(prompt, relation=CONVERSE[prompt.relation], phrase=_swap_left_right(prompt.phrase))
    return mirrored.render()


def caption_variants(captions: str | Sequence[str]) -> list[str]:
    """The captions a row offers: one string, or a list of strings (one picked per epoch)."""
    if isinstance(captions, str):
        return [captions]
    return [str(c) for c in captions]


# diffusers' scripts name torchvision's InterpolationMode members; these are PIL's filters of the same names.
_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "nearest_exact": Image.Resampling.NEAREST,  # PIL's nearest already samples pixel centres
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
INTERPOLATION_MODES = tuple(_RESAMPLING)


@dataclass
class TransformConfig:
    """How training images are resized, cropped and flipped (the familiar diffusers options)."""

    resolution: int = dataclasses.field(
        default=512, metadata={"help": "Square training size: the shorter side is resized to it, then cropped."}
    )
    center_crop: bool = dataclasses.field(default=False, metadata={"help": "Center crop instead of a random crop."})
    random_flip: bool = dataclasses.field(
        default=False,
        metadata={"help": "Mirror half the samples horizontally, rewriting left <-> right in their captions."},
    )
    interpolation: str = dataclasses.field(
        default="lanczos", metadata={"help": f"Resize filter, one of {', '.join(INTERPOLATION_MODES)}."}
    )

    def __post_init__(self):
        if not isinstance(self.resolution, int) or self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8, got {self.resolution!r}")
        if self.interpolation not in _RESAMPLING:
            raise ValueError(f"interpolation must be one of {INTERPOLATION_MODES}, got {self.interpolation!r}")


@dataclass(frozen=True)
class AugmentationPlan:
    """The random decisions for one sample: caption index, crop position (fractions in [0, 1]) and flip."""

    caption_index: int
    crop_x: float
    crop_y: float
    flip: bool


def augmentation_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's augmentation: a pure function of (seed, epoch, row index)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


def plan_augmentation(rng: np.random.Generator, captions: Sequence[str], config: TransformConfig) -> AugmentationPlan:
    """Draw one sample's augmentation; always the same number of draws, so plans never shift each other.

    A flip is only planned when `flip_caption` can rewrite the chosen caption.
    """
    caption_index = int(rng.integers(len(captions)))
    crop_x, crop_y, coin = rng.random(3)
    if config.center_crop:
        crop_x = crop_y = 0.5
    flip = bool(config.random_flip and coin < 0.5 and flip_caption(captions[caption_index]) is not None)
    return AugmentationPlan(caption_index, float(crop_x), float(crop_y), flip)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [-1, 1], as the VAE expects."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


class TrainTransform:
    """Resize the shorter side, crop a square, maybe flip; returns what the training step and SDXL need.

    Examples:

    ```py
    >>> from PIL import Image
    >>> transform = TrainTransform(TransformConfig(resolution=32, center_crop=True, random_flip=True))
    >>> out = transform(Image.new("RGB", (64, 48)), ["a dog to the left of a cat"], AugmentationPlan(0, 0.5, 0.5, True))
    >>> tuple(out["pixel_values"].shape), out["caption"], out["original_size"], out["crop_top_left"]
    ((3, 32, 32), 'a dog to the right of a cat', (48, 64), (0, 5))

    ```
    """

    def __init__(self, config: TransformConfig):
        self.config = config

    def __call__(self, image: Image.Image, captions: Sequence[str], plan: AugmentationPlan) -> dict:
        size = self.config.resolution
        image = image.convert("RGB")
        original_size = (image.height, image.width)
        scale = size / min(image.width, image.height)
        new_w, new_h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        if (new_w, new_h) != (image.width, image.height):
            image = image.resize((new_w, new_h), resample=_RESAMPLING[self.config.interpolation])
        top = round(plan.crop_y * (new_h - size))
        left = round(plan.crop_x * (new_w - size))
        image = image.crop((left, top, left + size, top + size))
        caption = captions[plan.caption_index]
        if plan.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            caption = flip_caption(caption)
            left = new_w - size - left  # the crop window's position in the mirrored resized image (SDXL crop ids)
        return {
            "pixel_values": image_to_tensor(image),
            "caption": caption,
            "original_size": original_size,
            "crop_top_left": (top, left),
        }
