"""`diffusers-spatial evaluate`: score a folder of generated images against their spatial prompts.

Writes into OUT: `report.json` and `report.md` (every protocol's figures side by side, per-relation and per-order
accuracy, counterfactual consistency, object accuracy, undetermined images with reasons, the bias table), PNG
plots, and `results.jsonl` (one line per image, appended as computed) with `run.json` (the settings).

Examples:

```
diffusers-spatial evaluate runs/sd15/images --prompts runs/sd15/prompts.jsonl --out runs/sd15/eval
diffusers-spatial evaluate samples/ --out eval/ --protocol visor --protocol geneval   # prompts from file names
diffusers-spatial evaluate samples/ --prompts prompts.txt --images-per-prompt 4 --detector visor \\
    --depth-model depth-anything-v2 --option visor.score_threshold=0.1 --out eval/
ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m diffusers_spatial.cli evaluate samples/ --out eval/
```

Run the same command again to resume a killed run; `--overwrite` starts again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _option(text: str) -> tuple[str, str, object]:
    """`PROTOCOL.NAME=VALUE` -> (protocol, name, value); the value is read as JSON when it parses, else as text."""
    key, sep, raw = text.partition("=")
    protocol, dot, name = key.partition(".")
    if not sep or not dot or not protocol or not name:
        raise argparse.ArgumentTypeError(
            f"expected PROTOCOL.NAME=VALUE (e.g. visor.score_threshold=0.1), got {text!r}"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, list):
        value = tuple(value)  # config dataclasses take tuples (e.g. esplora.depth_percentiles=[5,95])
    return protocol, name, value


def _detector_option(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. score_threshold=0.3), got {text!r}")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Score a folder of images against their spatial prompts: report.json, report.md, plots (resumable).",
        description="Detect the prompt's objects in every image and judge the stated relation under every protocol "
        "(VISOR, T2I-CompBench 2D/3D, GenEval, esplora). Writes OUT/report.json, OUT/report.md, PNG plots and "
        "OUT/results.jsonl (per image, appended as computed: run the same command again to resume).",
    )
    parser.add_argument("images_dir", metavar="IMAGES_DIR", help="Folder of images (searched recursively).")
    parser.add_argument(
        "--prompts",
        help="Prompts file: .jsonl (one {'prompt', optional 'prompt_id', 'image'/'images'} per line, e.g. the "
        "prompts.jsonl of `diffusers-spatial generate`), .csv (same columns), or .txt (one prompt a line). Default: "
        "metadata.jsonl/.csv in IMAGES_DIR, else the image file names ('a cat left of a dog_0003.png').",
    )
    parser.add_argument("--out", required=True, help="Output folder (report, plots, per-image results).")
    parser.add_argument(
        "--protocol",
        action="append",
        help="Protocol to report (repeat or comma-separate): visor, t2i_compbench_2d, t2i_compbench_3d, geneval, "
        "esplora. Default: all.",
    )
    parser.add_argument("--primary-protocol", help="Protocol whose bias table TORE reads (default: esplora).")
    parser.add_argument(
        "--detector",
        default="embedded",
        help="'embedded' (default: offline COCO-80 detector), a preset (visor, owlv2, grounding-dino, geneval, detr), "
        "a Hugging Face model id or a local folder.",
    )
    parser.add_argument(
        "--depth-model",
        help="Depth model for in front of / behind: a preset (depth-anything-v2, dpt-hybrid, ...), a Hub id or a "
        "folder. Default: none (esplora uses geometric cues; T2I-CompBench 3D is then undetermined).",
    )
    parser.add_argument("--batch-size", type=_positive_int, default=8, help="Images per detector call (default 8).")
    parser.add_argument(
        "--images-per-prompt",
        type=_positive_int,
        help="Images per prompt when the prompts file does not name them (default: images / prompts).",
    )
    parser.add_argument(
        "--option",
        action="append",
        type=_option,
        default=[],
        metavar="PROTOCOL.NAME=VALUE",
        help="A protocol option, e.g. visor.score_threshold=0.2 or esplora.margin=0.5 (repeatable).",
    )
    parser.add_argument(
        "--detector-option",
        action="append",
        type=_detector_option,
        default=[],
        metavar="NAME=VALUE",
        help="A detector option, e.g. score_threshold=0.25 or device=cuda (repeatable).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Discard previous results in OUT and start again.")
    parser.add_argument("--no-plots", action="store_true", help="Skip the PNG plots.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar and no summary on stdout.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..metric import EvaluationConfig, build_report, collect_items, evaluate_items, read_results, write_report
    from ..metric.evaluation import RECORD_VERSION, distributed_state

    out_dir = Path(args.out)
    # Everything about the input is checked here, before a model is loaded or an image is read.
    protocol_options: dict[str, dict] = {}
    for protocol, name, value in args.option:
        protocol_options.setdefault(protocol, {})[name] = value
    protocols = None if not args.protocol else ",".join(args.protocol)
    config = EvaluationConfig.from_kwargs(
        protocols=protocols,
        primary_protocol=args.primary_protocol,
        detector=args.detector,
        depth_model=args.depth_model,
        batch_size=args.batch_size,
        images_per_prompt=args.images_per_prompt,
        protocol_options=protocol_options,
        detector_options=dict(args.detector_option),
    )
    items = collect_items(args.images_dir, args.prompts, images_per_prompt=args.images_per_prompt, exclude=[out_dir])

    state = distributed_state()
    is_main = state is None or state.is_main_process
    try:
        report = evaluate_items(items, config, out_dir=out_dir, overwrite=args.overwrite, progress=not args.quiet)
    except ValueError:  # settings differ from the results already in OUT: no partial report over them
        raise
    except BaseException:
        # Interrupted or crashed: the per-image results are on disk; still report what was scored.
        if is_main:
            keys = {item.key for item in items}
            done = [r for r in read_results(out_dir) if r.get("version") == RECORD_VERSION and r["key"] in keys]
            if done:
                partial = build_report(done, config, expected_images=len(items))
                write_report(partial, out_dir, plots=not args.no_plots)
                print(
                    f"diffusers-spatial evaluate: stopped after {len(done)} of {len(items)} images; report of those "
                    f"written to {out_dir}; run the same command again to resume",
                    file=sys.stderr,
                )
        raise
    if not is_main:
        return 0
    keys = {item.key for item in items}
    written = write_report(
        report,
        out_dir,
        plots=not args.no_plots,
        records=[r for r in read_results(out_dir) if r["key"] in keys],
        image_paths={item.key: item.image for item in items if isinstance(item.image, (str, os.PathLike))},
    )
    if not args.quiet:
        _print_summary(report, written)
    return 0


def _print_summary(report: dict, written: dict) -> None:
    counts = report["counts"]
    print(
        f"{counts['images']} images ({counts['prompts']} prompts): {counts['scored']} scored, "
        f"{counts['undetermined']} undetermined"
    )
    for protocol, figures in report["summary"].items():
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items() if v is not None
        )
        print(f"  {protocol}: {shown}")
    print(f"report: {written['report.md']} ({len(written) - 2} plots)")
