"""Contact sheets: images with their detected boxes and their verdicts, where people would rather look than read.

`plot_image_grid` draws one row per image and one column per variant (the bench) or per protocol (`diffusers-spatial
evaluate`): the subject's boxes in yellow, the object's in magenta, the frame green (right), red (wrong) or grey
(undetermined), and a few words on why under each cell. `select_grid_keys` picks which images to show.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "OBJECT_COLOR",
    "SUBJECT_COLOR",
    "image_verdict",
    "plot_contact_sheet",
    "plot_image_grid",
    "select_grid_keys",
    "verdict_reason",
]

_VERDICT_COLORS = {True: "tab:green", False: "tab:red", None: "tab:gray"}
SUBJECT_COLOR, OBJECT_COLOR = "yellow", "magenta"
_VERDICT_TEXT = {True: "right", False: "wrong", None: "undetermined"}


def image_verdict(record: Mapping[str, Any] | None, protocol: str) -> bool | None:
    """True / False when `protocol` judged the image, None when it could not (undetermined, out of scope)."""
    if record is None or record.get("reason") is not None or protocol not in record.get("scores", {}):
        return None
    return record["scores"][protocol]["correct"]


def verdict_reason(record: Mapping[str, Any], protocol: str) -> str | None:
    """A few words on a verdict: what the objects were seen doing, or why the image is undetermined."""
    if record.get("reason"):
        return record["reason"]
    score = record.get("scores", {}).get(protocol, {})
    if score.get("correct") is None and score.get("details", {}).get("reason"):
        return score["details"]["reason"]  # the protocol's own words: out of its scope, evidence too weak, ...
    detected = record.get("detected", {}).get(protocol)
    if detected in (None, "undetermined") or detected == record.get("relation"):
        return None
    return "no relation seen" if detected == "none" else detected if " " in detected else f"seen {detected}"


def select_grid_keys(verdicts: Mapping[str, Mapping[str, bool | None]], max_rows: int = 8) -> list[str]:
    """Pick the images of the grid: where the variants disagree first (up to half the rows), then the
    baseline's successes and failures in turn, then the rest; each group in the images' order.

    Args:
        verdicts: variant -> image key -> verdict (True / False / None); the first variant is the reference.
        max_rows: how many keys to return at most.

    Examples:

    ```py
    >>> select_grid_keys({"baseline": {"a": False, "b": True, "c": False, "d": None},
    ...                   "tore": {"a": False, "b": True, "c": True, "d": None}}, max_rows=3)
    ['c', 'b', 'a']

    ```
    """
    names = list(verdicts)
    keys = list(verdicts[names[0]])
    disagree = [k for k in keys if len({verdicts[n].get(k) for n in names}) > 1]
    chosen = disagree[: max(1, max_rows // 2)]
    successes = [k for k in keys if k not in chosen and verdicts[names[0]][k] is True]
    failures = [k for k in keys if k not in chosen and verdicts[names[0]][k] is False]
    for k in range(max(len(successes), len(failures))):
        chosen += [group[k] for group in (successes, failures) if k < len(group)]
    chosen += [k for k in keys if k not in chosen]
    return chosen[:max_rows]


def plot_image_grid(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: str | os.PathLike, *, title: str
) -> Path:
    """An image grid: one row per image key, one column per variant.

    Args:
        rows: per row, `{"prompt": ..., "cells": [per column {"path", "prompt_used", "verdict", "detections",
            "labels": (subject label, object label), "why": a few words or None} or None]}`.
        columns: the column titles (variant labels).
        path: the PNG to write.
        title: the figure title.
    """
    import textwrap

    from matplotlib.patches import Rectangle
    from PIL import Image

    from .plots import pyplot, save_figure

    plt = pyplot()
    n_rows, n_cols = max(1, len(rows)), len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.5 * n_cols + 1.6, 2.9 * n_rows + 0.8), squeeze=False)
    for i in range(n_rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            cell = rows[i]["cells"][j] if i < len(rows) else None
            if cell is None:
                ax.axis("off")
                continue
            with Image.open(cell["path"]) as image:
                width, height = image.size
                ax.imshow(image.convert("RGB"), interpolation="nearest", extent=(0, width, height, 0))
            subject_label, object_label = cell["labels"]
            for det in cell["detections"]:
                color = {subject_label: SUBJECT_COLOR, object_label: OBJECT_COLOR}.get(det["label"])
                if color is None:
                    continue
                x1, y1, x2, y2 = det["box"]
                for edge, line in (("black", 3.0), (color, 1.5)):  # a dark halo keeps the box visible on any image
                    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=edge, linewidth=line))
            color = _VERDICT_COLORS[cell["verdict"]]
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(4)
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
            caption = "\n".join(textwrap.wrap(cell["prompt_used"], 30)[:3])
            outcome = _VERDICT_TEXT[cell["verdict"]]
            if cell.get("why"):
                outcome += f" ({textwrap.shorten(cell['why'], 34, placeholder='...')})"
            ax.set_xlabel(f"{caption}\n{outcome}", fontsize=7, color=color)
            if i == 0:
                ax.set_title(columns[j], fontsize=9, fontweight="bold")
            if j == 0:
                ax.set_ylabel("\n".join(textwrap.wrap(rows[i]["prompt"], 22)[:4]), fontsize=7)
    if not rows:
        axes[0][0].text(0.5, 0.5, "no image", ha="center", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))  # keep the title clear of the column titles
    out = save_figure(fig, Path(path))
    plt.close(fig)
    return out


def _opens(path: str | os.PathLike) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return False


def plot_contact_sheet(
    records: Sequence[Mapping[str, Any]],
    image_paths: Mapping[str, str | os.PathLike],
    protocols: Sequence[str],
    path: str | os.PathLike,
    *,
    max_rows: int = 8,
    title: str = "",
) -> Path:
    """One evaluation's contact sheet: per image (rows), its boxes and each protocol's verdict (columns).

    Images where the protocols disagree come first (what the benchmarks' different rules do to the same image),
    then right and wrong ones in turn (`select_grid_keys`).

    Args:
        records: the per-image result records (`results.jsonl`).
        image_paths: record key -> the image file (records without one are left out).
        protocols: the protocols to show, one column each.
        path: the PNG to write.
    """
    by_key = {str(r["key"]): r for r in records if str(r["key"]) in image_paths}
    verdicts = {p: {key: image_verdict(record, p) for key, record in by_key.items()} for p in protocols}
    rows = []
    for key in select_grid_keys(verdicts, len(by_key)) if by_key else []:
        if len(rows) == max_rows:
            break
        if not _opens(image_paths[key]):  # an unreadable file is undetermined in the report, not drawable here
            continue
        record = by_key[key]
        cell = {
            "path": image_paths[key],
            "prompt_used": record.get("prompt", ""),
            "detections": record.get("detections", []),
            "labels": (record.get("subject_label"), record.get("object_label")),
        }
        rows.append(
            {
                "prompt": key,
                "cells": [{**cell, "verdict": verdicts[p][key], "why": verdict_reason(record, p)} for p in protocols],
            }
        )
    heading = (
        f"{title}\n" if title else ""
    ) + f"frame: green right, red wrong, grey undetermined; boxes: subject {SUBJECT_COLOR}, object {OBJECT_COLOR}"
    return plot_image_grid(rows, list(protocols), path, title=heading)
