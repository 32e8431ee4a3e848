"""`diffusers-spatial bench`: baseline vs +TORE vs +LoRA vs +LoRA+TORE on a spatial prompt suite, every protocol.

Generates the suite with the model, scores it with every protocol, calibrates TORE on a held-out split (another seed,
or other object pairs), generates again with TORE, with the LoRA and with both, and writes OUT/report.md,
OUT/report.json, comparison plots and an image grid. Every stage is resumable: run the same command again.

Examples:

```
diffusers-spatial bench --model stable-diffusion-v1-5/stable-diffusion-v1-5 --lora esplora-sd15 --suite sr2d \\
    --num-pairs 50 --images-per-prompt 4 --dtype float16 --out runs/bench-sd15
diffusers-spatial bench --model tiny-sd --lora tiny-lora --suite sr2d --num-pairs 1 --images-per-prompt 2 \\
    --steps 2 --height 32 --width 32 --out runs/bench-tiny          # offline, a tiny random model
accelerate launch -m diffusers_spatial.cli bench --model ... --out runs/bench   # several GPUs share each stage
```
"""

from __future__ import annotations

import argparse

from ..suites import SUITES
from ._args import (
    add_device_arguments,
    add_sampling_arguments,
    check_source,
    finite_float,
    int_at_least,
    resolve_device_and_dtype,
)


def _num_pairs(text: str) -> int | None:
    if text == "all":
        return None
    return int_at_least(1)(text)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="Compare baseline, +TORE, +LoRA and +LoRA+TORE on a spatial prompt suite (resumable).",
        description="Generate a spatial prompt suite with a model, score it with every protocol, calibrate TORE on a "
        "held-out split of the suite, generate again with TORE, with the spatial LoRA and with both, and write "
        "OUT/report.md, OUT/report.json, plots (comparison.png, per_relation.png) and an image grid (grid.png). "
        "Re-run the same command to resume.",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", required=True, help="Hub model id or local diffusers folder (SD 1.x/2.x, SDXL, SD3.x, FLUX.1)."
    )
    model.add_argument("--lora", help="Spatial LoRA (file, folder or Hub id); adds the +LoRA and +LoRA+TORE runs.")
    model.add_argument("--lora-scale", type=finite_float, default=1.0, help="Scale of the fused LoRA (default 1).")
    model.add_argument("--tore", help="A calibrated TORE (folder, tore_config.json or Hub id); default: calibrate.")
    add_device_arguments(model)

    prompts = parser.add_argument_group("prompts and generation")
    prompts.add_argument("--suite", choices=SUITES, default="sr2d", help="Prompt suite (default sr2d).")
    prompts.add_argument("--num-pairs", type=_num_pairs, default=50, help="Object pairs, or 'all' (default 50).")
    prompts.add_argument("--suite-seed", type=int_at_least(0), default=0, help="Seed of the suite's sampling.")
    add_sampling_arguments(prompts)

    metric = parser.add_argument_group("metric")
    metric.add_argument(
        "--protocol",
        "--protocols",
        dest="protocol",
        action="append",
        help="Protocol(s) to report (repeat or comma-separate): visor, t2i_compbench_2d, t2i_compbench_3d, geneval, "
        "esplora. Default: all.",
    )
    metric.add_argument("--primary-protocol", help="Protocol of TORE's bias table and the per-relation table.")
    metric.add_argument("--detector", default="embedded", help="Detector: 'embedded' (offline), a preset or a model.")
    metric.add_argument("--depth-model", help="Depth model for in front of / behind (default: none).")
    metric.add_argument("--eval-batch-size", type=int_at_least(1), default=8, help="Images per detector call.")

    tore = parser.add_argument_group("TORE calibration")
    tore.add_argument("--tau", type=finite_float, default=0.0, help="Swap only when the swap wins by more than tau.")
    tore.add_argument("--min-count", type=int_at_least(1), default=10, help="Samples a triplet needs (default 10).")
    tore.add_argument(
        "--calibration",
        choices=("seed", "facts"),
        default="seed",
        help="Held-out calibration: 'seed' = the same prompts from another seed (default); 'facts' = other object "
        "pairs of the suite.",
    )
    tore.add_argument("--calibration-seed", type=int_at_least(0), help="Seed of the calibration images (seed + 1).")
    tore.add_argument(
        "--lora-tore-calibration",
        choices=("lora", "baseline"),
        default="lora",
        help="TORE of +LoRA+TORE: calibrated on the LoRA model (default) or the baseline's.",
    )
    parser.add_argument("--out", required=True, help="Output folder (resumed if it holds a run).")
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars and stage lines.")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """A `BenchConfig` from parsed arguments (raises ValueError naming a bad value)."""
    from ..benchmark import BenchConfig

    for value, flag in ((args.model, "--model"), (args.lora, "--lora"), (args.tore, "--tore")):
        check_source(value, flag)
    resolve_device_and_dtype(args)  # an unavailable device or fp16 on the CPU fails before any model loads
    return BenchConfig(
        model=args.model,
        lora=args.lora,
        lora_scale=args.lora_scale,
        tore=args.tore,
        suite=args.suite,
        num_pairs=args.num_pairs,
        suite_seed=args.suite_seed,
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        batch_size=args.batch_size,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        height=args.height,
        width=args.width,
        device=args.device,
        dtype=args.dtype,
        protocols=None if not args.protocol else ",".join(args.protocol),
        primary_protocol=args.primary_protocol,
        detector=args.detector,
        depth_model=args.depth_model,
        eval_batch_size=args.eval_batch_size,
        tau=args.tau,
        min_count=args.min_count,
        calibration=args.calibration,
        calibration_seed=args.calibration_seed,
        lora_tore_calibration=args.lora_tore_calibration,
    )


def run(args: argparse.Namespace) -> int:
    from ..benchmark import format_summary, run_bench
    from ..utils.distributed import process_state

    config = config_from_args(args)
    report = run_bench(config, args.out, progress=not args.no_progress)
    if process_state().is_main_process:
        print(format_summary(report))
        print(f"\nreport: {args.out}/report.md")
    return 0
