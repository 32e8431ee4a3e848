"""Validation during training: spatial prompts, generated images, their per-relation accuracy, and the trackers.

`run_validation` generates `num_images_per_prompt` images for each prompt with a fixed seed (so successive
validations are comparable), and, given a scorer, judges each image with the spatial metric: perception
(`diffusers_spatial.perception.Perception`, the embedded offline detector by default) finds the objects and
`diffusers_spatial.geometry.score_image` decides the relation under a protocol ("esplora" by default). The
result holds a grid image (one row per prompt) and metrics:

- `accuracy`: share of scored images whose relation is right (undetermined counts as not right);
- `accuracy/<relation>`: share of right verdicts among the decided images of that relation (the bias table's
  per-relation rate, `geometry.aggregate(...)["per_relation"]`);
- `objects_found`: share of images where both objects were found;
- `coverage`: share of images the protocol decided (the rest are undetermined, with a reason).

Scoring is optional (`load_validation_scorer("auto")` returns None with a warning when perception or geometry is
unavailable), so training never depends on it.

Examples:

```py
>>> from diffusers_spatial.training.validation import load_validation_prompts
>>> load_validation_prompts("a dog to the left of a cat", None, None)
['a dog to the left of a cat']
>>> len(load_validation_prompts(None, None, "sr2d", num_pairs=1, seed=0))  # 4 relations x 2 object orders
8

```
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = [
    "SpatialValidationScorer",
    "ValidationResult",
    "load_validation_prompts",
    "log_validation",
    "load_validation_scorer",
    "run_validation",
]

logger = logging.getLogger(__name__)


def _read_prompt_file(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        items = data if isinstance(data, list) else data.get("prompts", [])
    elif path.suffix == ".jsonl":
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        items = [line.strip() for line in text.splitlines() if line.strip()]
    prompts = [item["prompt"] if isinstance(item, dict) else str(item) for item in items]
    if not prompts:
        raise ValueError(f"validation prompt file {os.fspath(path)!r} holds no prompts")
    return prompts


def load_validation_prompts(
    validation_prompt: str | None,
    validation_prompts: Sequence[str] | None,
    validation_suite: str | None,
    num_pairs: int = 2,
    seed: int | None = 0,
) -> list[str]:
    """All validation prompts from `--validation_prompt`, `--validation_prompts` (strings or one file) and a suite.

    A single `--validation_prompts` value naming an existing .txt / .json / .jsonl file is read as a file.
    """
    prompts: list[str] = []
    if validation_prompt:
        prompts.append(validation_prompt)
    if validation_prompts:
        if len(validation_prompts) == 1 and Path(validation_prompts[0]).suffix in (".txt", ".json", ".jsonl"):
            path = Path(validation_prompts[0])
            if not path.is_file():
                raise ValueError(f"--validation_prompts file {validation_prompts[0]!r} does not exist")
            prompts.extend(_read_prompt_file(path))
        else:
            prompts.extend(validation_prompts)
    if validation_suite:
        from ..suites import build_suite

        prompts.extend(p.prompt for p in build_suite(validation_suite, num_pairs=num_pairs, seed=seed or 0))
    return list(dict.fromkeys(prompts))


class SpatialValidationScorer:
    """Judge validation images with the spatial metric: `Perception` finds objects, `geometry` decides.

    Args:
        protocol: a `diffusers_spatial.geometry` protocol name ("esplora", "visor", "geneval", ...).
        perception: a `diffusers_spatial.perception.Perception` (default: the embedded offline detector, no depth
            model: in front of / behind use the protocol's geometric fallback, labelled low confidence).
    """

    def __init__(self, protocol: str = "esplora", perception=None):
        from ..geometry import get_protocol
        from ..perception import Perception

        self.protocol = get_protocol(protocol).name  # fails early, naming the known protocols
        self.perception = perception if perception is not None else Perception(progress=False)

    def __call__(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list:
        """One `geometry.ImageScore` per image whose prompt is a spatial prompt (others are left out).

        An image whose verdict perception cannot support (e.g. a noun the detector cannot see) is undetermined
        with the reason, never scored as "not found" (`perception.score_results`).
        """
        from ..perception import score_results

        found = [r for r in self.perception.run(list(images), list(prompts)) if r.prompt is not None]
        return score_results(found, protocol=self.protocol) if found else []

    def metrics(self, scores: Sequence) -> dict[str, float]:
        """Tracker scalars from `geometry.aggregate`: `accuracy` (correct / images), `accuracy/<relation>`
        (correct / decided images of that relation), `objects_found`, `coverage` (decided / images)."""
        if not scores:
            return {}
        from ..geometry import aggregate

        figures = aggregate(self.protocol, scores)
        n = figures["n_images"]
        metrics = {
            "accuracy": sum(s.correct is True for s in scores) / n,
            "objects_found": figures["object_accuracy"]["both"],
            "coverage": sum(s.correct is not None for s in scores) / n,
            "num_images": float(n),
        }
        for relation, stats in sorted(figures["per_relation"].items()):
            metrics[f"accuracy/{relation}"] = stats["rate"]
        return metrics


def load_validation_scorer(mode: str = "auto", protocol: str = "esplora") -> SpatialValidationScorer | None:
    """The scorer for `--validation_scoring`: "off" -> None; "auto" -> None (with a warning) if unavailable;
    "on" -> raise if unavailable."""
    if mode == "off":
        return None
    if mode not in ("auto", "on"):
        raise ValueError(f"--validation_scoring must be auto, on or off, got {mode!r}")
    try:
        return SpatialValidationScorer(protocol)
    except (ImportError, OSError) as err:
        if mode == "on":
            raise RuntimeError(f"--validation_scoring on, but the spatial metric cannot be loaded: {err}") from err
        logger.warning(f"Validation images will not be scored (spatial metric unavailable: {err}).")
        return None


@dataclass
class ValidationResult:
    """Images per prompt, their verdicts (if scored) and metrics."""

    prompts: list[str]
    images: list[list[Image.Image]]
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def grid(self) -> Image.Image:
        """All images, one row per prompt."""
        from diffusers.utils import make_image_grid

        flat = [image for row in self.images for image in row]
        return make_image_grid(flat, rows=len(self.images), cols=len(self.images[0]))

    def save(self, folder: str | os.PathLike, tag: str) -> Path:
        """Write `<tag>.png` (the grid) and `<tag>.json` (prompts, metrics, verdicts) into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.grid().save(folder / f"{tag}.png")
        record = {"prompts": self.prompts, "metrics": self.metrics, "verdicts": self.verdicts}
        (folder / f"{tag}.json").write_text(json.dumps(record, indent=2, default=str))
        return folder / f"{tag}.png"

    def log(self, accelerator, tag: str, step: int) -> None:
        """Send the grid and the metrics to the run's trackers (tensorboard, wandb; scalars to all)."""
        if self.metrics:
            accelerator.log({f"{tag}/{k}": v for k, v in self.metrics.items()}, step=step)
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                np_images = np.stack([np.asarray(self.grid())])
                tracker.writer.add_images(tag, np_images, step, dataformats="NHWC")
            elif tracker.name == "wandb":
                import wandb

                tracker.log(
                    {
                        tag: [
                            wandb.Image(image, caption=f"{i}: {prompt}")
                            for prompt, row in zip(self.prompts, self.images)
                            for i, image in enumerate(row)
                        ]
                    },
                    step=step,
                )


@torch.no_grad()
def run_validation(
    pipeline,
    prompts: Sequence[str],
    *,
    num_images_per_prompt: int = 4,
    num_inference_steps: int = 30,
    guidance_scale: float = 7.5,
    resolution: int | None = None,
    seed: int | None = 0,
    scorer=None,
) -> ValidationResult:
    """Generate and (optionally) score validation images.

    Args:
        pipeline: a text-to-image pipeline on its device (SD or SDXL), with the LoRA being trained.
        prompts: validation prompts.
        num_images_per_prompt / num_inference_steps / guidance_scale: generation settings.
        resolution: height and width (default: the pipeline's).
        seed: one generator per prompt seeded with it, so validations along a run are comparable.
        scorer: a `SpatialValidationScorer` or None.
    """
    images = []
    for prompt in prompts:
        generator = torch.Generator(device=pipeline.device).manual_seed(seed or 0)
        size = {"height": resolution, "width": resolution} if resolution else {}
        out = pipeline(
            prompt,
            num_images_per_prompt=num_images_per_prompt,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            **size,
        )
        images.append(list(out.images))
    result = ValidationResult(list(prompts), images)
    if scorer is not None:
        flat_images = [image for row in images for image in row]
        flat_prompts = [prompt for prompt, row in zip(prompts, images) for _ in row]
        scores = scorer(flat_images, flat_prompts)
        result.verdicts = [s.to_dict() for s in scores]
        result.metrics = scorer.metrics(scores)
    return result


def log_validation(pipeline, args, accelerator, prompts, scorer, step: int, weight_dtype, tag: str = "validation"):
    """The scripts' validation: generate `args.num_validation_images` per prompt on the accelerator's device,
    score them, save `<output_dir>/validation/<tag>-<step>.{png,json}` and log grid + metrics to the trackers."""
    logger.info(f"Running {tag}: {args.num_validation_images} images for each of {len(prompts)} prompts.")
    pipeline = pipeline.to(accelerator.device)
    pipeline.set_progress_bar_config(disable=True)
    autocast = torch.autocast(accelerator.device.type, dtype=weight_dtype, enabled=weight_dtype != torch.float32)
    with autocast:
        result = run_validation(
            pipeline,
            prompts,
            num_images_per_prompt=args.num_validation_images,
            num_inference_steps=args.validation_inference_steps,
            guidance_scale=args.validation_guidance_scale,
            resolution=args.resolution,
            seed=args.seed,
            scorer=scorer,
        )
    result.save(Path(args.output_dir, "validation"), tag=f"{tag}-{step:06d}")
    result.log(accelerator, tag=tag, step=step)
    if result.metrics:
        logger.info(f"{tag} spatial accuracy at step {step}: {result.metrics}")
    return result
