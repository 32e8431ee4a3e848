"""The report: every protocol's figures side by side, built from per-image records; written as JSON and Markdown.

`build_report(records, config)` returns one JSON-serialisable dict:

- `summary`: protocol -> its benchmark figures (VISOR: OA, VISOR_cond, VISOR_uncond, VISOR_1..4 in percent;
  T2I-CompBench: score; GenEval: accuracy, prompt_accuracy; esplora: accuracy, determined_accuracy, coverage, ...);
- `protocols`: protocol -> `geometry.aggregate(...)` (figures, `per_relation`, `per_order`, `counterfactual`,
  `object_accuracy`, `undetermined`, `bias_table`), plus `out_of_scope` (images whose relation the protocol
  does not score: T2I-CompBench 3D on "left of" prompts; they are left out of its figures, as the benchmark's own
  prompt sets would), `not_scored` (images the protocol cannot judge at all, e.g. T2I-CompBench 3D without a
  depth map: undetermined, left out of its figures), `undetermined_reasons` (reason -> count) and `confusion`
  (expected relation x relation the objects stand in);
- `counts`: images, prompts, scored images and images left out as undetermined;
- `undetermined`: the images left out of every protocol (unreadable, prompt without a relation, a noun the
  detector cannot see), with the reason for each and counts by reason;
- `bias_table`: the primary protocol's bias table, where `tore.Tore.from_report` finds it;
- `settings`: what was measured, with which models.

`write_report(report, out_dir)` writes `report.json`, `report.md` and the PNG plots (`plots.py`).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..geometry import aggregate, get_protocol
from ..relations import RELATIONS
from ..utils.atomic import atomic_write_text, same_text
from .config import EvaluationConfig

__all__ = ["REPORT_VERSION", "build_report", "headline_scores", "render_markdown", "write_report"]

REPORT_VERSION = 1
# `aggregate` keys that are not the protocol's own benchmark figures.
_SHARED_KEYS = ("protocol", "n_images", "undetermined", "object_accuracy", "per_relation", "per_order")
_SHARED_KEYS += ("counterfactual", "bias_table", "n_scored_images", "n_prompts")
CONFUSION_EXTRA_COLUMNS = ("none", "objects missing", "undetermined")
_QUOTED_RE = re.compile(r"'[^']*'|\"[^\"]*\"")


def reason_kind(reason: str, prompt: str = "", key: str = "") -> str:
    """A reason with the image's own prompt and file name replaced by placeholders, so that reasons of one kind
    are counted together (while the nouns a detector missed still tell the kinds apart).

    Examples:

    ```py
    >>> reason_kind("cannot load image '/data/a.png': no such file", key="a.png")
    'cannot load image <image>: no such file'
    >>> reason_kind("prompt 'a red car' is not a spatial prompt", prompt="a red car")
    'prompt <prompt> is not a spatial prompt'

    ```
    """

    def blank(match: re.Match) -> str:
        text = match.group()[1:-1]
        if prompt and text == prompt:
            return "<prompt>"
        if key and (text == key or text.endswith("/" + key) or text.endswith(os.sep + key)):
            return "<image>"
        return match.group()

    return _QUOTED_RE.sub(blank, reason)


def _confusion(records: Sequence[Mapping], protocol: str) -> dict:
    counts: dict[str, Counter] = {}
    for record in records:
        detected = record["detected"].get(protocol)
        if detected is None:
            continue
        counts.setdefault(record["scores"][protocol]["relation"], Counter())[detected] += 1
    rows = [r for r in RELATIONS if r in counts]
    seen = {c for row in counts.values() for c in row}
    columns = [r for r in RELATIONS if r in seen or r in counts] + [c for c in CONFUSION_EXTRA_COLUMNS if c in seen]
    return {"rows": rows, "columns": columns, "matrix": [[counts[r][c] for c in columns] for r in rows]}


def _protocol_section(protocol: str, records: Sequence[Mapping]) -> tuple[dict, dict]:
    """(benchmark figures, full section) of one protocol over the records whose relation it scores."""
    in_scope = [r for r in records if r["relation"] in get_protocol(protocol).relations]
    scored = [r for r in in_scope if protocol in r["scores"]]
    skipped = [r for r in in_scope if protocol in r["skipped"]]
    scores = [r["scores"][protocol] for r in scored]
    section = aggregate(protocol, scores, [r["prompt_id"] for r in scored])
    figures = {
        **{k: v for k, v in section.items() if k not in _SHARED_KEYS},
        "n_images": section["n_images"],
        "undetermined": section["undetermined"] + len(skipped),
    }
    section["out_of_scope"] = len(records) - len(in_scope)
    # Images the protocol could not judge at all (e.g. T2I-CompBench 3D without a depth map) are undetermined too.
    section["not_scored"] = len(skipped)
    reasons = Counter(reason_kind(r["skipped"][protocol], r["prompt"], r["key"]) for r in skipped)
    reasons.update(
        reason_kind(s["details"].get("reason") or "no reason given", s["prompt"])
        for s in scores
        if s["correct"] is None
    )
    section["undetermined_reasons"] = dict(reasons.most_common())
    section["confusion"] = _confusion(scored, protocol)
    return figures, section


def headline_scores(report: Mapping[str, Any]) -> dict[str, float]:
    """The report's headline figures as one flat `{name: float}` dict (what `evaluate`'s `compute` returns on top).

    Names are `<protocol>_<figure>` in lower case (VISOR's own prefix not repeated: `visor_uncond`, `visor_oa`);
    counts are left out; a figure a protocol could not compute (None, e.g. T2I-CompBench 3D without depth) is NaN,
    so every name is always there and always a float.

    Examples:

    ```py
    >>> headline_scores({"summary": {"visor": {"OA": 50.0, "VISOR_uncond": 25.0, "n_images": 4},
    ...                              "t2i_compbench_3d": {"score": None, "n_images": 0}}})
    {'visor_oa': 50.0, 'visor_uncond': 25.0, 't2i_compbench_3d_score': nan}

    ```
    """
    scores: dict[str, float] = {}
    for protocol, figures in report["summary"].items():
        for figure, value in figures.items():
            if figure in _COUNT_FIGURES:
                continue
            name = figure.lower().removeprefix(f"{protocol}_")
            scores[f"{protocol}_{name}"] = float("nan") if value is None else float(value)
    return scores


# Figures of the summary that count images rather than score them.
_COUNT_FIGURES = frozenset({"n_images", "undetermined", "low_confidence"})


def build_report(
    records: Sequence[Mapping[str, Any]], config: EvaluationConfig, *, expected_images: int | None = None
) -> dict:
    """Summarise per-image records (see `evaluation.score_records`) into the report dict (module docstring).

    Args:
        records: one per image.
        config: the settings they were computed with.
        expected_images: how many images the run has in all, when `records` covers only part of them (an
            interrupted run): the report then says `"complete": false`.
    """
    scored = [r for r in records if r["reason"] is None]
    left_out = [r for r in records if r["reason"] is not None]
    sections = {p: _protocol_section(p, scored) for p in config.protocols}
    summary = {p: figures for p, (figures, _) in sections.items()}
    protocols = {p: section for p, (_, section) in sections.items()}
    return {
        "report_version": REPORT_VERSION,
        "settings": {**config.settings(), "primary_protocol": config.primary_protocol},
        "counts": {
            "images": len(records),
            "prompts": len({r["prompt_id"] for r in records}),
            "scored": len(scored),
            "undetermined": len(left_out),
        },
        "complete": expected_images is None or len(records) >= expected_images,
        "summary": summary,
        "protocols": protocols,
        "undetermined": {
            "count": len(left_out),
            "reasons": dict(Counter(reason_kind(r["reason"], r["prompt"], r["key"]) for r in left_out).most_common()),
            "images": [{"key": r["key"], "prompt": r["prompt"], "reason": r["reason"]} for r in left_out],
        },
        "bias_table": protocols[config.primary_protocol]["bias_table"],
    }


# --------------------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------------------


def format_cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(report: Mapping[str, Any], plots: Mapping[str, str] | None = None, max_items: int = 50) -> str:
    """The report as Markdown: summary table, then per protocol its relations, orders, objects and confusion.

    Args:
        report: a `build_report` dict.
        plots: plot name -> file name relative to the Markdown file, embedded where they belong.
        max_items: list at most this many undetermined images (the JSON lists all).
    """
    plots = dict(plots or {})
    settings, counts = report["settings"], report["counts"]
    out = ["# Spatial consistency report", ""]
    if not report.get("complete", True):
        out += ["**Partial report: the run stopped before every image was scored; run it again to resume.**", ""]
    out += [
        f"- detector: `{settings['detector']}`; depth model: `{settings['depth_model']}`",
        f"- protocols: {', '.join(f'`{p}`' for p in settings['protocols'])} "
        f"(bias table from `{settings['primary_protocol']}`)",
        f"- images: {counts['images']} ({counts['prompts']} prompts); scored: {counts['scored']}; "
        f"undetermined: {counts['undetermined']}",
        "",
        "## Benchmark figures",
        "",
    ]
    for protocol, figures in report["summary"].items():
        out += [f"**{protocol}**", ""]
        out += markdown_table(list(figures), [list(figures.values())])
    if "contact_sheet" in plots:
        out += [f"![images, boxes and verdicts]({plots['contact_sheet']})", ""]
    if "accuracy_per_relation" in plots:
        out += [f"![accuracy per relation]({plots['accuracy_per_relation']})", ""]
    if "order_bias" in plots:
        out += [f"![order bias]({plots['order_bias']})", ""]

    for protocol, section in report["protocols"].items():
        out += [f"## {protocol}", ""]
        table = section["bias_table"]
        undetermined_by_relation = table.get("undetermined_by_relation", {})
        relations = [r for r in RELATIONS if r in section["per_relation"] or r in undetermined_by_relation]
        rows = []
        for r in relations:
            stats = section["per_relation"].get(r, {})
            orders = table.get("relation_orders", {}).get(r, {})
            rows.append(
                [
                    r,
                    stats.get("n", 0),
                    stats.get("correct", 0),
                    stats.get("rate"),
                    orders.get("as_written", {}).get("rate"),
                    orders.get("swapped", {}).get("rate"),
                    undetermined_by_relation.get(r, 0),
                ]
            )
        out += ["Per relation (determined images; order: alphabetical subject first = as written):", ""]
        out += markdown_table(["relation", "n", "correct", "accuracy", "as written", "swapped", "undetermined"], rows)
        cf = section["counterfactual"]
        objects = section["object_accuracy"]
        out += [
            f"- counterfactual consistency: {format_cell(cf.get('consistency'))} over {cf.get('n_pairs', 0)} pairs "
            f"({cf.get('both_right', 0)} right both ways)",
            f"- object accuracy: subject {format_cell(objects['subject'])}, object {format_cell(objects['object'])}, "
            f"both {format_cell(objects['both'])}",
            f"- undetermined: {section['undetermined'] + section['not_scored']} of "
            f"{section['n_images'] + section['not_scored']} images; out of scope (relations {protocol} does not "
            f"score): {section['out_of_scope']}",
            "",
        ]
        if section["undetermined_reasons"]:
            out += markdown_table(["undetermined because", "images"], list(section["undetermined_reasons"].items()))
        confusion = section["confusion"]
        if confusion["rows"]:
            out += ["Expected (rows) vs detected (columns) relation:", ""]
            out += markdown_table(
                ["expected \\ detected", *confusion["columns"]],
                [[r, *row] for r, row in zip(confusion["rows"], confusion["matrix"])],
            )
        if f"confusion_{protocol}" in plots:
            out += [f"![confusion {protocol}]({plots[f'confusion_{protocol}']})", ""]

    left_out = report["undetermined"]
    if left_out["count"]:
        out += ["## Images left out (undetermined)", ""]
        out += markdown_table(["reason", "images"], list(left_out["reasons"].items()))
        shown = left_out["images"][:max_items]
        out += markdown_table(["image", "prompt", "reason"], [[i["key"], i["prompt"], i["reason"]] for i in shown])
        if len(left_out["images"]) > max_items:
            out += [f"... and {len(left_out['images']) - max_items} more (see report.json).", ""]
    return "\n".join(out)


def write_report(
    report: Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    plots: bool = True,
    records: Sequence[Mapping[str, Any]] | None = None,
    image_paths: Mapping[str, str | os.PathLike] | None = None,
) -> dict[str, Path]:
    """Write `report.json`, `report.md` and (unless `plots=False`) the PNG plots into `out_dir`.

    Files are written to a temporary name and renamed, so a killed run never leaves a half-written report.

    Args:
        records, image_paths: the per-image records and key -> image file: with both, `contact_sheet.png` shows
            images with their boxes and every protocol's verdict.

    Returns:
        name -> path of every file written ("report.json", "report.md", and one entry per plot).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if plots and same_text(out_dir / "report.json", text) and (out_dir / "report.md").is_file():
        # A resumed run whose results did not change: keep the figures as drawn (redrawing took most of its time).
        return {p.name if p.suffix != ".png" else p.stem: p for p in sorted(out_dir.glob("*")) if _is_report_file(p)}
    written: dict[str, Path] = {}
    plot_files: dict[str, str] = {}
    if plots:
        from .plots import plot_report

        for name, path in plot_report(report, out_dir).items():
            written[name] = path
            plot_files[name] = path.name
        if records and image_paths:
            from .contact_sheet import plot_contact_sheet

            sheet = plot_contact_sheet(
                records,
                image_paths,
                list(report["summary"]),
                out_dir / "contact_sheet.png",
                title="Images and verdicts",
            )
            written["contact_sheet"], plot_files["contact_sheet"] = sheet, sheet.name

    def save(name: str, text: str) -> None:
        path = out_dir / name
        atomic_write_text(path, text)
        written[name] = path

    save("report.md", render_markdown(report, plot_files))
    save("report.json", text)  # last: the figures above are complete when it matches
    return written


def _is_report_file(path: Path) -> bool:
    return path.name in ("report.json", "report.md") or path.suffix == ".png"
