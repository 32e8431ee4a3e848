"""World datasets in the spatial dataset's format: parquet shards, a manifest and a dataset card.

`write_world_dataset(out_dir, num_rows=...)` renders verified world samples (`captions.world_sample`) into exactly
the folder layout `diffusers-spatial dataset curate` writes (`data/synthetic-2d/<shard>.parquet`, `manifest/`,
`.curation/` statistics and plots, `README.md` with typed `configs`), so `datasets.load_dataset(out_dir)`, the training
scripts (`--dataset_name out_dir`) and `diffusers-spatial dataset push` take it unchanged. Rows are a pure function
of `(config, seed, index)`: the writer is resumable shard by shard and a killed run loses nothing.

Examples:

```py
>>> import tempfile, datasets
>>> from diffusers_spatial.world.dataset import write_world_dataset
>>> out = tempfile.mkdtemp()
>>> stats = write_world_dataset(out, num_rows=8, progress=False)
>>> ds = datasets.load_dataset(out, split="train")
>>> len(ds), ds[0]["image"].size, ds[0]["relation"] in ("left_of", "right_of", "above", "below")
(8, (32, 32), True)

```
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Collection
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..data.card import finalize_dataset
from ..data.writer import ShardWriter, atomic_write_json, completed_shards, manifest_dir, remove_stale_temporaries
from ..geometry import score_image
from ..relations import RELATIONS_3D
from .captions import WorldSample, world_sample
from .config import VERIFIED, CaptionRegime, WorldConfig
from .perception import WorldDepthEstimator
from .scene import visible_masks

__all__ = ["WORLD_LICENSE", "world_row", "write_world_dataset"]

WORLD_LICENSE = "CC0-1.0"
"""The licence of rendered world images (made by this package's renderer, no third-party content)."""

_DESCRIPTION = """This dataset is the **synthetic spatial world** of diffusers-spatial (docs/world.md): flat-coloured
shapes rendered by `diffusers_spatial.world`, every prompt true by construction (the scene is drawn for it) and
checked by the world's exact perception. Boxes are the ground truth; `verification_score` is the `esplora` protocol's
strength of the relation. Both object orders of a fact are equally frequent and relations are balanced."""


def _png(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def world_row(sample: WorldSample, config: WorldConfig, *, shard: str, depth: WorldDepthEstimator) -> dict:
    """One row of the spatial dataset's schema for a verified world sample."""
    caption = sample.caption
    if caption.relation is None or not caption.true:
        raise ValueError(f"sample {sample.index} has no true relation caption ({caption.text!r}): not a dataset row")
    boxes = sample.boxes(config.resolution)
    masks = list(visible_masks(sample.scene, config.resolution))
    if caption.first is not sample.scene.subject:  # subject first, as the caption names it
        boxes.reverse()
        masks.reverse()
    depth_map = None
    depth_stats = None
    if caption.relation in RELATIONS_3D:
        depth_map = depth.estimate([sample.image])[0]
        medians = [float(np.median(depth_map[mask])) for mask in masks]
        depth_stats = {"subject": medians[0], "object": medians[1], "source": "ground_truth"}
    score = score_image(caption.text, boxes, protocol="esplora", depth=depth_map, image_size=sample.image.shape[1::-1])
    if score.correct is not True:  # the renderer guarantees it; a failure here is a bug, never a silent bad row
        raise RuntimeError(f"world sample {sample.index} does not verify: {caption.text!r} {score.details}")
    key = f"{shard}/{sample.index:08d}"
    return {
        "image": {"bytes": _png(sample.image), "path": f"world-{sample.seed}-{sample.index:08d}.png"},
        "prompt": caption.text,
        "subject": caption.first.shape,
        "relation": caption.relation,
        "object": caption.second.shape,
        "boxes": boxes,
        "depth_stats": depth_stats,
        "verification_score": float(score.score),
        "source": "synthetic",
        "origin": f"diffusers-spatial world renderer#seed={sample.seed}&index={sample.index}",
        "license": WORLD_LICENSE,
        "key": key,
        "caption": caption.text,
        "prompt_origin": "synthesized",
    }


def write_world_dataset(
    output_dir: str | os.PathLike,
    *,
    num_rows: int,
    config: WorldConfig | None = None,
    regime: CaptionRegime = VERIFIED,
    seed: int = 0,
    shard_size: int = 1000,
    exclude_pairs: Collection[frozenset[str]] = (),
    progress: bool = True,
) -> dict:
    """Write (or finish writing) a world dataset of `num_rows` verified rows; returns its statistics.

    Args:
        output_dir: the dataset folder (created).
        num_rows: rows in the finished dataset (indices 0 .. num_rows - 1 of the world sample stream).
        config: the world (default `WorldConfig()`); saved as `world_config.json` beside the card.
        regime: a caption regime whose captions are all true relations (`VERIFIED` or a variant).
        seed: the sample stream's seed.
        shard_size: rows per parquet shard (the unit of resumption).
        exclude_pairs: object pairs (`frozenset({"red circle", "blue square"})`) no row shows: the pairs an
            evaluation holds out.
        progress: show a progress bar.
    """
    config = config or WorldConfig()
    if regime.p_relation_caption != 1.0 or regime.p_mirror_error != 0.0:
        raise ValueError(
            f"caption regime {regime.name!r} writes captions that are not true relations; the spatial dataset holds "
            "verified rows only (the LAION-like regime is sampled on the fly by examples/pretrain_world.py)"
        )
    for name, value in (("num_rows", num_rows), ("shard_size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "world": config.to_dict(),
        "regime": regime.to_dict(),
        "seed": seed,
        "num_rows": num_rows,
        "shard_size": shard_size,
        "exclude_pairs": sorted(sorted(pair) for pair in exclude_pairs),
    }
    settings = json.loads(json.dumps(settings))  # as recorded: JSON lists, not tuples
    settings_path = manifest_dir(output_dir) / "runs" / "world.json"
    if settings_path.exists():
        recorded = json.loads(settings_path.read_text(encoding="utf-8"))
        if recorded != settings:
            raise ValueError(
                f"{os.fspath(output_dir)!r} holds a world dataset written with other settings; use another folder"
            )
    else:
        atomic_write_json(settings_path, settings)
    remove_stale_temporaries(output_dir)
    excluded = {frozenset(pair) for pair in exclude_pairs}
    done = completed_shards(output_dir)
    depth = WorldDepthEstimator(config)
    starts = range(0, num_rows, shard_size)
    for start in tqdm(starts, desc="world shards", disable=not progress):
        shard = f"world-{start // shard_size:05d}"
        if shard in done:
            continue
        stop = min(start + shard_size, num_rows)
        writer = ShardWriter(output_dir, shard)
        try:
            rows = [
                world_row(
                    world_sample(config, regime, seed, i, exclude_pairs=excluded), config, shard=shard, depth=depth
                )
                for i in range(start, stop)
            ]
            writer.write(rows)
            files = writer.commit()
        except BaseException:
            writer.abort()
            raise
        entry = {"shard": shard, "files": files, "rows_in": len(rows), "rows_out": len(rows), "skipped": {}}
        entry.update(issues=[], worker="0/1")
        atomic_write_json(manifest_dir(output_dir) / f"{shard}.json", entry)
    config.save(output_dir)
    return finalize_dataset(output_dir, pretty_name="Spatial world (verified)", description=_DESCRIPTION)
