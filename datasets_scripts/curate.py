"""Curate LAION-style shards into the spatial dataset (verified spatial captions + prompts synthesized from geometry).

Step 1, download (not done here): img2dataset fetches the images of LAION parquet files into webdataset shards,
one `NNNNN.tar` (images, captions, metadata) + `NNNNN.parquet` (every URL with its download status) per shard:

    pip install img2dataset
    img2dataset --url_list laion400m-meta/ --input_format parquet --url_col URL --caption_col TEXT \\
        --save_additional_columns '["LICENSE","NSFW","similarity"]' --output_format webdataset \\
        --output_folder laion400m-shards --processes_count 16 --thread_count 64 --image_size 512 \\
        --resize_mode keep_ratio --resize_only_if_bigger True --enable_wandb False

Step 2, curate (this script); shards are the unit of work, split over processes:

    python datasets_scripts/curate.py --input laion400m-shards --out spatial-laion --depth depth-anything-v2
    accelerate launch datasets_scripts/curate.py --input ... --out ...                       # every GPU of a node
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 datasets_scripts/curate.py --input ... --out ...  # 2 CPU procs

Kill it at any time and run the same command again: finished shards are kept, the others redone; the result is
exactly what an uninterrupted run writes. Step 3, publish: `--push-to-hub me/spatial-laion` (or
`diffusers-spatial dataset push`). Same as `diffusers-spatial dataset curate`.
"""

from __future__ import annotations

import argparse
import json

from diffusers_spatial.data import CurationConfig, curate, push_to_hub
from diffusers_spatial.data.runner import default_state


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="img2dataset output (*.tar + *.parquet) or an image folder.")
    parser.add_argument("--out", required=True, help="Dataset folder (resumed if it holds a run).")
    parser.add_argument("--detector", default="embedded", help="'embedded', a preset (owlv2, ...) or a model.")
    parser.add_argument("--depth", help="Depth model: preset (depth-anything-v2, ...), id or folder.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=1000, help="Images per shard for image folders.")
    parser.add_argument("--min-confidence", type=float, default=0.3)
    parser.add_argument("--min-box-fraction", type=float, default=0.005)
    parser.add_argument("--max-rows-per-pair", type=int, help="Object-pair balance cap per shard.")
    parser.add_argument("--no-synthesize", action="store_true", help="Skip relation-less / false captions.")
    parser.add_argument("--license", default="unknown", help="Licence of rows whose input names none.")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="Upload the finished dataset.")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    state = default_state()
    config = CurationConfig(
        detector=args.detector,
        depth=args.depth,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        min_confidence=args.min_confidence,
        min_box_fraction=args.min_box_fraction,
        max_rows_per_pair=args.max_rows_per_pair,
        synthesize=not args.no_synthesize,
        license=args.license,
    )
    stats = curate(args.input, args.out, config, state=state, progress=not args.no_progress)
    if state.is_main_process:
        print(f"{stats['rows_out']} of {stats['rows_in']} rows kept: {json.dumps(stats['rows_by_config'])}")
        print("skipped:", json.dumps({reason: n for reason, n in stats["skipped"].items() if n}))
        if args.push_to_hub:
            print(push_to_hub(args.out, args.push_to_hub))


if __name__ == "__main__":
    main()
