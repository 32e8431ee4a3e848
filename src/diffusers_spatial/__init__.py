"""diffusers-spatial: make text-to-image models put things where the prompt says.

The public names load lazily, as diffusers' do: `import diffusers_spatial` imports neither torch nor diffusers;
`from diffusers_spatial import SpatialLoRAPipeline` imports what that name needs.

Examples:

```py
>>> import diffusers_spatial
>>> from diffusers_spatial import parse_spatial_prompt
>>> parse_spatial_prompt("a cat to the left of a dog").relation
'left_of'

```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .metric._registration import register_evaluate_module as _register_evaluate_module

__version__ = "0.1.0.dev0"

# public name -> submodule that defines it
_LAZY_IMPORTS: dict[str, str] = {
    # pipelines
    "LoRAMismatchError": "pipelines",
    "SpatialLoRAConfig": "pipelines",
    "SpatialLoRAPipeline": "pipelines",
    "SpatialLoRAPipelineOutput": "pipelines",
    "SpatialLoRAFluxPipeline": "pipelines",
    "SpatialLoRAStableDiffusion3Pipeline": "pipelines",
    "SpatialLoRAStableDiffusionPipeline": "pipelines",
    "SpatialLoRAStableDiffusionXLPipeline": "pipelines",
    "SpatialLoRAZImagePipeline": "pipelines",
    # TORE
    "Tore": "tore",
    "ToreDecision": "tore",
    "ToreHook": "tore",
    "ToreLayoutCallback": "tore",
    "calibrate": "tore",
    # prompts and geometry
    "SpatialPrompt": "relations",
    "parse_spatial_prompt": "relations",
    "aggregate": "geometry",
    "bias_table": "geometry",
    "score_image": "geometry",
    "score_images": "geometry",
    # perception
    "Perception": "perception",
    "load_depth_estimator": "perception",
    "load_detector": "perception",
    # generation and the synthetic world
    "generate_images": "generation",
    "world_model_path": "world",
}

__all__ = [
    "__version__",
    "LoRAMismatchError",
    "Perception",
    "SpatialLoRAConfig",
    "SpatialLoRAFluxPipeline",
    "SpatialLoRAPipeline",
    "SpatialLoRAPipelineOutput",
    "SpatialLoRAStableDiffusion3Pipeline",
    "SpatialLoRAStableDiffusionPipeline",
    "SpatialLoRAStableDiffusionXLPipeline",
    "SpatialLoRAZImagePipeline",
    "SpatialPrompt",
    "Tore",
    "ToreDecision",
    "ToreHook",
    "ToreLayoutCallback",
    "aggregate",
    "bias_table",
    "calibrate",
    "generate_images",
    "load_depth_estimator",
    "load_detector",
    "parse_spatial_prompt",
    "score_image",
    "score_images",
    "world_model_path",
]

if TYPE_CHECKING:
    from .generation import generate_images
    from .geometry import aggregate, bias_table, score_image, score_images
    from .perception import Perception, load_depth_estimator, load_detector
    from .pipelines import (
        LoRAMismatchError,
        SpatialLoRAConfig,
        SpatialLoRAFluxPipeline,
        SpatialLoRAPipeline,
        SpatialLoRAPipelineOutput,
        SpatialLoRAStableDiffusion3Pipeline,
        SpatialLoRAStableDiffusionPipeline,
        SpatialLoRAStableDiffusionXLPipeline,
        SpatialLoRAZImagePipeline,
    )
    from .relations import SpatialPrompt, parse_spatial_prompt
    from .tore import Tore, ToreDecision, ToreHook, ToreLayoutCallback, calibrate
    from .world import world_model_path


def __getattr__(name: str) -> Any:
    module = _LAZY_IMPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_IMPORTS))


# `evaluate.load("spatial_consistency")` then resolves offline from any folder (standard library only; cheap).
_register_evaluate_module(quiet=True)
