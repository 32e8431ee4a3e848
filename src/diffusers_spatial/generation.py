"""Resumable, batched, seeded image generation for spatial prompt suites, with any diffusers text-to-image pipeline.

Layout of an output folder:

```
out_dir/
  images/<prompt_id>_<k>.png         image k of each prompt
  generations.jsonl                  the manifest: one JSON line per image (see `GeneratedImage`)
  generations-<rank>-of-<world>.jsonl  per-process manifests while a multi-process run is going (merged at its end)
  prompts.jsonl                      one line per prompt, its images named relative to images/: the prompts
                                     file for `diffusers-spatial evaluate OUT/images --prompts OUT/prompts.jsonl`
```

How the guarantees are kept:

- **Seeds.** Image k of prompt p gets its own `torch.Generator` (on the CPU, so a seed means the same starting noise
  on any device) seeded with `image_seed(seed, p, k)`. Which batch or which process an image falls into, and whether
  the run was resumed, do not change its noise (only float rounding: another batch size runs other kernels, which
  can move a pixel by a level or two). TORE or a LoRA do not change it either, so the four runs of a
  baseline / +TORE / +LoRA / +LoRA+TORE comparison start from the same noise, image for image.
- **Resume.** Each batch's PNGs are written first (to a temporary name, then renamed, so no file is ever half
  written), then the batch's manifest lines are appended and flushed in one write. An image counts as done only when
  it has a manifest line AND its file exists: an orphan PNG (killed before its line) or a line whose file is gone is
  generated again, and nothing is generated twice. A manifest line made with another prompt, seed, model or
  settings is refused (mixing them would corrupt the comparison): use another folder.
- **Several processes** (`accelerate launch` / `torchrun`): every process reads the manifests, the missing images
  are split between processes (`PartialState.split_between_processes`), each process appends to its own
  `generations-<rank>-of-<world>.jsonl`, and at the end the main process merges everything into
  `generations.jsonl` (written to a temporary file, then renamed) and deletes the per-process files. A run killed
  before the merge leaves per-process files behind; the next run (with any number of processes) reads them too.

Examples:

```py
>>> import tempfile
>>> from diffusers_spatial.generation import generate_images
>>> from diffusers_spatial.suites import build_suite
>>> from diffusers_spatial.utils import make_tiny_sd
>>> pipe = make_tiny_sd()  # a tiny random model; use load_generation_pipeline("<hub id>") for a real one
>>> suite = build_suite("sr2d", num_pairs=1)[:2]
>>> out_dir = tempfile.mkdtemp()
>>> images = generate_images(pipe, suite, out_dir, images_per_prompt=2, num_inference_steps=2, height=32, width=32,
...                          progress=False)
>>> [g.image for g in images]
['images/sr2d-000000_0.png', 'images/sr2d-000000_1.png', 'images/sr2d-000001_0.png', 'images/sr2d-000001_1.png']
>>> images[1].prompt, images[1].seed == image_seed(0, "sr2d-000000", 1)
('a sink to the left of a toaster', True)

```
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import logging

from .metric.results import ResultsStore
from .suites import SuitePrompt
from .utils.atomic import atomic_write_text
from .utils.distributed import process_state

logger = logging.get_logger(__name__)

__all__ = [
    "GeneratedImage",
    "MANIFEST_NAME",
    "PROMPTS_NAME",
    "describe_pipeline",
    "generate_images",
    "image_seed",
    "load_generation_pipeline",
    "process_state",
    "prompt_id_for",
    "read_manifest",
]

MANIFEST_NAME = "generations.jsonl"
PROMPTS_NAME = "prompts.jsonl"
IMAGES_DIR = "images"
_SHARD_MANIFEST_GLOB = "generations-*-of-*.jsonl"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# generate_images sets these itself on every pipeline call.
_RESERVED_CALL_ARGUMENTS = ("prompt", "generator", "num_images_per_prompt", "output_type", "return_dict")
_SUITE_FIELDS = ("suite", "subject", "relation", "object", "fact_id", "order")


@dataclass
class GeneratedImage:
    """One generated image: a line of `generations.jsonl`.

    Args:
        prompt_id: the prompt's id (`SuitePrompt.prompt_id`, or `prompt_id_for(text)` for a plain string).
        image_index: k, the image's index among its prompt's images.
        prompt: the prompt as written in the suite.
        prompt_used: the prompt the pipeline generated from (TORE may have rewritten it; else `prompt`).
        image: the PNG's path relative to the output folder, POSIX style (`images/<prompt_id>_<k>.png`).
        seed: the seed of this image's generator (`image_seed(run_seed, prompt_id, k)`).
        model: what generated it (pipeline class, model id or folder, LoRA, TORE), see `describe_pipeline`.
        settings: the generation settings (run seed, steps, guidance, size, extra pipeline arguments).
        suite, subject, relation, object, fact_id, order: the `SuitePrompt` fields, None for a plain string.
        path: the image's full path (not written to the manifest).
    """

    prompt_id: str
    image_index: int
    prompt: str
    prompt_used: str
    image: str
    seed: int
    model: dict[str, Any]
    settings: dict[str, Any]
    suite: str | None = None
    subject: str | None = None
    relation: str | None = None
    object: str | None = None
    fact_id: str | None = None
    order: str | None = None
    path: Path | None = field(default=None, compare=False)

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        del record["path"]
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any], out_dir: str | os.PathLike) -> GeneratedImage:
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__ and k != "path"}
        return cls(**known, path=Path(out_dir) / record["image"])


def prompt_id_for(prompt: str) -> str:
    """The id of a plain-string prompt: a hash of its text, so the same text always gets the same id (and seeds)."""
    return "prompt-" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def image_seed(seed: int, prompt_id: str, image_index: int) -> int:
    """The seed of image `image_index` of prompt `prompt_id` in a run seeded with `seed` (a 63-bit integer).

    Examples:

    ```py
    >>> image_seed(0, "sr2d-000000", 0) == image_seed(0, "sr2d-000000", 0) != image_seed(0, "sr2d-000000", 1)
    True

    ```
    """
    digest = hashlib.sha256(f"{seed}/{prompt_id}/{image_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def describe_pipeline(pipe) -> dict[str, Any]:
    """What a pipeline is, for the manifest: its class, the model id or folder it was loaded from, and TORE if any.

    A fused LoRA leaves no trace on the pipeline; pass `model_info` to `generate_images` to record it (the CLI and
    `load_generation_pipeline` do).
    """
    info: dict[str, Any] = {"pipeline": type(pipe).__name__, "name_or_path": getattr(pipe, "name_or_path", None)}
    tore = getattr(pipe, "tore", None)
    if tore is not None and hasattr(tore, "to_dict"):
        info["tore"] = tore.to_dict()
    if getattr(pipe, "spatial_lora_scale", None) is not None:  # a SpatialLoRAPipeline with its LoRA
        info["lora_scale"] = pipe.spatial_lora_scale
    return info


@dataclass(frozen=True)
class _WorkItem:
    prompt: SuitePrompt | str
    prompt_id: str
    image_index: int
    seed: int

    @property
    def text(self) -> str:
        return self.prompt.prompt if isinstance(self.prompt, SuitePrompt) else self.prompt

    @property
    def image(self) -> str:
        return f"{IMAGES_DIR}/{self.prompt_id}_{self.image_index}.png"


def _check_positive_int(value: Any, name: str, *, optional: bool = False, minimum: int = 1) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _normalize_prompts(prompts: Sequence[SuitePrompt | str]) -> list[tuple[str, SuitePrompt | str]]:
    if isinstance(prompts, (str, SuitePrompt)) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of SuitePrompt or str, got {type(prompts).__name__}: {prompts!r}")
    if not prompts:
        raise ValueError("prompts is empty: nothing to generate")
    seen: dict[str, int] = {}
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, SuitePrompt):
            text, prompt_id = p.prompt, p.prompt_id
        elif isinstance(p, str):
            text, prompt_id = p, prompt_id_for(p)
        else:
            raise TypeError(f"prompts[{i}] must be a SuitePrompt or a str, got {type(p).__name__}: {p!r}")
        if not text.strip():
            raise ValueError(f"prompts[{i}] is empty")
        if not isinstance(prompt_id, str) or not _SAFE_ID.match(prompt_id):
            raise ValueError(
                f"prompts[{i}] has prompt_id {prompt_id!r}; ids name image files, so use letters, digits, '.', '_', '-'"
            )
        if prompt_id in seen:
            raise ValueError(f"prompts[{seen[prompt_id]}] and prompts[{i}] have the same prompt_id {prompt_id!r}")
        seen[prompt_id] = i
        out.append((prompt_id, p))
    return out


def _jsonable_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    # Only JSON-able call arguments can be compared on resume; objects (callbacks, tensors) are named by type.
    settings = {}
    for key, value in sorted(values.items()):
        try:
            settings[key] = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            settings[key] = f"<{type(value).__name__}>"
    return settings


def _manifest_files(out_dir: Path) -> list[Path]:
    files = sorted(out_dir.glob(_SHARD_MANIFEST_GLOB))
    return [*files, out_dir / MANIFEST_NAME] if (out_dir / MANIFEST_NAME).exists() else files


def read_manifest(out_dir: str | os.PathLike) -> list[GeneratedImage]:
    """The images recorded under `out_dir` whose files exist (every process's manifest), one per image.

    Raises:
        ValueError: a manifest line that is not a generation record (file and line named).
    """
    out_dir = Path(out_dir)
    found: dict[tuple[str, int], GeneratedImage] = {}
    for path in _manifest_files(out_dir):
        for line_no, record in enumerate(ResultsStore(path), 1):
            try:
                generated = GeneratedImage.from_record(record, out_dir)
            except (KeyError, TypeError) as err:
                raise ValueError(
                    f"{path}: record {line_no} is not a generation record ({err!r}): {record!r}"
                ) from None
            if generated.path.is_file():
                found[generated.prompt_id, generated.image_index] = generated
    return list(found.values())


def _check_resumable(done: GeneratedImage, item: _WorkItem, model: dict, settings: dict, out_dir: Path) -> None:
    expected = {"prompt": item.text, "image": item.image, "seed": item.seed, "model": model, "settings": settings}
    for name, value in expected.items():
        previous = getattr(done, name)
        if previous != value:
            raise ValueError(
                f"{out_dir} already holds {done.image} generated with {name} {previous!r}, but this run asks for "
                f"{value!r}; generate into another output folder (or delete this one) instead of mixing runs"
            )


def _save_png(image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def _write_outputs(out_dir: Path, done: list[GeneratedImage], order: dict[tuple[str, int], int]) -> None:
    """Write `generations.jsonl` (every image, run order first) and `prompts.jsonl` (this run's prompts, images
    relative to `images/`, the folder `evaluate` is pointed at so that its own outputs never mix with the images)."""
    ranked = sorted(
        done, key=lambda g: (order.get((g.prompt_id, g.image_index), math.inf), g.prompt_id, g.image_index)
    )
    lines = [json.dumps(g.to_record(), ensure_ascii=False) + "\n" for g in ranked]
    by_prompt: dict[str, dict[str, Any]] = {}
    for g in ranked:
        if (g.prompt_id, g.image_index) not in order:
            continue
        entry = by_prompt.setdefault(
            g.prompt_id, {"prompt_id": g.prompt_id, "prompt": g.prompt, "prompts_used": [], "images": []}
        )
        entry.update({k: getattr(g, k) for k in _SUITE_FIELDS if getattr(g, k) is not None})
        entry["images"].append(posixpath.relpath(g.image, IMAGES_DIR))
        entry["prompts_used"].append(g.prompt_used)
    for name, content in ((MANIFEST_NAME, lines), (PROMPTS_NAME, [json.dumps(e) + "\n" for e in by_prompt.values()])):
        atomic_write_text(out_dir / name, "".join(content))
    for shard in out_dir.glob(_SHARD_MANIFEST_GLOB):
        shard.unlink()


def _manifest_name(process_index: int, num_processes: int) -> str:
    return MANIFEST_NAME if num_processes == 1 else f"generations-{process_index:05d}-of-{num_processes:05d}.jsonl"


def _generate_batch(
    pipe, batch: list[_WorkItem], call_kwargs: dict[str, Any], out_dir: Path, model: dict, settings: dict
) -> list[GeneratedImage]:
    """One pipeline call for a batch of work items (each with its own generator); saves the PNGs."""
    output = pipe(
        prompt=[it.text for it in batch],
        generator=[torch.Generator("cpu").manual_seed(it.seed) for it in batch],
        num_images_per_prompt=1,
        output_type="pil",
        return_dict=True,
        **call_kwargs,
    )
    used = getattr(output, "prompts_used", None)  # a SpatialLoRAPipeline says what it asked the model for
    if not isinstance(used, (list, tuple)) or len(used) != len(batch):
        used = [it.text for it in batch]
    generated = []
    for it, image, prompt_used in zip(batch, output.images, used):
        _save_png(image, out_dir / it.image)
        meta = {k: getattr(it.prompt, k) for k in _SUITE_FIELDS} if isinstance(it.prompt, SuitePrompt) else {}
        generated.append(
            GeneratedImage(
                it.prompt_id, it.image_index, it.text, prompt_used, it.image, it.seed, model, settings, **meta
            )
        )
    return generated


def generate_images(
    pipe,
    prompts: Sequence[SuitePrompt | str],
    out_dir: str | os.PathLike,
    *,
    images_per_prompt: int = 4,
    seed: int = 0,
    batch_size: int = 4,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    height: int | None = None,
    width: int | None = None,
    progress: bool = True,
    model_info: Mapping[str, Any] | None = None,
    **pipe_kwargs,
) -> list[GeneratedImage]:
    """Generate `images_per_prompt` seeded images per prompt into `out_dir`, resuming whatever is already there.

    Args:
        pipe: any diffusers text-to-image pipeline (SD 1.x/2.x, SDXL, SD3.x, FLUX.1, a `SpatialLoRAPipeline` with or without
            TORE), already on its device: this function never moves it.
        prompts: `SuitePrompt`s (their `prompt_id`s name the files) or plain strings (ids: `prompt_id_for`).
        out_dir: output folder (created if missing); see the module docstring for its layout.
        images_per_prompt: images per prompt (VISOR and GenEval use 4).
        seed: run seed; image k of prompt p uses `image_seed(seed, p, k)`, whatever the batch size.
        batch_size: images per pipeline call (they may mix prompts).
        num_inference_steps, guidance_scale, height, width: passed to the pipeline when not None.
        progress: show a tqdm progress bar (on the main process).
        model_info: what generated the images, recorded in the manifest and checked on resume; default
            `describe_pipeline(pipe)`. The orchestrator passes the LoRA / TORE it used.
        **pipe_kwargs: more pipeline arguments (e.g. `negative_prompt`, `eta`), recorded in `settings`.

    Returns:
        One `GeneratedImage` per (prompt, k), in prompt order: those generated now and those found done.

    Raises:
        ValueError / TypeError: bad arguments (before anything is generated), or `out_dir` holding images made with
            another prompt, seed, model or settings for the same prompt id.

    Examples:

    ```py
    pipe = load_generation_pipeline("stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=torch.float16)
    for name, tore in (("baseline", None), ("tore", "my-tore")):  # same prompt ids and seeds: paired images
        pipe.set_tore(tore)
        generate_images(pipe, build_suite("sr2d", num_pairs=50), f"runs/{name}")  # the manifest records the TORE
    ```
    """
    from tqdm.auto import tqdm

    if not callable(pipe):
        raise TypeError(f"pipe must be a diffusers pipeline, got {type(pipe).__name__}")
    _check_positive_int(images_per_prompt, "images_per_prompt")
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(seed, "seed", minimum=0)
    _check_positive_int(num_inference_steps, "num_inference_steps", optional=True)
    _check_positive_int(height, "height", optional=True)
    _check_positive_int(width, "width", optional=True)
    if guidance_scale is not None and (
        isinstance(guidance_scale, bool)
        or not isinstance(guidance_scale, (int, float))
        or not math.isfinite(guidance_scale)
    ):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
    reserved = sorted(set(pipe_kwargs) & set(_RESERVED_CALL_ARGUMENTS))
    if reserved:
        raise ValueError(f"generate_images sets {reserved} itself; do not pass them")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} exists and is not a folder")
    prompts_with_ids = _normalize_prompts(prompts)

    call_kwargs = {
        "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "height": height,
        "width": width,
    }
    call_kwargs = {k: v for k, v in call_kwargs.items() if v is not None} | pipe_kwargs
    settings = _jsonable_settings({"seed": seed, **call_kwargs})
    model = _jsonable_settings(dict(model_info) if model_info is not None else describe_pipeline(pipe))
    items = [
        _WorkItem(p, prompt_id, k, image_seed(seed, prompt_id, k))
        for prompt_id, p in prompts_with_ids
        for k in range(images_per_prompt)
    ]
    order = {(it.prompt_id, it.image_index): i for i, it in enumerate(items)}

    state = process_state()
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    done = {(g.prompt_id, g.image_index): g for g in read_manifest(out_dir)}
    for it in items:
        if (it.prompt_id, it.image_index) in done:
            _check_resumable(done[it.prompt_id, it.image_index], it, model, settings, out_dir)
    missing = [it for it in items if (it.prompt_id, it.image_index) not in done]
    state.wait_for_everyone()  # every process has read the manifests before any process appends to them
    if state.is_main_process:
        logger.info(
            f"{len(items) - len(missing)} of {len(items)} images already in {out_dir}; generating {len(missing)}"
        )

    manifest = ResultsStore(out_dir / _manifest_name(state.process_index, state.num_processes))
    with state.split_between_processes(missing) as mine:
        disable = not progress or not state.is_main_process or not mine
        with tqdm(total=len(mine), desc="Generating", unit="img", disable=disable) as bar:
            for start in range(0, len(mine), batch_size):
                batch = mine[start : start + batch_size]
                generated = _generate_batch(pipe, batch, call_kwargs, out_dir, model, settings)
                manifest.append([g.to_record() for g in generated])  # after the PNGs: a line always has its file
                bar.update(len(batch))

    state.wait_for_everyone()
    if state.is_main_process:
        _write_outputs(out_dir, read_manifest(out_dir), order)
    state.wait_for_everyone()
    finished = {(g.prompt_id, g.image_index): g for g in read_manifest(out_dir)}
    return [finished[it.prompt_id, it.image_index] for it in items]


def load_generation_pipeline(
    model: str | os.PathLike,
    *,
    lora: str | os.PathLike | None = None,
    lora_scale: float | None = None,
    tore: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    torch_dtype: torch.dtype | None = None,
):
    """Load a text-to-image pipeline for `generate_images`: a base model, optionally a spatial LoRA (fused) and TORE.

    Uses `SpatialLoRAPipeline.from_pretrained(model, spatial_lora=lora, lora_scale=..., tore=...)`, which loads SD
    1.x / 2.x and SDXL bases with our LoRA at zero inference cost and applies TORE itself.

    Args:
        model: a Hub model id or a local diffusers folder.
        lora: a diffusers-format LoRA (folder, `.safetensors` file or Hub id), fused at `lora_scale`. Default: the
            one saved with `model` if it is a `SpatialLoRAPipeline` folder.
        lora_scale: the LoRA's scale (default: the one saved with `model`, else 1.0).
        tore: a TORE config (folder, `tore_config.json` or Hub id). Default: the one saved with `model`, if any.
        device: where to run; default: this process's accelerate device (`process_state().device`).
        torch_dtype: e.g. `torch.float16`; default: the checkpoint's.

    Returns:
        The pipeline, on `device`, with its per-step progress bar off (`generate_images` shows one per image).

    Examples:

    ```py
    pipe = load_generation_pipeline(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", lora="esplora-sd15", tore="tore-sd15", torch_dtype=torch.float16
    )
    ```
    """
    from .pipelines.spatial_lora import SpatialLoRAPipeline

    kwargs = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    pipe = SpatialLoRAPipeline.from_pretrained(
        os.fspath(model),
        spatial_lora=None if lora is None else os.fspath(lora),
        lora_scale=lora_scale,
        tore=None if tore is None else os.fspath(tore),
        **kwargs,
    )
    pipe.to(device if device is not None else process_state().device)
    pipe.set_progress_bar_config(disable=True)
    return pipe
