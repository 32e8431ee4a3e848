"""Spatial accuracy of a text-to-image pipeline on the world, in memory: the pretraining's learning curve.

`evaluate_world_model(pipe)` generates the `world` suite (every object pair, four relations, both object orders)
with one seeded generator per image, perceives the images with the world's exact detector and judges them with
the training validation's scorer (`training.validation.SpatialValidationScorer`, i.e. `perception.score_results`
and `geometry.aggregate`): the same judge as the metric, the bench and TORE calibration. Nothing touches the disk,
so it can run every few thousand steps of a training run; `diffusers-spatial bench` is the resumable, on-disk
comparison.

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

import torch
from PIL import Image

from ..generation import image_seed
from ..suites import SuitePrompt, build_suite

__all__ = ["WorldEvaluation", "evaluate_world_model", "world_scorer"]


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
    return WorldEvaluation([p for p, _ in items], images, scores, metrics)
