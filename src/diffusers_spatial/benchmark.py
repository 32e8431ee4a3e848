"""The four-way spatial benchmark: a model as it is, with TORE, with a spatial LoRA and with both, on one prompt suite.

`run_bench(config, out_dir)` is a readable sequence of stages built from the library's own pieces:

1. **baseline**: `generation.generate_images` for the suite's evaluation prompts, then `metric.evaluate_items` with
   every protocol;
2. **TORE calibration**: the same model generates the *calibration* prompts / seed (never the evaluation images:
   see "Honesty" below), the metric scores them, and `tore.Tore.from_report` reads the bias table of that report;
3. **+TORE**: the evaluation prompts again, the model asked through TORE;
4. **+LoRA** and **+LoRA+TORE** (when a LoRA is given): the same with the spatial LoRA fused in; the TORE of
   +LoRA+TORE is calibrated on the LoRA model (or reuses the baseline's, `lora_tore_calibration="baseline"`);
5. **compare**: one table of every protocol's headline figure per variant, the per-relation accuracy of the primary
   protocol (`esplora`), paired image-by-image changes against the baseline, plots and an image grid.

Every variant generates image k of prompt p from the same seed (`generation.image_seed`), so the four runs are
paired image for image and the comparison sees the method, not the noise.

**Honesty.** A TORE calibrated on the very images it is then evaluated on is optimistic (it picks, per relation,
whichever wording happened to win on those images). The calibration is therefore made on a split of the suite that
the evaluation never sees, and the report says which:

- `calibration="seed"` (default): the same prompts, images from another seed (`calibration_seed`, default
  `seed + 1`): TORE's choices are tested on fresh noise;
- `calibration="facts"`: other object pairs of the same suite (the evaluation keeps the first `num_pairs` pairs, the
  calibration takes the next ones): TORE's choices are tested on facts it has never seen.

A TORE given by the user (`tore=...`) is used as it is, for both TORE variants, and the report says so.

Layout of a bench folder (each stage's outputs are its checkpoint; run the same command again to resume):

```
out_dir/
  bench_config.json  suite.jsonl  calibration_suite.jsonl
  baseline/            images/, generations.jsonl, prompts.jsonl (generate_images); eval/ (results.jsonl, run.json,
                       report.json, report.md: the full metric report of this variant)
  calibration-baseline/  the same, for the calibration split;  tore-baseline/tore_config.json
  tore/  lora/  calibration-lora/  tore-lora/  lora_tore/
  report.md  report.json  comparison.png  per_relation.png  grid.png
```

Generation and evaluation already skip what is on disk (and refuse to mix runs made with other settings); the
pipeline and the detector are loaded lazily, on their first real use, so a finished bench re-run loads no model.
Under `accelerate launch` / `torchrun` each stage shards its work between processes; only the main process writes
reports, suites and TORE configs.

Examples:

```py
from diffusers_spatial.benchmark import BenchConfig, format_summary, run_bench

config = BenchConfig(
    model="stable-diffusion-v1-5/stable-diffusion-v1-5", lora="esplora-sd15", suite="sr2d", num_pairs=50,
    images_per_prompt=4, dtype="float16",
)
report = run_bench(config, "runs/bench-sd15")  # writes runs/bench-sd15/report.md, plots and grid.png
print(format_summary(report))
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers.utils import logging

from .metric.contact_sheet import (
    OBJECT_COLOR,
    SUBJECT_COLOR,
    image_verdict,
    plot_image_grid,
    select_grid_keys,
    verdict_reason,
)
from .metric.report import format_cell, markdown_table
from .suites import SUITES, SuitePrompt, build_suite, write_suite
from .utils.atomic import atomic_write_text, same_text
from .utils.distributed import process_state

logger = logging.get_logger(__name__)

__all__ = [
    "BENCH_REPORT_VERSION",
    "CALIBRATION_METHODS",
    "HEADLINE_FIGURES",
    "VARIANTS",
    "BenchConfig",
    "SuiteSplit",
    "StageResult",
    "Variant",
    "bench_command",
    "build_bench_report",
    "compare_variants",
    "format_summary",
    "plot_comparison",
    "plot_image_grid",
    "plot_per_relation",
    "render_bench_markdown",
    "run_bench",
    "select_grid_keys",
    "split_suite",
    "write_bench_report",
]

BENCH_REPORT_VERSION = 1
CALIBRATION_METHODS = ("seed", "facts")
DTYPES = ("auto", "float32", "float16", "bfloat16")

# The one figure per protocol that the comparison table shows (the figure each benchmark's papers lead with).
HEADLINE_FIGURES = {
    "visor": "VISOR_uncond",
    "t2i_compbench_2d": "score",
    "t2i_compbench_3d": "score",
    "geneval": "accuracy",
    "esplora": "accuracy",
}
# VISOR reports percentages, the others fractions; plots put everything on 0..1.
_PERCENT_PROTOCOLS = ("visor",)


@dataclass(frozen=True)
class Variant:
    """One arm of the comparison: the model with or without the spatial LoRA, asked with or without TORE."""

    name: str
    label: str
    lora: bool
    tore: bool


VARIANTS: tuple[Variant, ...] = (
    Variant("baseline", "baseline", lora=False, tore=False),
    Variant("tore", "+TORE", lora=False, tore=True),
    Variant("lora", "+LoRA", lora=True, tore=False),
    Variant("lora_tore", "+LoRA+TORE", lora=True, tore=True),
)
_LABELS = {v.name: v.label for v in VARIANTS}


def _check_int(value: Any, name: str, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if optional else ''}, got {value!r}")


@dataclass
class BenchConfig:
    """Settings of a four-way bench run; every field is checked in `__post_init__`, before any model is loaded.

    Examples:

    ```py
    >>> BenchConfig(model="tiny-sd", num_pairs=2).calibration_seed  # a seed the evaluation images never use
    1
    >>> BenchConfig(model="tiny-sd", calibration_seed=0)
    Traceback (most recent call last):
      ...
    ValueError: calibration_seed 0 equals seed 0: TORE would be calibrated on the very images it is evaluated on; ...

    ```
    """

    model: str = field(
        metadata={"help": "Hub model id or local diffusers folder (SD 1.x / 2.x, SDXL, SD3.x, FLUX.1)."}
    )
    lora: str | None = field(default=None, metadata={"help": "Spatial LoRA (file, folder or Hub id); None: no LoRA."})
    lora_scale: float = field(default=1.0, metadata={"help": "Scale of the fused LoRA."})
    tore: str | None = field(
        default=None, metadata={"help": "A calibrated TORE (folder / tore_config.json / Hub id); None: calibrate."}
    )
    suite: str = field(default="sr2d", metadata={"help": f"Prompt suite: one of {SUITES}."})
    num_pairs: int | None = field(default=50, metadata={"help": "Object pairs of the evaluation suite; None: all."})
    suite_seed: int = field(default=0, metadata={"help": "Seed of the suite's sampling."})
    images_per_prompt: int = field(default=4, metadata={"help": "Images per prompt (VISOR and GenEval use 4)."})
    seed: int = field(default=0, metadata={"help": "Run seed of the evaluation images."})
    batch_size: int = field(default=4, metadata={"help": "Images per pipeline call."})
    num_inference_steps: int | None = field(default=None, metadata={"help": "Denoising steps (pipeline default)."})
    guidance_scale: float | None = field(default=None, metadata={"help": "CFG scale (pipeline default)."})
    height: int | None = field(default=None, metadata={"help": "Image height, a multiple of 8 (pipeline default)."})
    width: int | None = field(default=None, metadata={"help": "Image width, a multiple of 8 (pipeline default)."})
    device: str | None = field(default=None, metadata={"help": "Device (default: the accelerate process's)."})
    dtype: str = field(default="auto", metadata={"help": f"Weights dtype: one of {DTYPES}."})
    protocols: list[str] | str | None = field(default=None, metadata={"help": "Protocols to report; None: all."})
    primary_protocol: str | None = field(
        default=None,
        metadata={"help": "Protocol of TORE's bias table and of the per-relation comparison (default: esplora)."},
    )
    detector: Any = field(
        default="embedded", metadata={"help": "Detector of the metric: a name (see `metric`) or a Detector object."}
    )
    depth_model: Any = field(default=None, metadata={"help": "Depth model of the metric (name or object), or None."})
    eval_batch_size: int = field(default=8, metadata={"help": "Images per detector call."})
    tau: float = field(default=0.0, metadata={"help": "TORE margin: swap only when the swap wins by more than tau."})
    min_count: int = field(default=10, metadata={"help": "TORE: samples a triplet needs before its rates are used."})
    calibration: str = field(
        default="seed", metadata={"help": f"How TORE's calibration is held out: one of {CALIBRATION_METHODS}."}
    )
    calibration_seed: int | None = field(
        default=None, metadata={"help": "Run seed of the calibration images (default: seed + 1)."}
    )
    lora_tore_calibration: str = field(
        default="lora", metadata={"help": "TORE of +LoRA+TORE: calibrated on the 'lora' model, or the 'baseline' one."}
    )
    notice: str | None = field(
        default=None, metadata={"help": "A warning printed at the top of every output (e.g. 'tiny random model')."}
    )
    grid_rows: int = field(default=8, metadata={"help": "Rows (images) in grid.png."})

    def __post_init__(self):
        from .tore import Tore

        if not isinstance(self.model, (str, os.PathLike)) or not os.fspath(self.model):
            raise ValueError(f"model must be a Hub id or a folder, got {self.model!r}")
        self.model = os.fspath(self.model)
        self.lora = None if self.lora is None else os.fspath(self.lora)
        self.tore = None if self.tore is None else os.fspath(self.tore)
        if self.suite not in SUITES:
            raise ValueError(f"unknown suite {self.suite!r}: choose one of {', '.join(SUITES)}")
        _check_int(self.num_pairs, "num_pairs", 1, optional=True)
        for name in ("images_per_prompt", "batch_size", "eval_batch_size", "grid_rows"):
            _check_int(getattr(self, name), name, 1)
        for name in ("seed", "suite_seed"):
            _check_int(getattr(self, name), name, 0)
        _check_int(self.num_inference_steps, "num_inference_steps", 1, optional=True)
        for name in ("height", "width"):
            _check_int(getattr(self, name), name, 8, optional=True)
            if getattr(self, name) is not None and getattr(self, name) % 8:
                raise ValueError(f"{name} must be a multiple of 8, got {getattr(self, name)}")
        for name in ("guidance_scale", "lora_scale"):
            value = getattr(self, name)
            if value is None and name == "guidance_scale":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}, got {self.calibration!r}")
        if self.lora_tore_calibration not in ("lora", "baseline"):
            raise ValueError(f"lora_tore_calibration must be 'lora' or 'baseline', got {self.lora_tore_calibration!r}")
        if self.calibration_seed is None:
            self.calibration_seed = self.seed + 1
        _check_int(self.calibration_seed, "calibration_seed", 0)
        if self.calibration == "seed" and self.calibration_seed == self.seed:
            raise ValueError(
                f"calibration_seed {self.calibration_seed} equals seed {self.seed}: TORE would be calibrated on the "
                "very images it is evaluated on; choose another calibration_seed or calibration='facts'"
            )
        Tore(tau=self.tau, min_count=self.min_count)  # the rule's settings, checked now
        self.protocols = self.evaluation_config().protocols  # unknown protocols fail now

    def evaluation_config(self):
        """The metric's `EvaluationConfig` for every stage (the same one, so the variants are comparable)."""
        from .metric import EvaluationConfig

        return EvaluationConfig.from_kwargs(
            protocols=self.protocols,
            primary_protocol=self.primary_protocol,
            detector=self.detector,
            depth_model=self.depth_model,
            batch_size=self.eval_batch_size,
        )

    def variants(self) -> list[Variant]:
        """The variants this run compares: all four with a LoRA, else baseline and +TORE."""
        return [v for v in VARIANTS if self.lora is not None or not v.lora]

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-serialisable data (a detector or depth object is named by its `name`)."""
        settings = self.evaluation_config().settings()
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**values, "detector": settings["detector"], "depth_model": settings["depth_model"]}


# --------------------------------------------------------------------------------------------------------------
# Stage 0: the suite and its held-out calibration split
# --------------------------------------------------------------------------------------------------------------


@dataclass
class SuiteSplit:
    """The evaluation prompts and the calibration prompts / seed TORE is calibrated on, and how they differ."""

    evaluation: list[SuitePrompt]
    calibration: list[SuitePrompt]
    calibration_seed: int
    method: str
    description: str


def _object_pair(prompt: SuitePrompt) -> frozenset:
    return frozenset((prompt.subject, prompt.object))


def split_suite(config: BenchConfig) -> SuiteSplit:
    """Build the evaluation prompts and the held-out calibration split of `config.suite`.

    The evaluation prompts are always `build_suite(suite, num_pairs=num_pairs, seed=suite_seed)` (with
    `calibration="facts"` and `num_pairs=None`, the first half of the suite's pairs), so baselines are comparable
    across calibration methods.

    Raises:
        ValueError: `calibration="facts"` on a suite with no object pairs left over for the calibration.

    Examples:

    ```py
    >>> split = split_suite(BenchConfig(model="m", suite="sr2d", num_pairs=1, calibration="facts"))
    >>> len(split.evaluation), len(split.calibration)  # 4 relations x 2 orders, each on its own object pair
    (8, 8)
    >>> {p.prompt_id for p in split.evaluation} & {p.prompt_id for p in split.calibration}
    set()

    ```
    """
    if config.calibration == "seed":
        prompts = build_suite(config.suite, num_pairs=config.num_pairs, seed=config.suite_seed)
        description = (
            f"TORE was calibrated on the same {len(prompts)} prompts generated with another seed "
            f"({config.calibration_seed}; the evaluation images use seed {config.seed}): its choices are tested on "
            "fresh noise, never on the images they were made from."
        )
        return SuiteSplit(prompts, list(prompts), config.calibration_seed, "seed", description)

    full = build_suite(
        config.suite, num_pairs=None if config.num_pairs is None else 2 * config.num_pairs, seed=config.suite_seed
    )
    pairs = list(dict.fromkeys(_object_pair(p) for p in full))
    n_eval = config.num_pairs if config.num_pairs is not None else (len(pairs) + 1) // 2
    if len(pairs) <= n_eval:
        raise ValueError(
            f"suite {config.suite!r} has {len(pairs)} object pairs: none is left for calibration='facts' after the "
            f"{n_eval} evaluated; lower num_pairs or use calibration='seed'"
        )
    evaluated = set(pairs[:n_eval])
    evaluation = [p for p in full if _object_pair(p) in evaluated]
    calibration = [p for p in full if _object_pair(p) not in evaluated]
    description = (
        f"TORE was calibrated on {len(pairs) - n_eval} other object pairs of the suite ({len(calibration)} prompts, "
        f"seed {config.calibration_seed}), none of which is evaluated: its choices are tested on facts it never saw."
    )
    return SuiteSplit(evaluation, calibration, config.calibration_seed, "facts", description)


# --------------------------------------------------------------------------------------------------------------
# Lazy models: a finished stage never loads one
# --------------------------------------------------------------------------------------------------------------


class _SharedPipeline:
    """One pipeline for every variant, loaded on first use and switched between variants (LoRA on/off, TORE)."""

    def __init__(self, config: BenchConfig):
        self.config = config
        self.pipe = None
        self.lora_on = False

    def configured(self, lora: bool, tore) -> _LazyPipeline:
        return _LazyPipeline(self, lora, tore)

    def _switch(self, lora: bool, tore):
        from .generation import load_generation_pipeline

        config = self.config
        if self.pipe is None:
            import torch

            dtype = None if config.dtype == "auto" else getattr(torch, config.dtype)
            self.pipe = load_generation_pipeline(config.model, device=config.device, torch_dtype=dtype)
            if self.pipe.has_spatial_lora:  # a saved SpatialLoRAPipeline folder: the baseline is its base model
                self.pipe.unload_spatial_lora()
            self.pipe.set_tore(None)
        pipe = self.pipe
        if lora != self.lora_on:  # (un)fusing only when the variant changes, never per batch
            if lora and not pipe.has_spatial_lora:
                pipe.load_spatial_lora(config.lora, lora_scale=config.lora_scale)  # fused: no per-image cost
            elif lora:
                pipe.enable_spatial_lora()
            else:
                pipe.disable_spatial_lora()
            self.lora_on = lora
        if pipe.tore is not tore:
            pipe.set_tore(tore)
        return pipe


class _LazyPipeline:
    """A callable standing in for the pipeline of one variant: `generate_images` calls it only for missing images."""

    def __init__(self, shared: _SharedPipeline, lora: bool, tore):
        self.shared, self.lora, self.tore = shared, lora, tore

    def __call__(self, *args, **kwargs):
        return self.shared._switch(self.lora, self.tore)(*args, **kwargs)


class _LazyPerception:
    """The metric's `Perception`, built on the first image that needs it and shared by every stage."""

    def __init__(self, evaluation_config):
        self.config = evaluation_config
        self.perception = None

    def run(self, images, prompts):
        if self.perception is None:
            from .perception import Perception

            config = self.config
            self.perception = Perception(
                detector=config.detector,
                depth=config.depth_model,
                batch_size=config.batch_size,
                progress=False,
                detector_kwargs=config.detector_options,
            )
        return self.perception.run(images, prompts)


# --------------------------------------------------------------------------------------------------------------
# One stage: generate, then evaluate
# --------------------------------------------------------------------------------------------------------------


@dataclass
class StageResult:
    """What one generate -> evaluate stage produced.

    Attributes:
        name: the stage's folder name ("baseline", "calibration-lora", ...).
        folder: its folder.
        report: the metric report (`metric.build_report`).
        images: one row per image: key (the metric's), prompt_id, prompt (as written), prompt_used, path.
        records: key -> the metric's per-image record (detections, every protocol's verdict).
    """

    name: str
    folder: Path
    report: dict
    images: list[dict]
    records: dict[str, dict]


def _model_info(config: BenchConfig, lora: bool, tore) -> dict[str, Any]:
    """What generates a stage's images, recorded in its manifest (a resume with anything else is refused)."""
    return {
        "pipeline": "SpatialLoRAPipeline",
        "name_or_path": config.model,
        "torch_dtype": config.dtype,
        "lora": config.lora if lora else None,
        "lora_scale": config.lora_scale if lora else None,
        "tore": tore.to_dict() if tore is not None else None,
    }


def _write_stage_report(report: dict, folder: Path, notice: str | None) -> None:
    from .metric import write_report

    # The metric's own plots cannot carry the notice in their titles: with a notice, the bench's plots stand alone.
    written = write_report(report, folder, plots=notice is None)
    if notice:
        path = written["report.md"]
        atomic_write_text(path, f"> **{notice}**\n\n" + path.read_text(encoding="utf-8"))


def _run_stage(
    name: str,
    pipeline: _LazyPipeline,
    prompts: Sequence[SuitePrompt],
    seed: int,
    model_info: dict,
    config: BenchConfig,
    out_dir: Path,
    perception: _LazyPerception,
    progress: bool,
) -> StageResult:
    """Generate the stage's images (resumable) and score them with every protocol (resumable)."""
    from .generation import generate_images
    from .metric import collect_items, evaluate_items, read_results

    folder = out_dir / name
    generated = generate_images(
        pipeline,
        list(prompts),
        folder,
        images_per_prompt=config.images_per_prompt,
        seed=seed,
        batch_size=config.batch_size,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        height=config.height,
        width=config.width,
        progress=progress,
        model_info=model_info,
    )
    # Evaluate exactly as `diffusers-spatial evaluate folder/images --prompts folder/prompts.jsonl` would.
    items = collect_items(folder / "images", folder / "prompts.jsonl")
    report = evaluate_items(
        items, perception.config, out_dir=folder / "eval", progress=progress, perception=perception
    )
    if process_state().is_main_process:
        _write_stage_report(report, folder / "eval", config.notice)
    used = {Path(g.path).resolve(): g.prompt_used for g in generated}
    images = [
        {
            "key": item.key,
            "prompt_id": item.prompt_id,
            "prompt": item.prompt,
            "prompt_used": used.get(Path(item.image).resolve(), item.prompt),
            "path": str(item.image),
        }
        for item in items
    ]
    records = {r["key"]: r for r in read_results(folder / "eval")}
    return StageResult(name, folder, report, images, records)


def _announce(message: str, progress: bool) -> None:
    from tqdm.auto import tqdm

    logger.info(message)
    if progress and process_state().is_main_process:
        tqdm.write(f"[bench] {message}")


# --------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------


def run_bench(
    config: BenchConfig, out_dir: str | os.PathLike, *, progress: bool = True, appendix: str | None = None
) -> dict:
    """Run the four-way comparison into `out_dir` (resuming whatever is there) and return the bench report.

    Stages: baseline -> TORE calibration (held-out split) -> +TORE -> +LoRA -> (LoRA model's calibration) ->
    +LoRA+TORE -> comparison; see the module docstring. The LoRA variants run only when `config.lora` is set.

    Args:
        config: the settings (`BenchConfig`).
        out_dir: the bench folder (created if missing; resumed if it holds a run).
        progress: progress bars and one line per stage (main process).
        appendix: Markdown appended to `report.md` (the demo puts the commands of the real run there).

    Returns:
        The bench report (also `out_dir/report.json`): `settings`, `calibration`, `variants` (per variant its
        metric summary, per-relation accuracy, counts, TORE rewrites and folder), `comparison`
        (`compare_variants`), `notice`, `command`.

    Raises:
        ValueError: a stage folder holding images or results made with other settings (the message names them).
    """
    from .tore import Tore

    state = process_state()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} exists and is not a folder")
    split = split_suite(config)
    if state.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_suite(split.evaluation, out_dir / "suite.jsonl")
        write_suite(split.calibration, out_dir / "calibration_suite.jsonl")
        atomic_write_text(out_dir / "bench_config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    state.wait_for_everyone()

    shared = _SharedPipeline(config)
    perception = _LazyPerception(config.evaluation_config())
    given_tore = Tore.from_pretrained(config.tore) if config.tore is not None else None
    results: dict[str, StageResult] = {}  # variant -> its evaluation stage
    calibrations: dict[str, StageResult] = {}  # "baseline" / "lora" -> its calibration stage
    tores: dict[str, Tore] = {}  # "baseline" / "lora" -> the TORE of that model

    def stage(name: str, lora: bool, tore, prompts, seed: int) -> StageResult:
        _announce(f"{name}: {len(prompts)} prompts x {config.images_per_prompt} images (seed {seed})", progress)
        return _run_stage(
            name,
            shared.configured(lora, tore),
            prompts,
            seed,
            _model_info(config, lora, tore),
            config,
            out_dir,
            perception,
            progress,
        )

    def calibrated_tore(model: str, lora: bool) -> Tore:
        """TORE for `model` ("baseline" / "lora") from the bias table of its held-out calibration stage."""
        if given_tore is not None:
            return given_tore
        result = stage(f"calibration-{model}", lora, None, split.calibration, split.calibration_seed)
        calibrations[model] = result
        tore = Tore.from_report(result.report, tau=config.tau, min_count=config.min_count)
        if state.is_main_process:
            tore.save_pretrained(out_dir / f"tore-{model}")
        return tore

    for variant in config.variants():
        tore = None
        if variant.tore:
            model = "lora" if variant.lora and config.lora_tore_calibration == "lora" else "baseline"
            if model not in tores:
                tores[model] = calibrated_tore(model, lora=model == "lora")
            tore = tores[model]
        results[variant.name] = stage(variant.name, variant.lora, tore, split.evaluation, config.seed)

    _announce("comparing the variants", progress)
    report = build_bench_report(config, split, results, calibrations, tores, out_dir)
    report["appendix"] = appendix
    if state.is_main_process:
        write_bench_report(report, out_dir, results)
    state.wait_for_everyone()
    return report


# --------------------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------------------


def compare_variants(
    reports: Mapping[str, Mapping[str, Any]],
    verdicts: Mapping[str, Mapping[str, bool | None]],
    primary_protocol: str,
) -> dict[str, Any]:
    """The comparison table: a pure function of each variant's metric report and per-image verdicts.

    Args:
        reports: variant -> its metric report (`summary`, `protocols`, `counts`). The first is the reference.
        verdicts: variant -> image key -> the primary protocol's verdict (None: undetermined). Images with the same
            key were generated from the same seed, so they pair up.
        primary_protocol: the protocol of the per-relation and paired comparisons.

    Returns:
        `headline` (variant -> protocol -> {"figure", "value"}), `accuracy` (variant -> the primary protocol's
        {"correct", "n", "rate", "interval"}: right verdicts over all images, Wilson 95% interval),
        `per_relation` (variant -> relation -> {"n", "correct", "rate", "interval"}), `paired` (variant -> {"n",
        "fixed", "broken", "both_right", "both_wrong", "delta", "interval", "p_value"} against the reference on the
        images both determined: the change of accuracy, its 95% interval and the exact McNemar p-value; see
        `geometry.intervals`) and `counts` (variant -> the metric's counts).

    Examples:

    ```py
    >>> def report(accuracy):
    ...     return {"summary": {"esplora": {"accuracy": accuracy}}, "protocols": {"esplora": {"per_relation": {}}}}
    >>> verdicts = {"baseline": {"a": False, "b": True, "c": None}, "tore": {"a": True, "b": True, "c": False}}
    >>> table = compare_variants({"baseline": report(0.25), "tore": report(0.5)}, verdicts, "esplora")
    >>> table["headline"]["tore"]["esplora"]
    {'figure': 'accuracy', 'value': 0.5}
    >>> {k: table["paired"]["tore"][k] for k in ("n", "fixed", "broken", "delta")}  # a and b judged in both; a fixed
    {'n': 2, 'fixed': 1, 'broken': 0, 'delta': 0.5}
    >>> table["accuracy"]["tore"]["correct"], table["accuracy"]["tore"]["n"]
    (2, 3)

    ```
    """
    from .geometry.intervals import paired_change, wilson_interval

    names = list(reports)
    reference = names[0]
    headline, accuracy, per_relation, paired, counts = {}, {}, {}, {}, {}
    for name in names:
        summary = reports[name]["summary"]
        headline[name] = {
            protocol: {"figure": HEADLINE_FIGURES[protocol], "value": figures.get(HEADLINE_FIGURES[protocol])}
            for protocol, figures in summary.items()
        }
        right, n = sum(v is True for v in verdicts[name].values()), len(verdicts[name])
        accuracy[name] = {"correct": right, "n": n, "rate": right / n if n else None}
        accuracy[name]["interval"] = list(wilson_interval(right, n))
        per_relation[name] = {
            relation: {**stats, "interval": list(wilson_interval(stats["correct"], stats["n"]))}
            for relation, stats in reports[name]["protocols"][primary_protocol]["per_relation"].items()
        }
        counts[name] = reports[name].get("counts", {})
        pairs = [
            (verdicts[reference][key], verdict)
            for key, verdict in verdicts[name].items()
            if verdict is not None and verdicts[reference].get(key) is not None
        ]
        fixed = sum(not before and after for before, after in pairs)
        broken = sum(before and not after for before, after in pairs)
        change = paired_change(fixed, broken, len(pairs))
        paired[name] = {
            "n": len(pairs),
            "fixed": fixed,
            "broken": broken,
            "both_right": sum(before and after for before, after in pairs),
            "both_wrong": sum(not before and not after for before, after in pairs),
            "delta": change["delta"],
            "interval": None if change["interval"] is None else list(change["interval"]),
            "p_value": change["p_value"],
        }
    return {
        "reference": reference,
        "headline": headline,
        "accuracy": accuracy,
        "per_relation": per_relation,
        "paired": paired,
        "counts": counts,
    }


def _tore_summary(tore) -> dict[str, Any]:
    """Which relations a TORE asks for in the converse form (relation-level rates; triplets may refine it)."""
    from .relations import CONVERSE

    rates = tore.success_rates
    swaps = {
        relation: CONVERSE[relation]
        for relation in rates
        if CONVERSE[relation] in rates and rates[CONVERSE[relation]] - rates[relation] > tore.tau + 1e-9
    }
    return {"config": tore.to_dict(), "swaps": swaps, "n_triplets": len(tore.triplet_rates)}


def build_bench_report(
    config: BenchConfig,
    split: SuiteSplit,
    results: Mapping[str, StageResult],
    calibrations: Mapping[str, StageResult],
    tores: Mapping[str, Any],
    out_dir: Path,
) -> dict[str, Any]:
    """Gather every stage's outputs into the bench report (JSON-serialisable)."""
    primary = config.evaluation_config().primary_protocol
    verdicts = {
        name: {row["key"]: image_verdict(result.records.get(row["key"]), primary) for row in result.images}
        for name, result in results.items()
    }
    comparison = compare_variants({n: r.report for n, r in results.items()}, verdicts, primary)
    variants = {}
    for name, result in results.items():
        rewritten = {row["prompt_id"] for row in result.images if row["prompt_used"] != row["prompt"]}
        variants[name] = {
            "label": _LABELS[name],
            "folder": result.folder.relative_to(out_dir).as_posix(),
            "summary": result.report["summary"],
            "counts": result.report["counts"],
            "per_relation": result.report["protocols"][primary]["per_relation"],
            "prompts_rewritten": len(rewritten),
            "prompts": len({row["prompt_id"] for row in result.images}),
        }
    return {
        "bench_report_version": BENCH_REPORT_VERSION,
        "notice": config.notice,
        "settings": config.to_dict(),
        "primary_protocol": primary,
        "protocols": list(config.evaluation_config().protocols),
        "suite": {
            "name": config.suite,
            "evaluation_prompts": len(split.evaluation),
            "calibration_prompts": len(split.calibration),
            "images_per_prompt": config.images_per_prompt,
        },
        "calibration": {
            "method": "given" if config.tore is not None else split.method,
            "description": (
                f"TORE was given ({config.tore}) and used as it is for every TORE variant; it was not calibrated "
                "by this run, so nothing here tells whether its calibration saw these prompts."
                if config.tore is not None
                else split.description
            ),
            "seed": split.calibration_seed,
            "stages": {
                model: {"folder": r.folder.relative_to(out_dir).as_posix(), "summary": r.report["summary"]}
                for model, r in calibrations.items()
            },
            "tore": {model: _tore_summary(tore) for model, tore in tores.items()},
        },
        "variants": variants,
        "comparison": comparison,
        "command": bench_command(config, out_dir),
    }


# --------------------------------------------------------------------------------------------------------------
# The command line that reproduces a run
# --------------------------------------------------------------------------------------------------------------


def bench_command(config: BenchConfig, out_dir: str | os.PathLike, *, always: Sequence[str] = ()) -> str:
    """The `diffusers-spatial bench` command line that runs `config` into `out_dir`.

    Settings at their defaults are left out, except the `BenchConfig` fields named in `always`.

    Examples:

    ```py
    >>> bench_command(BenchConfig(model="stable-diffusion-v1-5/stable-diffusion-v1-5", lora="esplora-sd15"), "runs/b")
    'diffusers-spatial bench --model stable-diffusion-v1-5/stable-diffusion-v1-5 --lora esplora-sd15 --out runs/b'

    ```
    """
    defaults = BenchConfig(model=config.model)
    flags = {
        "model": "--model",
        "lora": "--lora",
        "lora_scale": "--lora-scale",
        "tore": "--tore",
        "suite": "--suite",
        "num_pairs": "--num-pairs",
        "suite_seed": "--suite-seed",
        "images_per_prompt": "--images-per-prompt",
        "seed": "--seed",
        "batch_size": "--batch-size",
        "num_inference_steps": "--steps",
        "guidance_scale": "--guidance",
        "height": "--height",
        "width": "--width",
        "device": "--device",
        "dtype": "--dtype",
        "primary_protocol": "--primary-protocol",
        "detector": "--detector",
        "depth_model": "--depth-model",
        "eval_batch_size": "--eval-batch-size",
        "tau": "--tau",
        "min_count": "--min-count",
        "calibration": "--calibration",
        "calibration_seed": "--calibration-seed",
        "lora_tore_calibration": "--lora-tore-calibration",
    }
    values, default_values = config.to_dict(), defaults.to_dict()  # detector objects by name
    parts = ["diffusers-spatial", "bench"]
    for name, flag in flags.items():
        value = values[name]
        if name == "calibration_seed" and value == config.seed + 1:
            continue
        if name == "model" or name in always or value != default_values[name]:
            parts += [flag, "all" if value is None else str(value)]
    if list(config.protocols) != list(defaults.protocols):
        parts += ["--protocol", ",".join(config.protocols)]
    parts += ["--out", os.fspath(out_dir)]
    return shlex.join(parts)


# --------------------------------------------------------------------------------------------------------------
# Report: Markdown, console, plots, image grid
# --------------------------------------------------------------------------------------------------------------


def _headline_header(protocol: str) -> str:
    unit = " (%)" if protocol in _PERCENT_PROTOCOLS else ""
    return f"{protocol} {HEADLINE_FIGURES[protocol]}{unit}"


def _comparison_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    comparison, primary = report["comparison"], report["primary_protocol"]
    header = ["variant", *(_headline_header(p) for p in report["protocols"])]
    header += [f"{primary} 95% CI", f"undetermined ({primary})", f"paired vs baseline ({primary})"]
    header += ["prompts rewritten by TORE"]
    rows = []
    for name, variant in report["variants"].items():
        headline = comparison["headline"][name]
        summary = variant["summary"][primary]
        rows.append(
            [
                variant["label"],
                *(headline[p]["value"] for p in report["protocols"]),
                _interval_text(comparison.get("accuracy", {}).get(name, {}).get("interval")),
                f"{summary['undetermined']} of {summary['n_images']}",
                "reference" if name == comparison["reference"] else _paired_text(comparison["paired"][name]),
                f"{variant['prompts_rewritten']} of {variant['prompts']}",
            ]
        )
    return header, rows


def _interval_text(interval) -> str:
    return "–" if interval is None else f"[{interval[0]:.2f}, {interval[1]:.2f}]"


def _paired_text(paired: Mapping[str, Any]) -> str:
    """ "+31 fixed / -4 broken of 288: +0.09 [0.06, 0.13], p < 0.001"."""
    text = f"+{paired['fixed']} fixed / -{paired['broken']} broken of {paired['n']}"
    if paired.get("interval") is None:
        return text
    p = paired["p_value"]
    p_text = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    return f"{text}: {paired['delta']:+.2f} {_interval_text(paired['interval'])}, {p_text}"


def _relations(report: Mapping[str, Any]) -> list[str]:
    from .relations import RELATIONS

    present = {r for per in report["comparison"]["per_relation"].values() for r in per}
    return [r for r in RELATIONS if r in present]


def render_bench_markdown(report: Mapping[str, Any], plots: Mapping[str, str] | None = None) -> str:
    """The bench report as Markdown: header (and notice), the comparison table, per-relation accuracy, TORE's
    calibration and decisions, the image grid, and the command that reproduces the run."""
    plots = dict(plots or {})
    settings, primary, suite = report["settings"], report["primary_protocol"], report["suite"]
    out = ["# Spatial benchmark: baseline vs +TORE vs +LoRA vs +LoRA+TORE", ""]
    if report.get("notice"):
        out += [f"> **{report['notice']}**", ""]
    size = f"{settings['width'] or 'default'} x {settings['height'] or 'default'} px"
    out += [
        f"- model: `{settings['model']}`; LoRA: `{settings['lora'] or 'none'}` (scale {settings['lora_scale']}); "
        f"dtype: {settings['dtype']}",
        f"- suite: `{suite['name']}` ({suite['evaluation_prompts']} evaluation prompts x {suite['images_per_prompt']} "
        f"images, seed {settings['seed']}; every variant draws image k of a prompt from the same noise)",
        f"- generation: {settings['num_inference_steps'] or 'default'} steps, guidance "
        f"{settings['guidance_scale'] if settings['guidance_scale'] is not None else 'default'}, {size}",
        f"- metric: detector `{settings['detector']}`, depth model `{settings['depth_model']}`; protocols "
        f"{', '.join(f'`{p}`' for p in report['protocols'])}; primary `{primary}` (per-relation table, paired "
        "changes, TORE's bias table)",
        "",
        "## How TORE was calibrated",
        "",
        report["calibration"]["description"],
        "",
    ]
    tores = report["calibration"]["tore"]
    if tores:
        rows = []
        for model, tore in tores.items():
            rates = tore["config"]["success_rates"]
            swaps = ", ".join(f"{a} -> {b}" for a, b in tore["swaps"].items()) or "none"
            rates_text = ", ".join(f"{r} {v:.2f}" for r, v in rates.items()) or "no determined image"
            rows.append([model, rates_text, tore["config"]["tau"], swaps, tore["n_triplets"]])
        out += markdown_table(["TORE of model", "success rates (calibration)", "tau", "rewrites", "triplets"], rows)
    out += ["## Comparison", ""]
    header, rows = _comparison_rows(report)
    out += markdown_table(header, rows)
    out += [
        "Headline figures: VISOR_uncond in percent, the others as fractions of the images (see docs/metrics.md). "
        "`–`: the protocol scores no image of this suite (e.g. a 3D protocol on a 2D suite, or T2I-CompBench 3D "
        "without a depth model). 95% CI: Wilson interval of the primary protocol's accuracy (right verdicts over all "
        "images). Paired: images judged by the primary protocol in both runs; fixed = wrong in the baseline and right "
        "here, broken = the reverse; then the change of accuracy, its 95% interval and the exact McNemar p-value.",
        "",
    ]
    if "comparison" in plots:
        out += [f"![headline figures per variant]({plots['comparison']})", ""]
    out += [f"## Accuracy per relation ({primary})", ""]
    relations = _relations(report)
    per_relation = report["comparison"]["per_relation"]
    rows = []
    for relation in relations:
        cells = []
        for name in report["variants"]:
            stats = per_relation[name].get(relation)
            cells.append(
                "–"
                if stats is None
                else f"{format_cell(stats['rate'])} ({stats['correct']}/{stats['n']}) {_interval_text(stats.get('interval'))}"
            )
        rows.append([relation, *cells])
    out += markdown_table(["relation", *(v["label"] for v in report["variants"].values())], rows)
    if "per_relation" in plots:
        out += [f"![accuracy per relation per variant]({plots['per_relation']})", ""]
    if "grid" in plots:
        out += [
            "## Images",
            "",
            f"Rows: images of the evaluation suite (where the variants disagree first, then successes and failures of "
            f"the baseline); columns: the variants, each with the prompt it was generated from and the `{primary}` "
            "verdict (green right, red wrong, grey undetermined); boxes: the detected subject (yellow) and object "
            "(magenta).",
            "",
            f"![successes and failures]({plots['grid']})",
            "",
        ]
    out += ["## Folders", ""]
    folders = [(v["label"], v["folder"]) for v in report["variants"].values()]
    folders += [
        (f"calibration ({model})", stage["folder"]) for model, stage in report["calibration"]["stages"].items()
    ]
    stage_rows = [[label, f"[{folder}/eval/report.md]({folder}/eval/report.md)"] for label, folder in folders]
    out += markdown_table(["run", "full metric report"], stage_rows)
    out += ["## Reproduce", "", "```bash", report["command"], "```", ""]
    if report.get("appendix"):
        out += [report["appendix"].strip(), ""]
    return "\n".join(out)


def format_summary(report: Mapping[str, Any]) -> str:
    """A plain-text summary for the console: the notice, the comparison table and the calibration method."""
    header, rows = _comparison_rows(report)
    cells = [header] + [[format_cell(v) for v in row] for row in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    lines = []
    if report.get("notice"):
        lines += [f"!! {report['notice']}", ""]
    for k, row in enumerate(cells):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += ["", f"TORE calibration: {report['calibration']['description']}"]
    return "\n".join(lines)


def _title(text: str, notice: str | None) -> str:
    import textwrap

    return "\n".join([*textwrap.wrap(notice, 100), text]) if notice else text


_ABOVE = {"xytext": (0, 2), "textcoords": "offset points"}  # an annotation just above its anchor


def _grouped_bars(ax, groups: Sequence[str], series: Mapping[str, Mapping[str, tuple[float, str]]]) -> None:
    """One bar per series in each group, with its annotation above it; a series without a value has no bar there."""
    width = 0.8 / max(1, len(series))
    for k, (label, values) in enumerate(series.items()):
        present = [g for g in groups if g in values]
        xs = [groups.index(g) + (k - (len(series) - 1) / 2) * width for g in present]
        heights = [values[g][0] for g in present]
        bars = ax.bar(xs, heights, width=width * 0.92, label=label, edgecolor="black", linewidth=0.6)
        for bar, group in zip(bars, present):
            x, y = bar.get_x() + bar.get_width() / 2, bar.get_height()
            ax.annotate(values[group][1], (x, y), ha="center", va="bottom", fontsize=7, **_ABOVE)
    ax.set_ylim(0, 1.12)  # room for the annotations above full bars
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(series), frameon=False)


def plot_comparison(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Grouped bars: each protocol's headline figure (on 0..1), one bar per variant."""
    from .metric.plots import pyplot, save_figure

    plt = pyplot()
    protocols, headline = report["protocols"], report["comparison"]["headline"]
    series = {}
    for name, variant in report["variants"].items():
        values = {}
        for protocol in protocols:
            value = headline[name][protocol]["value"]
            if value is not None:
                value = value / 100 if protocol in _PERCENT_PROTOCOLS else value
                values[protocol] = (value, f"{value:.2f}")
        series[variant["label"]] = values
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(protocols) + 2.5), 4.6))
    _grouped_bars(ax, protocols, series)
    for i, protocol in enumerate(protocols):
        if not any(protocol in values for values in series.values()):
            ax.text(i, 0.04, "no image\nin scope", ha="center", va="bottom", fontsize=7, color="gray")
    ax.set_xticks(range(len(protocols)), [f"{p}\n{HEADLINE_FIGURES[p]}" for p in protocols], fontsize=8)
    ax.set_ylabel("headline figure (fraction; VISOR_uncond / 100)")
    ax.set_title(_title("Headline figure per protocol and variant", report.get("notice")), fontsize=9)
    out = save_figure(fig, Path(path))
    plt.close(fig)
    return out


def plot_per_relation(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Grouped bars: the primary protocol's accuracy per relation, one bar per variant (correct / n above each)."""
    from .metric.plots import pyplot, save_figure

    plt = pyplot()
    relations, per_relation = _relations(report), report["comparison"]["per_relation"]
    series = {
        variant["label"]: {
            r: (stats["rate"], f"{stats['correct']}/{stats['n']}") for r, stats in per_relation[name].items()
        }
        for name, variant in report["variants"].items()
    }
    fig, ax = plt.subplots(figsize=(max(6.5, 1.4 * len(relations) + 2.5), 4.4))
    _grouped_bars(ax, relations, series)
    if not relations:
        ax.text(0.5, 0.5, "no determined image", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(range(len(relations)), relations)
    ax.set_ylabel("accuracy (correct / determined images)")
    title = f"{report['primary_protocol']} accuracy per relation and variant (above a bar: correct / determined)"
    ax.set_title(_title(title, report.get("notice")), fontsize=9)
    out = save_figure(fig, Path(path))
    plt.close(fig)
    return out


def _grid_rows(report: Mapping[str, Any], results: Mapping[str, StageResult], max_rows: int) -> list[dict]:
    primary = report["primary_protocol"]
    names = list(report["variants"])
    by_key = {name: {row["key"]: row for row in results[name].images} for name in names}
    verdicts = {
        name: {key: image_verdict(results[name].records.get(key), primary) for key in by_key[name]} for name in names
    }
    rows = []
    for key in select_grid_keys(verdicts, max_rows):
        cells = []
        for name in names:
            image, record = by_key[name].get(key), results[name].records.get(key) or {}
            cells.append(
                None
                if image is None
                else {
                    "path": image["path"],
                    "prompt_used": image["prompt_used"],
                    "verdict": verdicts[name].get(key),
                    "detections": record.get("detections", []),
                    "labels": (record.get("subject_label"), record.get("object_label")),
                    "why": verdict_reason(record, primary),
                }
            )
        rows.append({"prompt": by_key[names[0]][key]["prompt"], "cells": cells})
    return rows


def write_bench_report(
    report: Mapping[str, Any], out_dir: str | os.PathLike, results: Mapping[str, StageResult]
) -> dict[str, Path]:
    """Write `report.json`, `report.md`, `comparison.png`, `per_relation.png` and `grid.png` into `out_dir`
    (each to a temporary name, then renamed). Returns name -> path."""
    out_dir = Path(out_dir)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    names = {"comparison": "comparison.png", "per_relation": "per_relation.png", "grid": "grid.png"}
    previous = {**names, "report.json": "report.json", "report.md": "report.md"}
    if same_text(out_dir / "report.json", text) and all((out_dir / n).is_file() for n in previous.values()):
        return {key: out_dir / name for key, name in previous.items()}  # a resumed run: the figures are as drawn
    notice = report.get("notice")
    written = {
        "comparison": plot_comparison(report, out_dir / "comparison.png"),
        "per_relation": plot_per_relation(report, out_dir / "per_relation.png"),
        "grid": plot_image_grid(
            _grid_rows(report, results, report["settings"]["grid_rows"]),
            [v["label"] for v in report["variants"].values()],
            out_dir / "grid.png",
            title=_title(
                f"Evaluation images and their {report['primary_protocol']} verdicts (frame: green right, red wrong, "
                f"grey undetermined; boxes: subject {SUBJECT_COLOR}, object {OBJECT_COLOR})",
                notice,
            ),
        ),
    }
    atomic_write_text(out_dir / "report.md", render_bench_markdown(report, {k: p.name for k, p in written.items()}))
    atomic_write_text(out_dir / "report.json", text)  # last: the figures above are complete when it matches
    return {**written, "report.json": out_dir / "report.json", "report.md": out_dir / "report.md"}
