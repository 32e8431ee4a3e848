"""The geometric judge: does an image, given its detections (and optionally a depth map), honour a spatial prompt?

Pure numpy, no model. Five protocols: "visor", "t2i_compbench_2d", "t2i_compbench_3d" and "geneval" reproduce the
published benchmarks' rules exactly; "esplora" is ours (docs/metrics.md compares them).

Examples:

```py
>>> from diffusers_spatial.geometry import aggregate, score_image
>>> dets = [{"label": "cat", "score": 0.9, "box": [10, 40, 90, 120]}, {"label": "dog", "score": 0.8, "box": [200, 30, 300, 130]}]
>>> score_image("a cat to the left of a dog", dets, protocol="geneval").correct
True
>>> hedged = dets + [{"label": "cat", "score": 0.85, "box": [320, 40, 400, 120]}]  # a second cat on the right
>>> score_image("a cat to the left of a dog", hedged, protocol="visor").correct
True
>>> s = score_image("a cat to the left of a dog", hedged)  # esplora: every confident instance counts
>>> s.correct, s.details["hedging"]
(False, True)

```
"""

from .aggregate import aggregate
from .bias import BIAS_TABLE_VERSION, bias_table, object_order, triplet_key
from .boxes import centers, intersection_area, normalized_offsets, paired_iou, sizes
from .context import resolve_prompt
from .labels import normalize_label
from .protocols import (
    PROTOCOLS,
    EsploraConfig,
    GenEvalConfig,
    Protocol,
    T2ICompBench2DConfig,
    T2ICompBench3DConfig,
    VisorConfig,
    get_protocol,
)
from .scoring import score_image, score_images
from .types import Detection, ImageScore

__all__ = [
    "BIAS_TABLE_VERSION",
    "PROTOCOLS",
    "Detection",
    "EsploraConfig",
    "GenEvalConfig",
    "ImageScore",
    "Protocol",
    "T2ICompBench2DConfig",
    "T2ICompBench3DConfig",
    "VisorConfig",
    "aggregate",
    "bias_table",
    "centers",
    "get_protocol",
    "intersection_area",
    "normalize_label",
    "normalized_offsets",
    "object_order",
    "paired_iou",
    "resolve_prompt",
    "score_image",
    "score_images",
    "sizes",
    "triplet_key",
]
