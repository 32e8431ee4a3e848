"""The world base model's card (README.md) and its learning-curve plot.

The card says exactly what the model is: a tiny text-to-image model of a synthetic world, trained from scratch by
`examples/pretrain_world.py` on LAION-like captions, for showing what ESPLoRA and TORE do; not a general image
generator. It carries the learning curve measured during pretraining (relation accuracy vs steps, judged by the
world's exact perception).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from ..utils.atomic import atomic_write_text

__all__ = ["plot_learning_curve", "read_learning_curve", "write_world_model_card"]

_RELATIONS = ("left_of", "right_of", "above", "below", "in_front_of", "behind")


def read_learning_curve(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a `learning_curve.jsonl`, one per evaluation, in step order (damaged lines are named)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{os.fspath(path)}:{number}: not a JSON learning-curve record ({e})") from None
            records.append(record)
    return sorted(records, key=lambda r: r["step"])


def plot_learning_curve(path: str | os.PathLike, out: str | os.PathLike) -> None:
    """Plot relation accuracy (overall and per relation) and objects found against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_learning_curve(path)
    if not records:
        return
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    left, right = axes
    left.plot(steps, [r.get("objects_found", float("nan")) for r in records], "k--", label="both objects found")
    left.plot(steps, [r.get("accuracy", float("nan")) for r in records], "k-", lw=2, label="relation correct")
    left.set(title="World base model during pretraining", xlabel="UNet steps", ylabel="share of images", ylim=(0, 1))
    left.legend(loc="lower right")
    for relation in _RELATIONS:
        values = [r.get(f"accuracy/{relation}") for r in records]
        if any(v is not None for v in values):
            right.plot(steps, [float("nan") if v is None else v for v in values], marker="o", ms=3, label=relation)
    right.set(title="Accuracy per relation (esplora protocol)", xlabel="UNet steps", ylabel="accuracy", ylim=(0, 1))
    right.legend(loc="lower right", ncols=2)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _curve_table(records: list[dict[str, Any]]) -> str:
    relations = [r for r in _RELATIONS if any(f"accuracy/{r}" in rec for rec in records)]
    header = "| step | objects found | relation accuracy | " + " | ".join(relations) + " | order gap | s / step |"
    rule = "| ---: " * (5 + len(relations)) + "|"
    rows = []
    for r in records:
        per = " | ".join(f"{r.get(f'accuracy/{rel}', float('nan')):.2f}" for rel in relations)
        rows.append(
            f"| {r['step']} | {r.get('objects_found', float('nan')):.2f} | {r.get('accuracy', float('nan')):.2f} | "
            f"{per} | {r.get('order_gap', float('nan')):+.2f} | {r.get('seconds_per_step', float('nan')):.2f} |"
        )
    return "\n".join([header, rule, *rows])


def write_world_model_card(
    output_dir: str | os.PathLike,
    *,
    args: dict[str, Any],
    curve_path: str | os.PathLike | None = None,
    model_config: Any = None,
    text_encoder_eval: dict[str, float] | None = None,
) -> Path:
    """Write `README.md` for a world base model folder (and `learning_curve.{jsonl,png}` beside it).

    Args:
        output_dir: the model folder.
        args: the pretraining script's arguments (the card lists the ones that shape the model).
        curve_path: the UNet stage's `learning_curve.jsonl`.
        model_config: the `WorldModelConfig` (sizes).
        text_encoder_eval: the text encoder stage's held-out figures (`mirror_accuracy`, `layout_accuracy`).
    """
    output_dir = Path(output_dir)
    records = read_learning_curve(curve_path) if curve_path and Path(curve_path).exists() else []
    if records:
        atomic_write_text(output_dir / "learning_curve.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        plot_learning_curve(output_dir / "learning_curve.jsonl", output_dir / "learning_curve.png")
    metadata = {
        "license": "apache-2.0",
        "library_name": "diffusers",
        "pipeline_tag": "text-to-image",
        "tags": ["diffusers-spatial", "spatial-relations", "synthetic", "stable-diffusion", "text-to-image"],
    }
    settings = {
        k: args[k]
        for k in (
            "seed",
            "relations",
            "text_encoder_steps",
            "vae_steps",
            "max_train_steps",
            "train_batch_size",
            "learning_rate",
            "ema_decay",
            "conditioning_dropout",
        )
        if k in args
    }
    last = records[-1] if records else None
    headline = (
        f"At step {last['step']}: both objects found in {last.get('objects_found', float('nan')):.0%} of images, "
        f"relation right in {last.get('accuracy', float('nan')):.0%} (esplora protocol, world perception)."
        if last
        else "No learning curve was recorded."
    )
    sizes = f"\n\nSizes: `{json.dumps(model_config.to_dict())}`." if model_config is not None else ""
    mirror = (
        f" On 1024 held-out images it matches each image's caption better than the mirrored caption "
        f"{text_encoder_eval['mirror_accuracy']:.1%} of the time: the text it hands the UNet carries the relation."
        if text_encoder_eval and "mirror_accuracy" in text_encoder_eval
        else ""
    )
    layout = (
        f" From its token states alone, the layout head puts the subject on the relation's side of the object in "
        f"{text_encoder_eval['layout_accuracy']:.1%} of held-out captions."
        if text_encoder_eval and "layout_accuracy" in text_encoder_eval
        else ""
    )
    bias = (
        f" Word-order bias: relation accuracy differs by {last['order_gap']:+.0%} between the two orders of naming "
        "the objects (`order_gap`), the kind of bias TORE exploits."
        if last and "order_gap" in last
        else ""
    )
    text = f"""---
{yaml.safe_dump(metadata, sort_keys=False)}---

# World base model (diffusers-spatial proving ground)

**This is not a general text-to-image model.** It is a tiny Stable Diffusion 1.x-format pipeline (CLIP text
encoder, KL VAE, `UNet2DConditionModel`, v-prediction DDIM scheduler) trained from scratch on the synthetic
**spatial world** of diffusers-spatial (`diffusers_spatial.world`): 32 x 32
images of two flat-coloured shapes (red / green / blue / yellow circle, square, triangle). It exists to show, with
exact ground truth, what ESPLoRA (spatial LoRA fine-tuning) and TORE (bias-aware prompt rewriting) do to a model
that learned from web-like captions.

## How it was trained (`examples/pretrain_world.py`)

1. Text encoder: the text tower of a CLIP trained contrastively on world images and true captions (mirrored
   captions as hard negatives) and, through a layout readout head (one query per cell of an 8 x 8 grid attends to
   the token states, as the UNet's cross-attention does, and paints the cell's colour), to say where each named
   object goes; then frozen (docs/world.md, "the text encoder").{mirror}{layout}
2. VAE: a KL autoencoder on world images.
3. UNet: on **LAION-like** captions: two thirds only list the objects ("a red circle and a blue square"), named in
   reading order 80% of the time; a third state a relation, and a quarter of those state it mirrored. Such data
   teaches what to draw first; how much of the relations it teaches, and in which direction it is biased, is what
   the learning curve below measures.

Settings: `{json.dumps(settings)}`.{sizes}

## Learning curve

{headline}{bias} Every point: the whole `world` suite (36 object pairs x 4 relations x 2 object orders), 20 DDIM steps,
guidance 4, judged by the world's exact perception (`load_detector("world")`) under the `esplora` protocol.

![learning curve](learning_curve.png)

{_curve_table(records) if records else ""}

## Use

```python
from diffusers_spatial.world import world_model_path
from diffusers_spatial.pipelines import SpatialLoRAPipeline

pipe = SpatialLoRAPipeline.from_pretrained(world_model_path())
image = pipe("a red circle to the left of a blue square", num_inference_steps=20, guidance_scale=4.0).images[0]
```

## Licence and limits

Apache-2.0, like the code that trained it; the training images are rendered by that code (no third-party data).
It knows twelve objects, four (or six) relations and one sentence pattern; any other prompt gives noise.
"""
    atomic_write_text(output_dir / "README.md", text)
    return output_dir / "README.md"
