"""PNG plots of a report (matplotlib, no display needed).

- `accuracy_per_relation.png`: accuracy per relation, one bar per protocol (determined images; a protocol that
  does not score a relation has no bar there);
- `order_bias.png`: per protocol, accuracy per relation in the two object orders (`geometry.object_order`: the
  alphabetically first noun as subject = "as written", as object = "swapped"): a gap between the two bars of a
  relation is an object-order bias;
- `confusion_<protocol>.png`: expected relation (rows) against the relation the objects actually stand in
  (columns, plus "none", "objects missing", "undetermined"), as row fractions with counts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..relations import RELATIONS

__all__ = ["plot_report"]

_ORDERS = ("as_written", "swapped")


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)  # files only; keep an interactive backend a user already chose
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    return path


# One colour per protocol, the same in every plot.
_COLORS = {
    "visor": "tab:blue",
    "t2i_compbench_2d": "tab:orange",
    "t2i_compbench_3d": "tab:green",
    "geneval": "tab:red",
    "esplora": "tab:purple",
}


def _annotate(ax, bars, labels) -> None:
    for bar, label in zip(bars, labels):
        x, height = bar.get_x() + bar.get_width() / 2, bar.get_height()
        ax.annotate(
            label, (x, height), ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points"
        )


def _value_label(report: Mapping[str, Any]) -> str:
    """What the bars measure: accuracy, unless the report says otherwise (the real-photo check's false statements,
    where a "correct" verdict is the acceptance of a false statement)."""
    return report.get("value_label", "accuracy")


def plot_accuracy_per_relation(report: Mapping[str, Any], path: Path) -> Path:
    plt = pyplot()
    protocols = list(report["protocols"])
    relations = [r for r in RELATIONS if any(r in report["protocols"][p]["per_relation"] for p in protocols)]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.4 * len(relations) + 2.5), 4.4))
    width = 0.8 / max(1, len(protocols))
    for k, protocol in enumerate(protocols):
        per_relation = report["protocols"][protocol]["per_relation"]
        present = [r for r in relations if r in per_relation]
        xs = [relations.index(r) + (k - (len(protocols) - 1) / 2) * width for r in present]
        bars = ax.bar(
            xs,
            [per_relation[r]["rate"] for r in present],
            width=width * 0.92,
            color=_COLORS.get(protocol),
            edgecolor="black",
            linewidth=0.6,
        )
        _annotate(ax, bars, [f"{per_relation[r]['n']}" for r in present])
    ax.set_xticks(range(len(relations)), relations)
    ax.set_ylim(0, 1.12)  # room for the counts above full bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    value = _value_label(report)
    ax.set_ylabel(f"{value} (correct / determined images)")
    ax.set_title(
        f"{value.capitalize()} per relation and protocol (number above a bar: determined images)", fontsize=10
    )
    if not relations:
        ax.text(0.5, 0.5, "no determined image", ha="center", va="center", transform=ax.transAxes)
    from matplotlib.patches import Patch

    handles = [
        Patch(
            facecolor=_COLORS.get(p, "gray"),
            edgecolor="black",
            label=p if report["protocols"][p]["per_relation"] else f"{p} (no determined image)",
        )
        for p in protocols
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def plot_order_bias(report: Mapping[str, Any], path: Path) -> Path:
    plt = pyplot()
    protocols = list(report["protocols"])
    columns = min(3, len(protocols))  # a grid, not a strip: readable at README width
    rows_of_panels = -(-len(protocols) // columns)
    fig, axes = plt.subplots(
        rows_of_panels, columns, figsize=(3.6 * columns + 0.9, 3.4 * rows_of_panels + 0.6), squeeze=False, sharey=True
    )
    panels = [ax for row in axes for ax in row]
    for ax in panels[len(protocols) :]:
        ax.axis("off")
    for ax, protocol in zip(panels, protocols):
        table = report["protocols"][protocol]["bias_table"]
        by_relation = table.get("relation_orders", {})
        rows = {**by_relation, "all": table.get("orders", {})}
        relations = [r for r in RELATIONS if r in by_relation] + (["all"] if rows["all"] else [])
        for k, order in enumerate(_ORDERS):
            present = [r for r in relations if order in rows[r]]
            bars = ax.bar(
                [relations.index(r) + (k - 0.5) * 0.4 for r in present],
                [rows[r][order]["rate"] for r in present],
                width=0.38,
                label=order.replace("_", " "),
                color=("tab:blue", "tab:orange")[k],
                edgecolor="black",
                linewidth=0.6,
            )
            _annotate(ax, bars, [f"{rows[r][order]['n']}" for r in present])
        ax.set_xticks(range(len(relations)), relations, rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1.14)
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_title(protocol, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if not relations:
            ax.text(0.5, 0.5, "no determined image", ha="center", va="center", transform=ax.transAxes, fontsize=9)
    for row in axes:
        row[0].set_ylabel(f"{_value_label(report)} (correct / determined)")
    from matplotlib.patches import Patch

    # Built from the colours, not from a panel's bars: a panel whose bars are all of one order has no handle of the
    # other (the legend then showed one colour twice).
    handles = [
        Patch(facecolor=color, edgecolor="black", label=order.replace("_", " "))
        for order, color in zip(_ORDERS, ("tab:blue", "tab:orange"))
    ]
    fig.legend(handles=handles, title="object order", fontsize=8, title_fontsize=8, loc="upper right")
    fig.suptitle(
        "Order bias: each relation with the alphabetically first noun as subject (as written) or as object (swapped)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def plot_confusion(report: Mapping[str, Any], protocol: str, path: Path) -> Path:
    import numpy as np

    plt = pyplot()
    confusion = report["protocols"][protocol]["confusion"]
    rows, columns = confusion["rows"], confusion["columns"]
    counts = np.asarray(confusion["matrix"], dtype=float).reshape(len(rows), len(columns))
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig, ax = plt.subplots(figsize=(1.0 * len(columns) + 2.5, 0.7 * len(rows) + 2.0))
    ax.imshow(fractions if rows else np.zeros((1, 1)), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            if counts[i, j]:
                color = "white" if fractions[i, j] > 0.6 else "black"
                ax.text(j, i, f"{fractions[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center",
                        fontsize=8, color=color)  # fmt: skip
    ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("detected")
    ax.set_ylabel("expected")
    ax.set_title(f"{protocol}: expected vs detected relation")
    if not rows:
        ax.text(0, 0, "no scored image", ha="center", va="center")
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def plot_report(report: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write every plot of `report` into `out_dir`; returns plot name -> path."""
    out_dir = Path(out_dir)
    written = {
        "accuracy_per_relation": plot_accuracy_per_relation(report, out_dir / "accuracy_per_relation.png"),
        "order_bias": plot_order_bias(report, out_dir / "order_bias.png"),
    }
    for protocol in report["protocols"]:
        written[f"confusion_{protocol}"] = plot_confusion(report, protocol, out_dir / f"confusion_{protocol}.png")
    return written
