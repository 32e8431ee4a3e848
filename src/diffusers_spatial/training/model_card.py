"""The model card (`README.md`) written next to the LoRA: base model, dataset, metric figures, example images.

It is a Hugging Face model card (YAML metadata: `base_model`, `library_name: diffusers`, `datasets`, LoRA tags, the
validation images as a `widget`) rendered with `huggingface_hub.ModelCard`, so it shows up on the Hub as the
LoRA's page when the scripts `--push_to_hub`.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from ..pipelines.families import SD, ModelFamily

__all__ = ["save_model_card"]

_TEMPLATE = """---
{{ card_data }}
---

# ESPLoRA spatial LoRA - {{ repo_id }}

These are ESPLoRA LoRA weights for [{{ base_model }}]({{ base_model_url }}), trained to put objects where the prompt
says ("a dog to the left of a cat"). Training data: {{ dataset }}.
{% if text_encoder %}LoRA was also trained on the text encoder{{ "s" if several_text_encoders }}.{% endif %}

## Spatial accuracy (validation)

{% if metrics_table %}{{ metrics_table }}

Images judged by the spatial metric (protocol `{{ protocol }}`); undetermined images count as wrong.
{% else %}No validation scores were computed for this run.{% endif %}

{% if images %}## Examples

{% for image in images %}![{{ image.prompt }}](./{{ image.file }})
*{{ image.prompt }}*

{% endfor %}{% endif %}
## How to use

```python
import torch
from diffusers import {{ pipeline_class }}

pipe = {{ pipeline_class }}.from_pretrained("{{ base_model }}", torch_dtype=torch.float16).to("cuda")
pipe.load_lora_weights("{{ repo_id }}")
image = pipe("a cat to the left of a dog").images[0]
```

With diffusers-spatial, `SpatialLoRAPipeline` loads the same file (and can fuse it for zero inference cost).

## Training details

{{ training_details }}
"""


def _metrics_table(metrics: dict[str, float]) -> str:
    rows = ["| metric | value |", "| --- | --- |"]
    for key, value in metrics.items():
        if key == "num_images":
            rows.append(f"| images scored | {int(value)} |")
        else:
            rows.append(f"| {key} | {100 * value:.1f}% |")
    return "\n".join(rows)


def save_model_card(
    output_dir: str | os.PathLike,
    *,
    repo_id: str,
    base_model: str,
    dataset_name: str | None,
    validation=None,
    train_text_encoder: bool = False,
    family: ModelFamily = SD,
    training_args=None,
    mixed_precision: str | None = None,
    max_images: int = 8,
) -> Path:
    """Write `README.md` (and `image_<i>.png` examples) into `output_dir`; return the card's path.

    Args:
        output_dir: the training output folder (holding `pytorch_lora_weights.safetensors`).
        repo_id: the Hub repository (or the folder name when not pushing).
        base_model: `--pretrained_model_name_or_path`.
        dataset_name: `--dataset_name` or `--train_data_dir`.
        validation: the final `ValidationResult` (images and metrics), or None.
        train_text_encoder: whether text-encoder LoRA was trained.
        family: the base model's family (`diffusers_spatial.pipelines.families`): tags, licence, pipeline class.
        training_args: the parsed arguments, summarised under "Training details".
        mixed_precision: the precision the run used (recorded instead of the flag, which may be unset).
        max_images: example images to include.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    images, widget = [], []
    if validation is not None:
        pairs = [(prompt, row[0]) for prompt, row in zip(validation.prompts, validation.images) if row]
        for i, (prompt, image) in enumerate(pairs[:max_images]):
            file = f"image_{i}.png"
            image.save(output_dir / file)
            images.append({"prompt": prompt, "file": file})
            widget.append({"text": prompt, "output": {"url": file}})
    metrics = dict(validation.metrics) if validation is not None and validation.metrics else {}

    details = []
    if training_args is not None:
        for key in (
            "resolution",
            "train_batch_size",
            "gradient_accumulation_steps",
            "max_train_steps",
            "learning_rate",
            "lr_scheduler",
            "rank",
            "snr_gamma",
            "mixed_precision",
            "balance_relations",
            "random_flip",
            "seed",
        ):
            if key == "mixed_precision" and mixed_precision is not None:
                details.append(f"- mixed_precision: {mixed_precision}")
            elif hasattr(training_args, key):
                details.append(f"- {key}: {getattr(training_args, key)}")
    is_local = os.path.exists(base_model)
    card_data = ModelCardData(
        license=family.license,
        library_name="diffusers",
        base_model=None if is_local else base_model,
        datasets=[dataset_name] if dataset_name and not os.path.exists(dataset_name) else None,
        tags=[
            family.hub_tag,
            "stable-diffusion-diffusers" if family.denoiser == "unet" else f"{family.hub_tag}-diffusers",
            "text-to-image",
            "diffusers",
            "diffusers-training",
            "lora",
            "esplora",
            "spatial",
        ],
        widget=widget or None,
        inference=True,
    )
    card = ModelCard.from_template(
        card_data,
        template_str=_TEMPLATE,
        repo_id=repo_id,
        base_model=base_model,
        base_model_url=base_model if is_local else f"https://huggingface.co/{base_model}",
        dataset=dataset_name or "unknown",
        text_encoder=train_text_encoder,
        several_text_encoders=family is not SD,
        metrics_table=_metrics_table(metrics) if metrics else "",
        protocol=getattr(training_args, "validation_protocol", "esplora"),
        images=images,
        pipeline_class=family.pipeline_class,
        training_details="\n".join(details) or "-",
    )
    path = output_dir / "README.md"
    card.save(path)
    return path
