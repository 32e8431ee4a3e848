"""Spatial accuracy of a text-to-image pipeline on the world, in memory: the pretraining's learning curve.

`evaluate_world_model(pipe)` generates the `world` suite (every object pair, four relations, both object orders)
with one seeded generator per image, perceives the images with the world's exact detector and judges them with
the training validation's scorer (`training.validation.SpatialValidationScorer`, i.e. `perception.score_results`
and `geometry.aggregate`): the same judge as the metric, the bench and TORE calibration. Nothing touches the disk,
so it can run every few thousand steps of a training run; `diffusers-spatial bench` is the resumable, on-disk
comparison.

Beside the protocol's figures it reports a second, colour-based reading of the same images (`colour/...`): each
object is located by the centroid of its colour (nearest palette colour per pixel), so an object counts as found
even when its shape is off, and the verdict is split into the relation's axis (horizontal vs vertical) and its
direction. That tells "has not learned relations yet" (axis at chance, 0.5) apart from "learned the axis but not
which object goes where" (axis high, accuracy given found near half of it), which the protocol's single figure
cannot.

Examples:

```py
>>> from diffusers_spatial.world.evaluation import evaluate_world_model
>>> from diffusers_spatial.world.models import build_world_pipeline
>>> result = evaluate_world_model(build_world_pipeline(), num_pairs=1, num_inference_steps=2)  # random weights
>>> sorted(result.metrics)[:3], len(result.images)
(['accuracy', 'accuracy/above', 'accuracy/below'], 8)

```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..generation import image_seed
from ..suites import SuitePrompt, build_suite
from .config import WorldConfig
from .perception import palette_index

__all__ = ["WorldEvaluation", "colour_centroids", "colour_verdict", "evaluate_world_model", "world_scorer"]

# Displacement, as a fraction of the image side, below which two centroids are "at the same place".
_COLOUR_MARGIN = 0.09
_AXIS = {"left_of": 1, "right_of": 1, "above": 0, "below": 0}
_SIGN = {"left_of": 1, "right_of": -1, "above": 1, "below": -1}


def colour_centroids(image: np.ndarray, world: WorldConfig, min_pixels: int = 8) -> dict[str, tuple[float, float]]:
    """`{colour: (y, x)}`: the centroid of the pixels nearest to each world colour (those with >= `min_pixels`)."""
    nearest = palette_index(np.asarray(image)[..., :3], world)  # always the nearest colour: off shades still count
    ys, xs = np.mgrid[0 : nearest.shape[0], 0 : nearest.shape[1]] + 0.5
    centroids = {}
    for index, name in enumerate(world.color_names, start=1):
        mask = nearest == index
        if mask.sum() >= min_pixels:
            centroids[name] = (float(ys[mask].mean()), float(xs[mask].mean()))
    return centroids


def colour_verdict(image: np.ndarray, prompt: SuitePrompt, world: WorldConfig) -> tuple[bool, bool, bool]:
    """`(found, correct, axis_correct)` of a 2D world prompt, read from colour centroids.

    Found: both objects' colours are there. Correct: the object is displaced from the subject along the relation's
    axis and direction by more than 9% of the image side. Axis correct: the displacement is mostly along that axis.
    """
    centroids = colour_centroids(image, world)
    subject, obj = prompt.subject.split()[0], prompt.object.split()[0]
    if subject not in centroids or obj not in centroids or prompt.relation not in _AXIS:
        return False, False, False
    offset = np.subtract(centroids[obj], centroids[subject])  # (dy, dx), object minus subject
    axis = _AXIS[prompt.relation]
    along = _SIGN[prompt.relation] * offset[axis]
    return True, bool(along > _COLOUR_MARGIN * image.shape[0]), bool(abs(offset[axis]) > abs(offset[1 - axis]))


def world_scorer(protocol: str = "esplora"):
    """The validation scorer with the world's exact perception (detector and depth)."""
    from ..perception import Perception
    from ..training.validation import SpatialValidationScorer

    return SpatialValidationScorer(protocol, Perception(detector="world", depth="world", progress=False))


@dataclass
class WorldEvaluation:
    """Prompts, images, verdicts (`geometry.ImageScore`) and the scorer's metrics (`accuracy`, `accuracy/<relation>`,
    `objects_found`, `coverage`), plus `order_gap`: accuracy on prompts written in reading order ("A left of B",
    "A above B") minus accuracy on their converses, the bias TORE exploits."""

    prompts: list[SuitePrompt]
    images: list[Image.Image]
    scores: list[Any]
    metrics: dict[str, float] = field(default_factory=dict)

    def grid(self, columns: int = 8, scale: int = 3) -> Image.Image:
        """The images in rows of `columns`, enlarged `scale` times (nearest neighbour: pixels stay sharp)."""
        from diffusers.utils import make_image_grid

        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in self.images]
        rows = -(-len(images) // columns)
        images += [Image.new("RGB", images[0].size, "white")] * (rows * columns - len(images))
        return make_image_grid(images, rows=rows, cols=columns)


@torch.no_grad()
def evaluate_world_model(
    pipe,
    *,
    suite: str = "world",
    num_pairs: int | None = None,
    images_per_prompt: int = 1,
    seed: int = 0,
    batch_size: int = 64,
    num_inference_steps: int = 20,
    guidance_scale: float = 4.0,
    protocol: str = "esplora",
    scorer=None,
    prompts: Sequence[SuitePrompt] | None = None,
    world: WorldConfig | None = None,
) -> WorldEvaluation:
    """Generate a world suite with `pipe` and judge it (see the module docstring).

    Args:
        pipe: any diffusers text-to-image pipeline (a world base model, with or without a LoRA or TORE).
        suite: "world" or "world_3d".
        num_pairs: object pairs of the suite (None: all 36).
        images_per_prompt: images per prompt; image k of prompt p is seeded with `generation.image_seed`.
        seed: run seed.
        batch_size: images per pipeline call.
        num_inference_steps, guidance_scale: sampling settings.
        protocol: the judging protocol.
        scorer: a prebuilt `world_scorer(protocol)` (reuse it across calls).
        prompts: explicit suite prompts instead of `suite` / `num_pairs`.
        world: the world the model was trained on, for the colour reading (default `WorldConfig()`).
    """
    prompts = list(prompts) if prompts is not None else build_suite(suite, num_pairs=num_pairs)
    items = [(p, k) for p in prompts for k in range(images_per_prompt)]
    images: list[Image.Image] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        out = pipe(
            prompt=[p.prompt for p, _ in batch],
            generator=[torch.Generator("cpu").manual_seed(image_seed(seed, p.prompt_id, k)) for p, k in batch],
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
        )
        images.extend(out.images)
    scorer = scorer or world_scorer(protocol)
    scores = scorer(images, [p.prompt for p, _ in items])
    metrics = scorer.metrics(scores)
    reading = [s.correct is True for (p, _), s in zip(items, scores) if p.relation in ("left_of", "above")]
    converse = [s.correct is True for (p, _), s in zip(items, scores) if p.relation in ("right_of", "below")]
    if reading and converse:
        metrics["order_gap"] = sum(reading) / len(reading) - sum(converse) / len(converse)
    metrics.update(_colour_metrics(images, [p for p, _ in items], world or WorldConfig()))
    return WorldEvaluation([p for p, _ in items], images, scores, metrics)


def _colour_metrics(images: Sequence[Image.Image], prompts: Sequence[SuitePrompt], world: WorldConfig) -> dict:
    verdicts = [colour_verdict(np.asarray(im.convert("RGB")), p, world) for im, p in zip(images, prompts)]
    verdicts = [v for v, p in zip(verdicts, prompts) if p.relation in _AXIS]
    found = [v for v in verdicts if v[0]]
    if not verdicts:
        return {}
    return {
        "colour/objects_found": len(found) / len(verdicts),
        "colour/accuracy_given_found": sum(v[1] for v in found) / len(found) if found else 0.0,
        "colour/axis_given_found": sum(v[2] for v in found) / len(found) if found else 0.0,
    }
