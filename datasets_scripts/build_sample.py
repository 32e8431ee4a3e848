"""Build the offline sample spatial dataset from nothing: real photos in, a Hub-ready dataset out.

The photos come from scikit-image and Debian's `darknet` package (`apt-get install darknet`); none is committed
to this repository. The script writes a LAION-style input (img2dataset webdataset shards: collages of real photo
crops at known positions with right, wrong and missing relations, the darknet photos, and one of each kind of bad
input) to OUT/input, then curates it with the real pipeline into OUT:

    python datasets_scripts/build_sample.py --out spatial-sample
    python -c "import datasets; print(datasets.load_dataset('spatial-sample', split='train'))"

Same as `diffusers-spatial dataset build-sample --out spatial-sample`. Re-running resumes / reuses the output.
"""

from __future__ import annotations

import argparse
import json

from diffusers_spatial.data import build_sample


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="Dataset folder to write.")
    parser.add_argument("--seed", type=int, default=0, help="Layout and caption seed.")
    parser.add_argument("--collages-per-pair", type=int, default=1, help="Collages per pair of object classes.")
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    stats = build_sample(
        args.out, seed=args.seed, collages_per_pair=args.collages_per_pair, progress=not args.no_progress
    )
    print(f"{stats['rows_out']} of {stats['rows_in']} rows kept in {args.out}: {json.dumps(stats['rows_by_config'])}")
    print("skipped:", json.dumps({reason: n for reason, n in stats["skipped"].items() if n}))


if __name__ == "__main__":
    main()
