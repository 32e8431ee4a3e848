"""`diffusers-spatial dataset`: build the offline sample, curate LAION-style shards, add a synthetic round, push.

Examples:

```
diffusers-spatial dataset build-sample --out spatial-sample
diffusers-spatial dataset curate --input laion-shards/ --out spatial-dataset --depth depth-anything-v2 \\
    --detector owlv2 --max-rows-per-pair 1000
ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m diffusers_spatial.cli dataset curate ...   # 2 CPU processes
accelerate launch -m diffusers_spatial.cli dataset curate ...                                   # all GPUs
diffusers-spatial dataset synthesize --model esplora-sd15-round0 --suite sr2d --num-pairs 200 --seeds 4 \\
    --out spatial-dataset --round 1
diffusers-spatial dataset push --out spatial-dataset --repo-id me/spatial-relations
```

Run `curate` or `synthesize` again with the same arguments to resume a killed run.
"""

from __future__ import annotations

import argparse
import json
import math
import os

from ..utils.files import read_lines


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def _add_curation_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("curation")
    group.add_argument("--detector", default="embedded", help="Detector: 'embedded' (default), a preset or a model.")
    group.add_argument("--depth", help="Depth model (preset, id or folder); default none (only shipped depth).")
    group.add_argument("--batch-size", type=_positive_int, default=16, help="Records per batch (bounds memory).")
    group.add_argument("--min-confidence", type=_fraction, default=0.3, help="Minimum subject/object box score.")
    group.add_argument(
        "--min-box-fraction", type=_fraction, default=0.005, help="Minimum subject/object box area / image area."
    )
    group.add_argument("--max-rows-per-pair", type=_positive_int, help="Object-pair balance cap per shard.")
    group.add_argument("--license", default="unknown", help="Licence for rows whose input names none.")
    group.add_argument("--no-progress", action="store_true", help="Hide progress bars.")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="Build, curate, grow and publish the spatial dataset.",
        description="The spatial dataset: verified spatial captions from LAION-style shards, verified generations, "
        "published as a Hub dataset (parquet with embedded images + a card with typed configs).",
    )
    commands = parser.add_subparsers(dest="dataset_command", metavar="DATASET_COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    sample = commands.add_parser(
        "build-sample",
        help="Build the offline sample dataset from real photos (scikit-image + Debian darknet).",
        description="Write a small LAION-style input (collages of real photo crops with right, wrong and missing "
        "relations, the darknet photos, and one of each kind of bad input) to OUT-input and curate it into OUT.",
    )
    sample.add_argument("--out", required=True, help="Dataset folder to write (resumed if it holds a run).")
    sample.add_argument("--seed", type=int, default=0, help="Layout and caption seed (default 0).")
    sample.add_argument(
        "--collages-per-pair", type=_positive_int, default=1, help="Collages per object pair (default 1)."
    )
    sample.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    sample.set_defaults(func=run_build_sample)

    curate = commands.add_parser(
        "curate",
        help="Curate img2dataset webdataset shards (or an image folder) into the spatial dataset.",
        description="Shards are the unit of work, split over accelerate processes; each finished shard is committed "
        "atomically with a manifest entry, so re-running the same command resumes a killed run.",
    )
    curate.add_argument("--input", required=True, help="img2dataset output folder (*.tar + *.parquet) or images.")
    curate.add_argument("--out", required=True, help="Dataset folder (resumed if it holds a run).")
    curate.add_argument("--shard-size", type=_positive_int, default=1000, help="Images per shard (image folders).")
    curate.add_argument("--no-synthesize", action="store_true", help="Skip, do not rewrite, relation-less captions.")
    curate.add_argument("--keep-non-english", action="store_true", help="Do not apply the language heuristic.")
    curate.add_argument("--push-to-hub", metavar="REPO_ID", help="Upload the finished dataset to this Hub repo.")
    _add_curation_options(curate)
    curate.set_defaults(func=run_curate)

    synth = commands.add_parser(
        "synthesize",
        help="A synthetic round: generate for spatial prompts, keep the verified images.",
        description="Generate seeded images with a diffusers model (optionally a spatial LoRA), verify them with the "
        "geometry, and add the verified ones to OUT as source=synthetic rows. Resumable.",
    )
    synth.add_argument("--model", required=True, help="Hub id or local diffusers folder.")
    synth.add_argument("--lora", help="Spatial LoRA (folder, .safetensors or Hub id).")
    source = synth.add_mutually_exclusive_group(required=True)
    source.add_argument("--suite", help="Built-in prompt suite (sr2d, 3d, geneval_position, heldout).")
    source.add_argument("--prompts", help="Text file, one prompt a line.")
    synth.add_argument("--num-pairs", type=_positive_int, help="Object pairs sampled from --suite.")
    synth.add_argument("--seeds", type=_positive_int, default=4, help="Seeds 0..N-1 per prompt (default 4).")
    synth.add_argument("--round", type=int, default=0, help="Round number (part of the shard names).")
    synth.add_argument("--steps", type=_positive_int, help="Denoising steps (default: the pipeline's).")
    synth.add_argument("--device", help="e.g. cuda, cpu (default: the accelerate process's device).")
    synth.add_argument("--out", required=True, help="Dataset folder to add the rows to.")
    _add_curation_options(synth)
    synth.set_defaults(func=run_synthesize)

    push = commands.add_parser("push", help="Upload a finished dataset folder to the Hugging Face Hub.")
    push.add_argument("--out", required=True, help="The dataset folder.")
    push.add_argument("--repo-id", required=True, help="Hub dataset repo, e.g. me/spatial-relations.")
    push.add_argument("--private", action="store_true", help="Create the repo private.")
    push.set_defaults(func=run_push)


def _config(args, **overrides):
    from ..data import CurationConfig

    return CurationConfig(
        detector=args.detector,
        depth=args.depth,
        batch_size=args.batch_size,
        min_confidence=args.min_confidence,
        min_box_fraction=args.min_box_fraction,
        max_rows_per_pair=args.max_rows_per_pair,
        license=args.license,
        **overrides,
    )


def _report(stats: dict, out: str) -> None:
    from ..data.runner import default_state

    if default_state().is_main_process:
        skipped = {reason: n for reason, n in stats["skipped"].items() if n}
        print(f"{stats['rows_out']} of {stats['rows_in']} rows kept in {out} {json.dumps(stats['rows_by_config'])}")
        print(f"skipped: {json.dumps(skipped)}")


def run_build_sample(args) -> int:
    from ..data import build_sample

    stats = build_sample(
        args.out, seed=args.seed, collages_per_pair=args.collages_per_pair, progress=not args.no_progress
    )
    _report(stats, args.out)
    return 0


def run_curate(args) -> int:
    from ..data import curate, push_to_hub

    config = _config(
        args, shard_size=args.shard_size, synthesize=not args.no_synthesize, require_english=not args.keep_non_english
    )
    stats = curate(args.input, args.out, config, progress=not args.no_progress)
    _report(stats, args.out)
    if args.push_to_hub:
        from ..data.runner import default_state

        if default_state().is_main_process:
            print(push_to_hub(args.out, args.push_to_hub))
    return 0


def _read_prompts(args) -> list[str]:
    if args.suite is not None:
        from ..suites import build_suite

        return [p.prompt for p in build_suite(args.suite, num_pairs=args.num_pairs, seed=0)]
    if not os.path.isfile(args.prompts):
        raise ValueError(f"--prompts {args.prompts!r} is not a file")
    prompts = read_lines(args.prompts)
    if not prompts:
        raise ValueError(f"--prompts {args.prompts!r} holds no prompts")
    return prompts


def run_synthesize(args) -> int:
    from ..data import synthetic_round
    from ..data.runner import default_state
    from ..generation import load_generation_pipeline

    default_state()  # before anything else creates accelerate's shared state without the CPU peers
    prompts = _read_prompts(args)
    pipe = load_generation_pipeline(args.model, lora=args.lora, device=args.device)
    kwargs = {"num_inference_steps": args.steps} if args.steps else {}
    stats = synthetic_round(
        pipe,
        prompts,
        args.out,
        seeds=range(args.seeds),
        round_index=args.round,
        config=_config(args),
        pipeline_kwargs=kwargs,
        progress=not args.no_progress,
    )
    _report(stats, args.out)
    return 0


def run_push(args) -> int:
    from ..data import push_to_hub

    print(push_to_hub(args.out, args.repo_id, private=args.private or None))
    return 0
