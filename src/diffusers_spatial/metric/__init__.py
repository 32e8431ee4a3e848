"""The spatial-consistency metric: score generated images against spatial prompts under every protocol at once.

- `evaluate_images` / `evaluate_detections`: images (or precomputed detections) + prompts -> one report dict
  (each protocol's benchmark figures side by side, per-relation and per-order accuracy, counterfactual
  consistency, object accuracy, undetermined images with reasons, the bias table TORE reads);
- `collect_items` / `read_prompts`: a folder of images and a prompts file (JSONL, CSV, text, or file names);
- `write_report`: `report.json`, `report.md` and PNG plots; `ResultsStore`: resumable per-image JSONL records;
- `module_path()`: the `evaluate` module's folder, for `evaluate.load(module_path())`; `evaluate.load(
  "spatial_consistency")` works too, offline and from any folder (`register_evaluate_module`).

Examples:

```py
>>> from diffusers_spatial.metric import evaluate_detections
>>> dets = [[{"label": "cat", "score": 0.9, "box": [0, 0, 10, 10]}, {"label": "dog", "score": 0.9, "box": [50, 0, 60, 10]}]]
>>> report = evaluate_detections(dets, ["a cat to the left of a dog"], protocols="visor", progress=False)
>>> report["summary"]["visor"]["OA"], report["counts"]
(100.0, {'images': 1, 'prompts': 1, 'scored': 1, 'undetermined': 0})

```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._registration import METRIC_NAME, module_path, register_evaluate_module

if TYPE_CHECKING:
    from .config import PROTOCOLS, EvaluationConfig
    from .evaluation import evaluate_detections, evaluate_images, evaluate_items, score_records
    from .inputs import (
        EvaluationItem,
        PromptRecord,
        collect_items,
        list_images,
        normalize_predictions,
        prompt_from_file_name,
        read_prompts,
    )
    from .plots import plot_report
    from .report import REPORT_VERSION, build_report, headline_scores, render_markdown, write_report
    from .results import ResultsStore, check_run_settings, read_results

# Importing this package stays light (`import diffusers_spatial` uses `_registration`); the
# rest loads on first access.
_LAZY = {
    "PROTOCOLS": "config",
    "EvaluationConfig": "config",
    "evaluate_detections": "evaluation",
    "evaluate_images": "evaluation",
    "evaluate_items": "evaluation",
    "score_records": "evaluation",
    "EvaluationItem": "inputs",
    "PromptRecord": "inputs",
    "collect_items": "inputs",
    "list_images": "inputs",
    "normalize_predictions": "inputs",
    "prompt_from_file_name": "inputs",
    "read_prompts": "inputs",
    "plot_report": "plots",
    "REPORT_VERSION": "report",
    "build_report": "report",
    "headline_scores": "report",
    "render_markdown": "report",
    "write_report": "report",
    "ResultsStore": "results",
    "check_run_settings": "results",
    "read_results": "results",
}

__all__ = [
    "EvaluationConfig",
    "EvaluationItem",
    "METRIC_NAME",
    "PROTOCOLS",
    "PromptRecord",
    "REPORT_VERSION",
    "ResultsStore",
    "build_report",
    "check_run_settings",
    "collect_items",
    "evaluate_detections",
    "evaluate_images",
    "evaluate_items",
    "headline_scores",
    "list_images",
    "module_path",
    "normalize_predictions",
    "plot_report",
    "prompt_from_file_name",
    "read_prompts",
    "read_results",
    "register_evaluate_module",
    "render_markdown",
    "score_records",
    "write_report",
]

# `register_evaluate_module(quiet=True)` runs from `diffusers_spatial/__init__.py`, which imports this package first.


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
