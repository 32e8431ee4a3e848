"""`diffusers-spatial demo`: the whole method, offline, on a CPU, in minutes, with figures that mean something.

No Stable Diffusion weights can be had offline, so the demo runs the method on the **world base model** that ships
with the package (`diffusers_spatial.world`, docs/world.md): a tiny Stable Diffusion 1.x-format model trained from
scratch on a synthetic world of coloured shapes with LAION-like captions, where every spatial fact is known exactly.

1. writes a verified world dataset (the spatial dataset's format: parquet + card) with
   `diffusers_spatial.world.write_world_dataset`;
2. trains an ESPLoRA on it with `examples/train_esplora.py` (unchanged, through `accelerate launch`);
3. runs `diffusers-spatial bench` on the world base model: baseline, +TORE, +LoRA, +LoRA+TORE, on the `world`
   suite, judged by the world's exact perception, with 95% intervals and paired changes. Everything is held out:
   the evaluated object pairs appear in no training row, and TORE is calibrated on the other pairs;
4. prints the comparison and the commands of the same loop on SD 1.5 (a GPU and the Hub);
5. the metric on real photos with hand-labelled answers (no generative model).

Every step is resumable (its outputs are its checkpoint): run the same command again to continue a killed demo.

Examples:

```
diffusers-spatial demo --out outputs/demo
```
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from ..data.writer import stats_path
from ._args import CommandError, int_at_least

REAL_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LORA_NAME = "pytorch_lora_weights.safetensors"
# The world model's sampling settings (its pretraining learning curve was measured with them).
WORLD_STEPS, WORLD_GUIDANCE = 20, 4.0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="ESPLoRA and TORE on the shipped world base model, offline, on a CPU: dataset, training, bench (minutes).",
        description="Write a verified world dataset, train an ESPLoRA on the shipped world base model (a tiny "
        "text-to-image model of a synthetic world of shapes, trained on LAION-like captions), and run "
        "`diffusers-spatial bench` (baseline, +TORE, +LoRA, +LoRA+TORE) judged by the world's exact perception. No "
        "network, no GPU. Re-run the same command to resume.",
    )
    parser.add_argument("--out", default="outputs/demo", help="Output folder (default outputs/demo; resumed).")
    parser.add_argument("--model", default=None, help="A world base model folder (default: the shipped one).")
    parser.add_argument("--train-steps", type=int_at_least(1), default=2000, help="ESPLoRA training steps (2000).")
    parser.add_argument("--dataset-rows", type=int_at_least(8), default=4000, help="Verified world rows (4000).")
    parser.add_argument(
        "--num-pairs",
        type=int_at_least(1),
        default=18,
        help="Object pairs evaluated (18 of the world's 36); the LoRA never sees them, TORE is calibrated on others.",
    )
    parser.add_argument("--images-per-prompt", type=int_at_least(1), default=2, help="Images per prompt (2).")
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    parser.set_defaults(func=run)


def training_script() -> Path:
    """`examples/train_esplora.py` of the source checkout this package runs from (absent in a wheel install)."""
    import diffusers_spatial

    return Path(diffusers_spatial.__file__).resolve().parents[2] / "examples" / "train_esplora.py"


def training_arguments(model: str, dataset: str, output_dir: str, *, resolution: int, steps: int) -> list[str]:
    """The training script's arguments; the demo's world run and the real run shown at the end share them."""
    world = resolution < 256
    return [
        "--pretrained_model_name_or_path", model,
        "--dataset_name", dataset,
        "--resolution", str(resolution),
        "--train_batch_size", "32" if world else "8",
        "--max_train_steps", str(steps),
        "--learning_rate", "1e-3" if world else "1e-4",
        "--lr_warmup_steps", str(min(500, steps // 10)),
        "--rank", "8" if world else "16",
        "--cache_latents", "--cache_text_embeddings",
        "--checkpointing_steps", str(min(500, max(1, steps // 2))),
        "--resume_from_checkpoint", "latest",
        "--seed", "0",
        "--report_to", "none",
        "--output_dir", output_dir,
    ]  # fmt: skip


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _build_dataset(folder: Path, rows: int, held_out: set, progress: bool) -> None:
    from ..world.dataset import write_world_dataset

    if stats_path(folder).is_file():  # written last: the dataset is complete
        _say(f"1/5 world dataset: already written in {folder}")
        return
    _say(
        f"1/5 world dataset: {rows} verified rows (both object orders, balanced relations; the {len(held_out)} "
        f"evaluated object pairs held out) into {folder}"
    )
    stats = write_world_dataset(folder, num_rows=rows, exclude_pairs=held_out, progress=progress)
    _say(f"    {stats['rows_out']} rows; card: {folder / 'README.md'}")


def _train_lora(model: Path, dataset: Path, output_dir: Path, args: argparse.Namespace) -> tuple[Path | None, str]:
    """Train the ESPLoRA (resuming from its last checkpoint): its folder, or None and why it could not run."""
    if (output_dir / LORA_NAME).is_file():
        _say(f"3/5 ESPLoRA: already trained in {output_dir}")
        return output_dir, ""
    script = training_script()
    if not script.is_file():
        reason = (
            f"the training script {script} is not here (this package was installed from a wheel; the example "
            "scripts live in the source repository)"
        )
        _say(f"3/5 ESPLoRA: SKIPPED: {reason}. The bench runs without a LoRA.")
        return None, reason
    _say(f"3/5 ESPLoRA: training {args.train_steps} steps with {script.name} (log: {output_dir / 'train.log'})")
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1"]
    command += ["--mixed_precision", "no", str(script)]
    command += training_arguments(str(model), str(dataset), str(output_dir), resolution=32, steps=args.train_steps)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(output_dir / "train.log", "w", encoding="utf-8") as log:
        process = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    if process.returncode != 0 or not (output_dir / LORA_NAME).is_file():
        tail = (output_dir / "train.log").read_text(encoding="utf-8").splitlines()[-20:]
        raise CommandError(
            f"diffusers-spatial demo: error: ESPLoRA training failed (exit {process.returncode}); last lines of "
            f"{output_dir / 'train.log'}:\n" + "\n".join(tail)
        )
    return output_dir, ""


def real_run_commands(bench_config) -> str:
    """Markdown: the commands of the real run (SD 1.5 on a GPU) that this demo rehearses on the world."""
    from ..benchmark import bench_command

    train = training_arguments(REAL_MODEL, "spatial-dataset", "esplora-sd15", resolution=512, steps=5000)
    real = dataclasses.replace(
        bench_config,
        model=REAL_MODEL,
        lora="esplora-sd15" if bench_config.lora else None,
        suite="sr2d",
        num_pairs=50,
        images_per_prompt=4,
        num_inference_steps=None,
        guidance_scale=None,
        height=None,
        width=None,
        batch_size=8,
        dtype="float16",
        detector="owlv2",
        protocols=None,
        calibration="seed",
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
    from ..benchmark import BenchConfig, format_summary, run_bench, split_suite
    from ..world import WORLD_MODEL_NOTICE, world_model_path

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    model = Path(args.model) if args.model else world_model_path()
    if not (model / "model_index.json").is_file():
        raise ValueError(f"--model {str(model)!r} is not a diffusers pipeline folder")
    out.mkdir(parents=True, exist_ok=True)
    _say(WORLD_MODEL_NOTICE)
    progress = not args.no_progress

    # Held out twice over: the evaluated object pairs are in no training row, and TORE is calibrated on the others.
    config = BenchConfig(
        model=str(model),
        suite="world",
        num_pairs=args.num_pairs,
        images_per_prompt=args.images_per_prompt,
        num_inference_steps=WORLD_STEPS,
        guidance_scale=WORLD_GUIDANCE,
        batch_size=64,
        detector="world",
        eval_batch_size=64,
        # T2I-CompBench reads neither these phrasings (2D) nor 2D relations (3D): its columns would be all undetermined.
        protocols=["visor", "geneval", "esplora"],
        calibration="facts",
        notice=WORLD_MODEL_NOTICE,
    )
    try:
        held_out = {frozenset((p.subject, p.object)) for p in split_suite(config).evaluation}
    except ValueError as err:  # no pair left for TORE's calibration
        raise ValueError(f"--num-pairs: {err}") from None
    _build_dataset(out / "world-dataset", args.dataset_rows, held_out, progress)
    _say(f"2/5 world base model: {model} (model card: {model / 'README.md'})")
    lora, skipped = _train_lora(model, out / "world-dataset", out / "esplora", args)
    config = dataclasses.replace(config, lora=None if lora is None else str(lora))
    variants = ", ".join(v.label for v in config.variants())
    _say(f"4/5 bench: {variants} on the world suite, judged by the world's exact perception")
    commands = real_run_commands(config)
    # the report says why its +LoRA columns are missing, not only "LoRA: none"
    appendix = f"**The +LoRA variants did not run**: {skipped}.\n\n{commands}" if skipped else commands
    report = run_bench(config, out / "bench", progress=progress, appendix=appendix)

    print()
    print(format_summary(report))
    print(f"\nreport: {out / 'bench' / 'report.md'} (plots: comparison.png, per_relation.png, grid.png)")
    print("\nThe same loop on a real model (a GPU and the Hugging Face Hub):")
    print("\n".join(line for line in commands.splitlines() if line and not line.startswith(("#", "```"))))
    print(f"\n!! {WORLD_MODEL_NOTICE}\n")
    _real_photo_check(out / "real-photos", progress)
    return 0


def _real_photo_check(folder: Path, progress: bool) -> None:
    """The metric on real photos with known answers: the metric itself, on real images."""
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
