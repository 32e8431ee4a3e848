"""`diffusers-spatial demo`: the whole loop offline, on a CPU, in a few minutes, on a tiny RANDOM model.

1. builds the offline sample spatial dataset from real photos (`diffusers_spatial.data.build_sample`);
2. builds a tiny Stable Diffusion from a config (`diffusers_spatial.utils.make_tiny_sd`): random weights;
3. trains an ESPLoRA on the sample for a few steps (`examples/train_esplora.py` through `accelerate launch`);
4. runs `diffusers-spatial bench` on the tiny model with that LoRA: baseline, +TORE, +LoRA, +LoRA+TORE, scored by
   the embedded detector, with report, plots and image grid;
5. prints the comparison table and the commands of the real run (SD 1.5 on a GPU).

The tiny model draws noise, so the figures are meaningless except as a smoke test: every output says so. Each step
is resumable (its outputs are its checkpoint): run the same command again to continue a killed demo.

Examples:

```
diffusers-spatial demo --out outputs/demo
```
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ._args import int_at_least

TINY_MODEL_NOTICE = (
    "TINY RANDOM MODEL: a tiny Stable Diffusion with random weights, built from a config offline. It draws noise, "
    "so every figure here is meaningless except as a smoke test of the pipeline."
)
REAL_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LORA_NAME = "pytorch_lora_weights.safetensors"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="The whole loop offline on a tiny random model: dataset, ESPLoRA training, bench, report (minutes).",
        description="Build the offline sample dataset, a tiny random Stable Diffusion, train an ESPLoRA on the sample "
        "for a few steps, and run `diffusers-spatial bench` (baseline, +TORE, +LoRA, +LoRA+TORE) with the embedded "
        "detector. No network, no GPU. The model is a tiny random one: the figures are a smoke test only. Re-run the "
        "same command to resume.",
    )
    parser.add_argument("--out", default="outputs/demo", help="Output folder (default outputs/demo; resumed).")
    parser.add_argument("--train-steps", type=int_at_least(1), default=10, help="ESPLoRA training steps (10).")
    parser.add_argument("--num-pairs", type=int_at_least(1), default=1, help="Object pairs of the suite (1).")
    parser.add_argument("--images-per-prompt", type=int_at_least(1), default=2, help="Images per prompt (2).")
    parser.add_argument("--steps", type=int_at_least(1), default=2, help="Denoising steps (2).")
    parser.add_argument("--size", type=int_at_least(8, 8), default=32, help="Image size in pixels (32).")
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    parser.set_defaults(func=run)


def training_script() -> Path:
    """`examples/train_esplora.py` of the source checkout this package runs from (absent in a wheel install)."""
    import diffusers_spatial

    return Path(diffusers_spatial.__file__).resolve().parents[2] / "examples" / "train_esplora.py"


def training_arguments(model: str, dataset: str, output_dir: str, *, resolution: int, steps: int) -> list[str]:
    """The training script's arguments; the demo's tiny run and the real run shown at the end share them."""
    return [
        "--pretrained_model_name_or_path", model,
        "--dataset_name", dataset,
        "--resolution", str(resolution),
        "--train_batch_size", "4" if resolution < 256 else "8",
        "--max_train_steps", str(steps),
        "--learning_rate", "1e-3" if resolution < 256 else "1e-4",
        "--rank", "4" if resolution < 256 else "16",
        "--cache_latents", "--cache_text_embeddings",
        "--checkpointing_steps", str(min(500, max(1, steps // 2))),
        "--resume_from_checkpoint", "latest",
        "--seed", "0",
        "--report_to", "none",
        "--output_dir", output_dir,
    ]  # fmt: skip


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _build_dataset(folder: Path, progress: bool) -> bool:
    """The sample dataset; False (with the reason printed) when the photos it is made from are not installed."""
    from ..data import build_sample
    from ..photos import PhotoUnavailableError

    if (folder / "stats.json").is_file():  # written by the curation's last step: the dataset is complete
        _say(f"1/5 sample dataset: already built in {folder}")
        return True
    _say(f"1/5 sample dataset: building from real photos into {folder}")
    try:
        stats = build_sample(folder, progress=progress)
    except PhotoUnavailableError as err:
        _say(f"cannot build the sample dataset ({err}); ESPLoRA training is skipped")
        return False
    _say(f"    {stats['rows_out']} verified rows")
    return True


def _build_model(folder: Path) -> None:
    from ..utils import make_tiny_sd

    if (folder / "model_index.json").is_file():
        _say(f"2/5 tiny random model: already in {folder}")
        return
    _say(f"2/5 tiny random model: building from a config into {folder}")
    tmp = folder.with_name(folder.name + ".partial")
    make_tiny_sd(tmp, seed=0)
    os.replace(tmp, folder)  # whole or absent: a killed save is redone


def _train_lora(model: Path, dataset: Path, output_dir: Path, args: argparse.Namespace) -> Path | None:
    """Train the ESPLoRA (resuming from its last checkpoint); None with the reason printed when it cannot run."""
    if (output_dir / LORA_NAME).is_file():
        _say(f"3/5 ESPLoRA: already trained in {output_dir}")
        return output_dir
    script = training_script()
    if not script.is_file():
        _say(
            f"3/5 ESPLoRA: SKIPPED: the training script {script} is not here (this package was installed from a "
            "wheel; the example scripts live in the source repository). The bench runs without a LoRA."
        )
        return None
    _say(f"3/5 ESPLoRA: training {args.train_steps} steps with {script.name} (log: {output_dir / 'train.log'})")
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1"]
    command += ["--mixed_precision", "no", str(script)]
    command += training_arguments(
        str(model), str(dataset), str(output_dir), resolution=args.size, steps=args.train_steps
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(output_dir / "train.log", "w", encoding="utf-8") as log:
        process = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    if process.returncode != 0 or not (output_dir / LORA_NAME).is_file():
        tail = (output_dir / "train.log").read_text(encoding="utf-8").splitlines()[-20:]
        raise SystemExit(
            f"diffusers-spatial demo: error: ESPLoRA training failed (exit {process.returncode}); last lines of "
            f"{output_dir / 'train.log'}:\n" + "\n".join(tail)
        )
    return output_dir


def real_run_commands(bench_config) -> str:
    """Markdown: the commands of the real run (SD 1.5 on a GPU) that this demo rehearses."""
    import dataclasses

    from ..benchmark import bench_command

    train = training_arguments(REAL_MODEL, "spatial-dataset", "esplora-sd15", resolution=512, steps=5000)
    real = dataclasses.replace(
        bench_config,
        model=REAL_MODEL,
        lora="esplora-sd15" if bench_config.lora else None,
        num_pairs=50,
        images_per_prompt=4,
        num_inference_steps=None,
        height=None,
        width=None,
        batch_size=8,
        dtype="float16",
        notice=None,
    )
    lines = [
        "## The real run (GPU, Hugging Face Hub)",
        "",
        "```bash",
        "# the spatial dataset: see docs/dataset.md (diffusers-spatial dataset curate ... --out spatial-dataset)",
        "accelerate launch --mixed_precision fp16 examples/train_esplora.py " + " ".join(train),
        bench_command(real, "runs/bench-sd15", always=("suite", "num_pairs", "images_per_prompt", "seed")),
        "```",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..benchmark import BenchConfig, format_summary, run_bench

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"diffusers-spatial demo: error: --out {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    _say(TINY_MODEL_NOTICE)
    progress = not args.no_progress

    has_dataset = _build_dataset(out / "dataset", progress)
    _build_model(out / "tiny-sd")
    lora = _train_lora(out / "tiny-sd", out / "dataset", out / "esplora", args) if has_dataset else None

    config = BenchConfig(
        model=str(out / "tiny-sd"),
        lora=None if lora is None else str(lora),
        suite="sr2d",
        num_pairs=args.num_pairs,
        images_per_prompt=args.images_per_prompt,
        num_inference_steps=args.steps,
        height=args.size,
        width=args.size,
        batch_size=8,
        notice=TINY_MODEL_NOTICE,
    )
    variants = ", ".join(v.label for v in config.variants())
    _say(f"4/5 bench: {variants} on the sr2d suite, scored by the embedded detector")
    appendix = real_run_commands(config)
    try:
        report = run_bench(config, out / "bench", progress=progress, appendix=appendix)
    except ValueError as err:  # e.g. the folder holds a run made with other settings
        raise SystemExit(f"diffusers-spatial demo: error: {err}") from None

    print()
    print(format_summary(report))
    print(f"\nreport: {out / 'bench' / 'report.md'} (plots: comparison.png, per_relation.png, grid.png)")
    print("\nThe same loop on a real model (a GPU and the Hugging Face Hub):")
    print("\n".join(line for line in appendix.splitlines() if line and not line.startswith(("#", "```"))))
    print(f"\n!! {TINY_MODEL_NOTICE}\n")
    _real_photo_check(out / "real-photos", progress)
    return 0


def _real_photo_check(folder: Path, progress: bool) -> None:
    """The metric on real photos with known answers: the one part of the demo whose figures mean something."""
    from ..metric.real_photos import score_real_photos
    from ..photos import PhotoUnavailableError

    _say("5/5 the metric on REAL photos (no generative model): statements labelled true/false by hand-checked boxes")
    try:
        result = score_real_photos(folder, progress=progress)
    except PhotoUnavailableError as err:
        _say(f"    skipped: {err}")
        return
    print(f"\n{result['statements']} statements about darknet's photos, boxes from the embedded detector:")
    print(f"{'protocol':<18} {'says correct on TRUE statements':>32} {'says correct on FALSE statements':>34}")
    for protocol, figures in result["true"]["summary"].items():
        if not figures.get("n_images"):
            continue
        rate = {k: result[k]["summary"][protocol] for k in ("true", "false")}
        cells = [_headline_rate(rate[k]) for k in ("true", "false")]
        print(f"{protocol:<18} {cells[0]:>32} {cells[1]:>34}")
    print(f"reports: {folder}/true-statements/report.md, {folder}/false-statements/report.md")


def _headline_rate(figures: dict) -> str:
    """A protocol's headline as a fraction of images judged correct."""
    if "VISOR_uncond" in figures:
        return f"{figures['VISOR_uncond'] / 100:.2f}"
    value = figures.get("accuracy", figures.get("score"))
    return "-" if value is None else f"{value:.2f}"
