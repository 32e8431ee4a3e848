"""Run statistics (every row accounted for) and dataset statistics (relation, order and object balance).

`run_statistics(output_dir)` merges the manifest entries of every finished shard - so a resumed run reports
exactly what an uninterrupted one does - and reads the few small columns it needs from the written parquet
files, one record batch at a time. It returns (and `card.finalize_dataset` writes to `.curation/stats.json`):

- `rows_in`, `rows_out`, `skipped` (every reason of `schema.SKIP_REASONS`, zeros included), `shard_issues`
  (every reason of `schema.SHARD_REASONS`), `shards`, `rows_by_config` (`natural-2d`, ...);
- `relations`: rows per relation id, per source;
- `order_balance`: per axis (horizontal, vertical, depth, next_to), how many rows name the alphabetically first
  noun of their pair as the subject, and the mean imbalance over pairs (0 = each pair appears equally often in
  both orders, 1 = always in one order). A model fine-tuned on order-imbalanced data learns "cats are on the
  left"; this is the number to watch;
- `objects`: noun -> rows naming it (as subject or object), most frequent first;
- `prompt_origin`: rows whose caption was verified vs written from geometry vs generated.

`plot_statistics(stats, folder)` draws them as PNGs with matplotlib.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq

from ..relations import RELATIONS
from .schema import SHARD_REASONS, SKIP_REASONS
from .writer import read_manifest

__all__ = ["AXES", "merge_entries", "plot_statistics", "run_statistics"]

AXES: dict[str, str] = {
    "left_of": "horizontal",
    "right_of": "horizontal",
    "above": "vertical",
    "below": "vertical",
    "in_front_of": "depth",
    "behind": "depth",
    "next_to": "next_to",
}
"""Relation id -> the axis it is judged on (converse relations share an axis)."""

_STAT_COLUMNS = ["subject", "relation", "object", "source", "prompt_origin"]


def merge_entries(entries: Iterable[dict]) -> dict:
    """Sum manifest entries into run totals (all known reasons listed, zeros included)."""
    skipped = Counter(dict.fromkeys(SKIP_REASONS, 0))
    issues = Counter(dict.fromkeys(SHARD_REASONS, 0))
    rows_by_config: Counter = Counter()
    totals = {"shards": 0, "rows_in": 0, "rows_out": 0}
    for entry in entries:
        totals["shards"] += 1
        totals["rows_in"] += entry["rows_in"]
        totals["rows_out"] += entry["rows_out"]
        skipped.update(entry["skipped"])
        issues.update(entry["issues"])
        for file in entry["files"]:
            rows_by_config[Path(file["path"]).parent.name] += file["rows"]
    return {
        **totals,
        "skipped": dict(skipped),
        "shard_issues": dict(issues),
        "rows_by_config": dict(sorted(rows_by_config.items())),
    }


def run_statistics(output_dir: str | os.PathLike) -> dict:
    """Run totals plus dataset balance statistics over every committed file of `output_dir`."""
    output_dir = Path(output_dir)
    entries = read_manifest(output_dir)
    stats = merge_entries(entries.values())
    relations: dict[str, Counter] = defaultdict(Counter)
    objects: Counter = Counter()
    origins: Counter = Counter()
    order: dict[str, Counter] = defaultdict(Counter)  # axis -> (pair, subject) counts
    for entry in entries.values():
        for file in entry["files"]:
            for batch in pq.ParquetFile(output_dir / file["path"]).iter_batches(columns=_STAT_COLUMNS):
                for row in batch.to_pylist():
                    relations[row["source"]][row["relation"]] += 1
                    objects.update((row["subject"], row["object"]))
                    origins[row["prompt_origin"]] += 1
                    pair = tuple(sorted((row["subject"], row["object"])))
                    order[AXES.get(row["relation"], "other")][(pair, row["subject"])] += 1
    stats["relations"] = {
        source: {rel: counts.get(rel, 0) for rel in RELATIONS} for source, counts in sorted(relations.items())
    }
    stats["order_balance"] = {axis: _order_balance(counts) for axis, counts in sorted(order.items())}
    stats["objects"] = dict(sorted(objects.items(), key=lambda item: (-item[1], item[0])))
    stats["prompt_origin"] = dict(sorted(origins.items()))
    return stats


def _order_balance(counts: Counter) -> dict:
    per_pair: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for (pair, subject), n in counts.items():
        per_pair[pair][0 if subject == pair[0] else 1] += n
    first = sum(a for a, _ in per_pair.values())
    second = sum(b for _, b in per_pair.values())
    distinct = [(a, b) for (x, y), (a, b) in per_pair.items() if x != y]
    imbalance = sum(abs(a - b) / (a + b) for a, b in distinct) / len(distinct) if distinct else 0.0
    return {
        "rows": first + second,
        "pairs": len(per_pair),
        "alphabetical_first_as_subject": first,
        "alphabetical_second_as_subject": second,
        "mean_pair_imbalance": round(imbalance, 4),
    }


def plot_statistics(stats: dict, folder: str | os.PathLike, *, top_objects: int = 20) -> list[str]:
    """Draw relation balance, order balance, object frequency and skip reasons as PNGs; returns their paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    def save(fig, name):
        path = folder / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(str(path))

    fig, ax = plt.subplots(figsize=(8, 4))
    sources = list(stats["relations"]) or ["natural"]
    width = 0.8 / len(sources)
    for i, source in enumerate(sources):
        counts = stats["relations"].get(source, {})
        ax.bar(
            [x + i * width for x in range(len(RELATIONS))], [counts.get(r, 0) for r in RELATIONS], width, label=source
        )
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(RELATIONS))], RELATIONS, rotation=30)
    ax.set_ylabel("rows")
    ax.set_title("Relation balance")
    ax.legend()
    save(fig, "relation_balance.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    axes = list(stats["order_balance"])
    first = [stats["order_balance"][a]["alphabetical_first_as_subject"] for a in axes]
    second = [stats["order_balance"][a]["alphabetical_second_as_subject"] for a in axes]
    ax.bar([x - 0.2 for x in range(len(axes))], first, 0.4, label="A as subject (A < B alphabetically)")
    ax.bar([x + 0.2 for x in range(len(axes))], second, 0.4, label="B as subject")
    ax.set_xticks(range(len(axes)), axes)
    ax.set_ylabel("rows")
    ax.set_title("Object order balance per axis")
    ax.legend()
    save(fig, "order_balance.png")

    fig, ax = plt.subplots(figsize=(7, 0.3 * top_objects + 1.5))
    top = list(stats["objects"].items())[:top_objects]
    ax.barh([name for name, _ in reversed(top)], [n for _, n in reversed(top)])
    ax.set_xlabel("rows naming the object")
    ax.set_title(f"Object frequency (top {len(top)})")
    save(fig, "object_frequency.png")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    reasons = [(r, n) for r, n in stats["skipped"].items() if n]
    ax.barh([r for r, _ in reasons] or ["(none)"], [n for _, n in reasons] or [0])
    ax.set_xlabel("rows skipped")
    ax.set_title(f"Skip reasons ({stats['rows_out']} of {stats['rows_in']} rows kept)")
    save(fig, "skip_reasons.png")
    return paths
