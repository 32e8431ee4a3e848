"""Monocular depth with Hugging Face models (Depth Anything / Depth Anything V2, DPT / MiDaS) by model id or folder.

`HFDepthEstimator.estimate(images)` returns, per image, an H x W float32 map of **relative inverse depth**
(larger = nearer; the MiDaS / DPT / Depth Anything convention the geometry expects) at the image's own size.
Metric Depth Anything checkpoints (`depth_estimation_type="metric"`, larger = farther, in metres) are turned
into inverse depth (1 / depth) so every backend honours the same convention.

Processors that keep the aspect ratio (Depth Anything: short side 518, multiples of 14) give each image its
own input size; images are therefore preprocessed one by one and batched with the others of the same input
size, so mixed sizes batch as far as they can without padding artefacts.

Examples:

```py
>>> from diffusers_spatial.perception.hf_depth import HFDepthEstimator
>>> depth = HFDepthEstimator("depth-anything/Depth-Anything-V2-Large-hf", device="cuda")  # doctest: +SKIP
>>> depth.estimate([image])[0].shape == (image.height, image.width)  # doctest: +SKIP
True

```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import (
    ModelLoadError,
    ResolvedModel,
    load_pretrained,
    load_processor,
    resolve_device,
    resolve_dtype,
    resolve_model,
)
from .images import check_rgb_images

__all__ = ["DEPTH_MODEL_TYPES", "HFDepthEstimator"]

DEPTH_MODEL_TYPES = ("depth_anything", "dpt")
"""Architectures `HFDepthEstimator` runs (through `AutoModelForDepthEstimation`)."""

_MIN_METRIC_DEPTH = 1e-3  # metres; guards 1 / depth


class HFDepthEstimator:
    """Relative inverse depth from a DPT or Depth Anything model.

    Args:
        model_name_or_path: Hugging Face model id or local folder (`save_pretrained` output), or a preset resolved
            by `load_depth_estimator`.
        device: torch device; default CUDA when available, else CPU.
        torch_dtype: weights' dtype (torch dtype or name such as "float16"); default float32.
        batch_size: images per forward pass (among images of the same input size).

    Raises:
        ModelLoadError: (a ValueError) the path is missing, holds no model, or a model that is not DPT / Depth
            Anything; the message names the path.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | ResolvedModel,
        *,
        device: Any = None,
        torch_dtype: Any = None,
        batch_size: int = 8,
    ):
        resolved = (
            model_name_or_path
            if isinstance(model_name_or_path, ResolvedModel)
            else resolve_model(model_name_or_path, "depth")
        )
        if resolved.model_type not in DEPTH_MODEL_TYPES:
            hint = ""
            if resolved.model_type in ("owlvit", "owlv2", "grounding-dino", "detr", "mask2former"):
                hint = " (it is a detector: use load_detector)"
            raise ModelLoadError(
                f"depth model {resolved.name!r} is a {resolved.model_type!r} model "
                f"({', '.join(resolved.architectures) or 'no architectures listed'}), not a supported depth "
                f"model{hint}; supported: {list(DEPTH_MODEL_TYPES)}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.name = resolved.name
        self.model_type = resolved.model_type
        self.metric = getattr(resolved.config, "depth_estimation_type", "relative") == "metric"
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(torch_dtype)
        self.processor = load_processor(AutoImageProcessor, resolved, "depth")
        model = load_pretrained(AutoModelForDepthEstimation, resolved, "depth", dtype=self.dtype)
        self.model = model.to(self.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, device={str(self.device)!r})"

    def estimate(self, images: Sequence[Any]) -> list[np.ndarray]:
        """Relative inverse depth (larger = nearer), H x W float32, at each image's size.

        Args:
            images: RGB `PIL.Image.Image`s of any sizes.
        """
        import torch

        images = check_rgb_images(images)
        pixel_values = [self.processor(images=image, return_tensors="pt")["pixel_values"] for image in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, values in enumerate(pixel_values):
            groups.setdefault(tuple(values.shape[1:]), []).append(i)
        results: list[np.ndarray | None] = [None] * len(images)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = torch.cat([pixel_values[i] for i in chunk]).to(self.device, dtype=self.dtype)
                with torch.no_grad():
                    predicted = self.model(pixel_values=batch).predicted_depth.float()
                if self.metric:
                    predicted = 1.0 / predicted.clamp(min=_MIN_METRIC_DEPTH)
                for row, i in enumerate(chunk):
                    results[i] = _resize_depth(predicted[row], images[i].height, images[i].width)
        return results  # type: ignore[return-value]


def _resize_depth(depth: Any, height: int, width: int) -> np.ndarray:
    import torch.nn.functional as F

    if depth.ndim == 3:  # some heads keep a channel axis
        depth = depth[0]
    resized = F.interpolate(depth[None, None], size=(height, width), mode="bicubic", align_corners=False)
    return resized[0, 0].cpu().numpy().astype(np.float32, copy=False)
