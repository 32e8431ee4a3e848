"""Perception: boxes and depth from images, for the metric, dataset curation and TORE calibration.

- `EmbeddedDetector`: the default detector, a COCO-80 CenterNet that ships with the package and runs offline
  on a CPU (onnxruntime).
- Hugging Face backends by model id or folder: open vocabulary (OWL-ViT, OWLv2, Grounding DINO), closed set
  (DETR and the other `AutoModelForObjectDetection` models, Mask2Former instance masks), depth (Depth Anything,
  DPT); presets for published protocols (`load_detector("visor")`).
- `match_noun` / `match_nouns`: prompt nouns -> a closed-set detector's classes, or why it cannot see them.
- `Perception`: many images (paths, arrays, PIL) in batches, with a progress bar and per-image errors;
  `score_results` judges them with a geometry protocol, unseen nouns and failed images undetermined.

Importing this package is light (no torch, transformers or onnxruntime): the backends load them when built,
and their classes are imported on first access.

Examples:

```py
>>> from diffusers_spatial.perception import Perception, load_detector, match_noun
>>> match_noun("kitten", load_detector().labels)
'cat'

```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import (
    DEFAULT_DEPTH_PRESET,
    DEFAULT_HUB_DETECTOR_PRESET,
    DEPTH_PRESETS,
    DETECTOR_PRESETS,
    DepthEstimator,
    DepthPreset,
    Detector,
    DetectorPreset,
    ModelLoadError,
    load_depth_estimator,
    load_detector,
)
from .batching import Perception, PerceptionResult, score_results
from .images import DEFAULT_MAX_PIXELS, ImageLoadError, LoadedImage, load_image, to_rgb_image
from .labels import NOUN_SYNONYMS, NounMatch, match_noun, match_nouns

if TYPE_CHECKING:
    from .embedded import EmbeddedDetector, EmbeddedDetectorConfig
    from .hf_depth import HFDepthEstimator
    from .hf_detection import (
        GroundingDinoDetector,
        HFDetector,
        InstanceSegmentationDetector,
        ObjectDetector,
        OwlDetector,
        load_hf_detector,
    )

# Imported on first access: they pull in onnxruntime / torch / transformers.
_LAZY = {
    "EmbeddedDetector": "embedded",
    "EmbeddedDetectorConfig": "embedded",
    "HFDepthEstimator": "hf_depth",
    "GroundingDinoDetector": "hf_detection",
    "HFDetector": "hf_detection",
    "InstanceSegmentationDetector": "hf_detection",
    "ObjectDetector": "hf_detection",
    "OwlDetector": "hf_detection",
    "load_hf_detector": "hf_detection",
}

__all__ = [
    "DEFAULT_DEPTH_PRESET",
    "DEFAULT_HUB_DETECTOR_PRESET",
    "DEFAULT_MAX_PIXELS",
    "DEPTH_PRESETS",
    "DETECTOR_PRESETS",
    "NOUN_SYNONYMS",
    "DepthEstimator",
    "DepthPreset",
    "Detector",
    "DetectorPreset",
    "ImageLoadError",
    "LoadedImage",
    "ModelLoadError",
    "NounMatch",
    "Perception",
    "PerceptionResult",
    "load_depth_estimator",
    "load_detector",
    "load_image",
    "match_noun",
    "match_nouns",
    "score_results",
    "to_rgb_image",
    # lazily imported
    "EmbeddedDetector",
    "EmbeddedDetectorConfig",
    "GroundingDinoDetector",
    "HFDepthEstimator",
    "HFDetector",
    "InstanceSegmentationDetector",
    "ObjectDetector",
    "OwlDetector",
    "load_hf_detector",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
