"""TORE: bias-aware prompt rewriting.

- `Tore` (`core`): the rewrite rule and its calibration (relation and triplet success rates).
- `ToreHook` (`hook`): TORE around one pipeline call (what `SpatialLoRAPipeline.__call__` runs).
- `ToreLayoutCallback` (`callback`): the sampling-time variant, a diffusers `PipelineCallback`.
- `calibrate` (`calibration`): generate, score and build the bias table a `Tore` is made from.
"""

from .calibration import CalibrationResult, PerceptionScorer, calibrate
from .callback import DEFAULT_CUTOFF_STEP_RATIO, ToreLayoutCallback
from .core import TORE_CONFIG_NAME, Tore, ToreDecision, triplet_key
from .hook import ToreHook

__all__ = [
    "CalibrationResult",
    "DEFAULT_CUTOFF_STEP_RATIO",
    "PerceptionScorer",
    "TORE_CONFIG_NAME",
    "Tore",
    "ToreDecision",
    "ToreHook",
    "ToreLayoutCallback",
    "calibrate",
    "triplet_key",
]
