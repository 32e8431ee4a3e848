"""The spatial world: a synthetic text-to-image setting with exact ground truth, where ESPLoRA and TORE are shown
to work (docs/world.md).

- `config`: `WorldConfig` (palette, shapes, sizes) and the caption regimes `LAION_LIKE` / `VERIFIED`;
- `scene`: seeded scenes and their rendering (pure numpy);
- `captions`: captions of a scene in each regime, and `world_sample(config, regime, seed, index)`;
- `perception`: the exact detector and depth estimator (`load_detector("world")`, `load_depth_estimator("world")`);
- `tokenizer`: the world's CLIP tokenizer;
- `shipped`: `world_model_path()`, the world base model that ships with the package;
- `models`, `dataset`: the world base model's components and the world datasets (imported on use: they need torch
  and datasets).
"""

from .captions import WorldCaption, WorldSample, caption_scene, reading_order, world_prompt, world_sample
from .config import LAION_LIKE, VERIFIED, WORLD_CONFIG_NAME, CaptionRegime, WorldConfig
from .perception import WORLD, WorldDepthEstimator, WorldDetector, classify_shape, segment_objects
from .scene import Scene, WorldObject, object_mask, render_scene, sample_scene, visible_masks
from .shipped import WORLD_MODEL_NOTICE, world_model_path

__all__ = [
    "LAION_LIKE",
    "VERIFIED",
    "WORLD",
    "WORLD_CONFIG_NAME",
    "WORLD_MODEL_NOTICE",
    "CaptionRegime",
    "Scene",
    "WorldCaption",
    "WorldConfig",
    "WorldDepthEstimator",
    "WorldDetector",
    "WorldObject",
    "WorldSample",
    "caption_scene",
    "classify_shape",
    "object_mask",
    "reading_order",
    "render_scene",
    "sample_scene",
    "segment_objects",
    "visible_masks",
    "world_model_path",
    "world_prompt",
    "world_sample",
]
