"""The world base model that ships with the package (`assets/world-base`): where it is, and what it is.

It is the output of `examples/pretrain_world.py` (a diffusers `StableDiffusionPipeline` folder with its model card,
`world_config.json` and learning curve), small enough to install with the package, so that the README's first
command shows ESPLoRA and TORE at work on a CPU without downloading anything.

Examples:

```py
>>> from diffusers_spatial.world import world_model_path
>>> (world_model_path() / "model_index.json").is_file()
True

```
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WORLD_MODEL_NOTICE", "world_model_path"]

WORLD_MODEL_NOTICE = (
    "SYNTHETIC WORLD: these figures are measured on the world base model, a tiny text-to-image model trained from "
    "scratch on 32 x 32 images of coloured shapes (docs/world.md), judged by the world's exact perception. They show "
    "what ESPLoRA and TORE do to a model that learned from web-like captions; they are not Stable Diffusion figures."
)


def world_model_path() -> Path:
    """The folder of the shipped world base model (load it with any diffusers pipeline's `from_pretrained`).

    Raises:
        FileNotFoundError: the package was built without it (the message says how to make one).
    """
    path = Path(__file__).resolve().parent.parent / "assets" / "world-base"
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"the world base model is not in {path}: this installation lacks it; train one with "
            "`accelerate launch examples/pretrain_world.py --output_dir world-base` and pass that folder instead"
        )
    return path
