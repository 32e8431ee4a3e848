"""Benchmark: what ESPLoRA and TORE do to the world base model (the proving ground, docs/world.md).

Runs the README's first command (`diffusers-spatial demo`: world dataset with the evaluated object pairs held out,
ESPLoRA by `examples/train_esplora.py`, `diffusers-spatial bench` with TORE calibrated on other pairs) with more
images per prompt for tighter intervals, then writes `bench/results/world.md` (+ `world.json` and the figures in
`bench/results/world/`): every variant's accuracy with its 95% interval, the per-relation table, the paired
changes against the base model, TORE's rewrites, and the time and memory of each stage on this machine:

- pretraining (from the shipped model's `learning_curve.jsonl`: seconds per UNet step, evaluation time, peak memory);
- ESPLoRA training (its `training_summary.json`);
- the bench (wall time per generated and judged image).

Usage:

    python bench/bench_world.py                          # 4 images per prompt; writes bench/results/world.md
    python bench/bench_world.py --images-per-prompt 2 --out runs/world-bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from diffusers_spatial.world import WORLD_MODEL_NOTICE, world_model_path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
FIGURES = ("comparison.png", "per_relation.png", "grid.png")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/world-bench", help="Work folder (resumed if it exists).")
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--train-steps", type=int, default=None, help="ESPLoRA steps (default: the demo's).")
    parser.add_argument("--results", default=str(RESULTS), help="Where world.md / world.json / world/ go.")
    return parser.parse_args()


def run_demo(out: Path, images_per_prompt: int, train_steps: int | None) -> float:
    command = [sys.executable, "-m", "diffusers_spatial.cli", "demo", "--out", str(out), "--no-progress"]
    command += ["--images-per-prompt", str(images_per_prompt)]
    if train_steps is not None:
        command += ["--train-steps", str(train_steps)]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - started


def pretraining_figures(model: Path) -> dict:
    curve = [json.loads(line) for line in (model / "learning_curve.jsonl").read_text().splitlines() if line]
    last = curve[-1]
    seconds = [r["seconds_per_step"] for r in curve if r.get("seconds_per_step")]
    return {
        "unet_steps": last["step"],
        "unet_seconds_per_step_median": sorted(seconds)[len(seconds) // 2] if seconds else None,
        "evaluation_seconds_per_point": sorted(r["eval_seconds"] for r in curve)[len(curve) // 2],
        "peak_memory_mb": max(r["peak_memory_mb"] for r in curve),
        "final": {k: v for k, v in last.items() if k.startswith(("accuracy", "objects_found", "order_gap"))},
    }


def main():
    args = parse_args()
    out, results = Path(args.out), Path(args.results)
    model = world_model_path()
    wall = run_demo(out, args.images_per_prompt, args.train_steps)
    report = json.loads((out / "bench" / "report.json").read_text())
    training = json.loads((out / "esplora" / "training_summary.json").read_text())
    images = sum(v["counts"]["images"] for v in report["variants"].values())
    images += sum(
        len((out / "bench" / s["folder"] / "generations.jsonl").read_text().splitlines())
        for s in report["calibration"]["stages"].values()
    )
    record = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "command": f"python bench/bench_world.py --images-per-prompt {args.images_per_prompt}",
        "pretraining": pretraining_figures(model),
        "esplora_training": {
            k: training[k] for k in ("global_step", "train_seconds", "samples_per_second", "peak_rss_mib")
        },
        "bench": {"demo_wall_seconds": round(wall, 1), "images_generated_and_judged": images},
        "comparison": report["comparison"],
        "calibration": {k: report["calibration"][k] for k in ("method", "description", "tore")},
        "settings": report["settings"],
    }
    figures = results / "world"
    figures.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        shutil.copyfile(out / "bench" / name, figures / name)
    shutil.copyfile(model / "learning_curve.png", figures / "learning_curve.png")
    (results / "world.json").write_text(json.dumps(record, indent=2))
    (results / "world.md").write_text(render(record, report))
    print((results / "world.md").read_text())


def render(record: dict, report: dict) -> str:
    from diffusers_spatial.benchmark import _comparison_rows, _relations  # the bench report's own tables
    from diffusers_spatial.metric.report import format_cell, markdown_table

    header, rows = _comparison_rows(report)
    per_relation = report["comparison"]["per_relation"]
    relation_rows = [
        [relation]
        + [
            f"{format_cell(per_relation[v][relation]['rate'])} [{per_relation[v][relation]['interval'][0]:.2f}, "
            f"{per_relation[v][relation]['interval'][1]:.2f}]"
            for v in report["variants"]
        ]
        for relation in _relations(report)
    ]
    pre, lora, bench = record["pretraining"], record["esplora_training"], record["bench"]
    swaps = {m: t["swaps"] for m, t in record["calibration"]["tore"].items()}
    lines = [
        "# The proving ground: ESPLoRA and TORE on the world base model",
        "",
        f"> **{WORLD_MODEL_NOTICE}**",
        "",
        f"Command: `{record['command']}` (runs `diffusers-spatial demo` with "
        f"{report['suite']['images_per_prompt']} images per prompt). Machine: {record['machine']['cpus']} CPUs, "
        f"torch threads {record['machine']['torch_threads']}.",
        "",
        f"Held out: the {report['suite']['evaluation_prompts']} evaluation prompts are "
        f"{report['suite']['evaluation_prompts'] // 8} object pairs that no ESPLoRA training row shows; "
        f"{record['calibration']['description']}",
        "",
        "## Comparison (esplora protocol is primary; accuracy = right verdicts / all images)",
        "",
        *markdown_table(header, [[format_cell(c) for c in row] for row in rows]),
        "## Accuracy per relation (esplora), 95% intervals",
        "",
        *markdown_table(["relation", *(v["label"] for v in report["variants"].values())], relation_rows),
        f"TORE's rewrites (calibrated per model): `{json.dumps(swaps)}`.",
        "",
        "![comparison](world/comparison.png)",
        "",
        "![per relation](world/per_relation.png)",
        "",
        "## Time and memory on this machine",
        "",
        "| stage | figure |",
        "| --- | --- |",
        f"| pretraining, UNet | {pre['unet_steps']} steps, median {pre['unet_seconds_per_step_median']} s / step "
        f"(batch 32); peak memory {pre['peak_memory_mb']:.0f} MB |",
        f"| pretraining, learning-curve point | {pre['evaluation_seconds_per_point']} s (288 images generated and judged) |",
        f"| ESPLoRA training | {lora['global_step']} steps in {lora['train_seconds']:.0f} s "
        f"({lora['samples_per_second']:.1f} samples / s); peak memory {lora['peak_rss_mib']:.0f} MiB |",
        f"| the whole demo (dataset, training, bench) | {bench['demo_wall_seconds']:.0f} s; "
        f"{bench['images_generated_and_judged']} images generated and judged |",
        "",
        "Base model at the end of pretraining (its own learning curve, all 36 pairs, 1 image per prompt): "
        f"`{json.dumps(pre['final'])}`.",
        "",
        "![learning curve](world/learning_curve.png)",
        "",
        "## Images (rows: evaluation images; columns: the variants; frame: esplora's verdict)",
        "",
        "![grid](world/grid.png)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
