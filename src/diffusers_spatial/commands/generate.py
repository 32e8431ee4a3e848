"""`diffusers-spatial generate`: seeded images for a spatial prompt suite, resumable, with an optional LoRA and TORE.

Examples:

```
diffusers-spatial generate --model stable-diffusion-v1-5/stable-diffusion-v1-5 --suite sr2d --num-pairs 100 \\
    --images-per-prompt 4 --seed 0 --batch-size 8 --dtype float16 --out runs/sd15-baseline
diffusers-spatial generate --model stable-diffusion-v1-5/stable-diffusion-v1-5 --lora esplora-sd15 --tore tore-sd15 \\
    --suite sr2d --num-pairs 100 --dtype float16 --out runs/sd15-lora-tore
accelerate launch -m diffusers_spatial.cli generate ...   # several GPUs: each process takes a share of the images
ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m diffusers_spatial.cli generate ...   # several CPU processes
```

Run it again with the same arguments to resume a killed run.
"""

from __future__ import annotations

import argparse
import os

from ..suites import SUITES
from ..utils.files import read_lines
from ._args import (
    add_device_arguments,
    add_sampling_arguments,
    check_source,
    finite_float,
    int_at_least,
    resolve_device_and_dtype,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="Generate seeded images for a spatial prompt suite (resumable).",
        description="Generate K seeded images per prompt of a spatial prompt suite with a diffusers model, optionally "
        "with a spatial LoRA and TORE. Writes OUT/images/<prompt_id>_<k>.png, OUT/generations.jsonl (one line per "
        "image) and OUT/prompts.jsonl (the prompts file `evaluate` reads). Re-run the same command to resume.",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", required=True, help="Hub model id or local diffusers folder (SD 1.x/2.x, SDXL, SD3.x, FLUX.1)."
    )
    model.add_argument("--lora", help="Spatial LoRA: a .safetensors file, a folder or a Hub id (fused).")
    model.add_argument("--lora-scale", type=finite_float, help="LoRA scale (default: the saved one, else 1.0).")
    model.add_argument("--tore", help="TORE config: a folder or tore_config.json, or a Hub id.")
    add_device_arguments(model)

    prompts = parser.add_argument_group("prompts (one of --suite / --prompts)")
    source = prompts.add_mutually_exclusive_group(required=True)
    source.add_argument("--suite", choices=SUITES, help="A built-in prompt suite.")
    source.add_argument(
        "--prompts",
        help="A suite file written by `diffusers_spatial.suites.write_suite` (.jsonl), or .txt: one a line.",
    )
    prompts.add_argument("--num-pairs", type=int_at_least(1), help="Object pairs to sample (default: all).")
    prompts.add_argument("--suite-seed", type=int_at_least(0), default=0, help="Seed of the suite's sampling.")

    gen = parser.add_argument_group("generation")
    add_sampling_arguments(gen)
    gen.add_argument("--out", required=True, help="Output folder (resumed if it holds a run).")
    gen.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    parser.set_defaults(func=run)


def _read_prompts(args) -> list:
    from ..suites import build_suite, read_suite

    if args.suite is not None:
        return build_suite(args.suite, num_pairs=args.num_pairs, seed=args.suite_seed)
    if args.num_pairs is not None:
        raise ValueError("--num-pairs samples a built-in --suite; it does not apply to --prompts")
    if not os.path.isfile(args.prompts):
        raise ValueError(f"--prompts {args.prompts!r} is not a file")
    prompts = read_suite(args.prompts) if args.prompts.endswith(".jsonl") else read_lines(args.prompts)
    if not prompts:
        raise ValueError(f"--prompts {args.prompts!r} holds no prompts")
    return prompts


def run(args: argparse.Namespace) -> int:
    from ..generation import (
        MANIFEST_NAME,
        PROMPTS_NAME,
        describe_pipeline,
        generate_images,
        load_generation_pipeline,
        process_state,
    )

    for value, flag in ((args.model, "--model"), (args.lora, "--lora"), (args.tore, "--tore")):
        check_source(value, flag)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} exists and is not a folder")
    prompts = _read_prompts(args)
    device, dtype = resolve_device_and_dtype(args)
    pipe = load_generation_pipeline(
        args.model, lora=args.lora, lora_scale=args.lora_scale, tore=args.tore, device=device, torch_dtype=dtype
    )
    images = generate_images(
        pipe,
        prompts,
        args.out,
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        batch_size=args.batch_size,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        height=args.height,
        width=args.width,
        progress=not args.no_progress,
        model_info={**describe_pipeline(pipe), "lora": args.lora},
    )
    if process_state().is_main_process:
        print(f"{len(images)} images in {args.out} ({MANIFEST_NAME}, {PROMPTS_NAME})")
    return 0
