"""The detector and depth-estimator contracts, the presets, and the factories that build a backend from a name.

A **detector** has a `name`, `labels` (its closed set of class names, or None for an open-vocabulary detector)
and `detect(images, queries=None) -> list[list[dict]]`: one list per image of `{"label", "score", "box"}` dicts
(boxes `[x1, y1, x2, y2]` in the image's own pixels, origin top-left; an instance-segmentation backend adds a
`"mask"`, an H x W bool array). `queries` are the nouns an open-vocabulary detector looks for (required), or the
class names a closed-set detector keeps (optional filter): one list for every image, or one list per image.

A **depth estimator** has a `name` and `estimate(images) -> list[np.ndarray]`: H x W float32 relative inverse
depth (larger = nearer) at each image's own size.

`load_detector` / `load_depth_estimator` turn a name into a backend:

- `"embedded"` (the default detector): the COCO-80 CenterNet that ships with the package (offline, CPU);
- `"world"` (detector and depth): the exact perception of the synthetic spatial world (`diffusers_spatial.world`);
- a preset name (`DETECTOR_PRESETS`, `DEPTH_PRESETS`): a Hub model with the settings a published benchmark uses,
  e.g. `"visor"` = OWL-ViT `google/owlvit-base-patch32`, score > 0.1, query "a photo of a {noun}";
- any other string: a Hugging Face model id or a local folder (`save_pretrained` output); the backend is chosen
  from the config's architecture (OWL-ViT / OWLv2 / Grounding DINO: open vocabulary; DETR and the other
  `AutoModelForObjectDetection` models: closed set; Mask2Former / MaskFormer: instance masks; DPT / Depth
  Anything: depth). Preset names win over a folder of the same name: write `./visor` for the folder.

Examples:

```py
>>> from diffusers_spatial.perception import load_detector
>>> detector = load_detector()  # the embedded, offline COCO detector
>>> detector.labels[:3]
('person', 'bicycle', 'car')
>>> DETECTOR_PRESETS["visor"].model, DETECTOR_PRESETS["visor"].score_threshold
('google/owlvit-base-patch32', 0.1)

```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "DEFAULT_DEPTH_PRESET",
    "DEFAULT_HUB_DETECTOR_PRESET",
    "DEPTH_PRESETS",
    "DETECTOR_PRESETS",
    "DepthEstimator",
    "DepthPreset",
    "Detector",
    "DetectorPreset",
    "ModelLoadError",
    "load_depth_estimator",
    "load_detector",
    "per_image_queries",
]

Queries = Sequence[str] | Sequence[Sequence[str]] | None


@runtime_checkable
class Detector(Protocol):
    """What every detector backend provides (see the module docstring for the output format)."""

    name: str
    labels: Sequence[str] | None

    def detect(self, images: Sequence[Image.Image], queries: Queries = None) -> list[list[dict[str, Any]]]: ...


@runtime_checkable
class DepthEstimator(Protocol):
    """What every depth backend provides: H x W float32 relative inverse depth at each image's size."""

    name: str

    def estimate(self, images: Sequence[Image.Image]) -> list[np.ndarray]: ...


class ModelLoadError(ValueError):
    """A detector or depth model could not be loaded; the message names the model id or path and says why."""


@dataclass(frozen=True)
class DetectorPreset:
    """A Hub detector with the settings of a published protocol.

    Args:
        model: Hugging Face model id.
        score_threshold: keep detections scoring strictly above this.
        query_template: how a noun becomes the text query of an open-vocabulary detector (`{noun}` is replaced).
        text_threshold: Grounding DINO's second threshold (on the query tokens' scores).
        max_per_label: keep at most this many detections per label (best first).
        description: where the settings come from.
    """

    model: str
    score_threshold: float
    query_template: str | None = None
    text_threshold: float | None = None
    max_per_label: int | None = None
    description: str = ""

    def kwargs(self) -> dict[str, Any]:
        """The backend keyword arguments this preset sets (None fields are left to the backend's defaults)."""
        names = ("score_threshold", "query_template", "text_threshold", "max_per_label")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass(frozen=True)
class DepthPreset:
    """A Hub monocular depth model.

    Args:
        model: Hugging Face model id.
        description: what it is and who uses it.
    """

    model: str
    description: str = ""


DETECTOR_PRESETS: dict[str, DetectorPreset] = {
    "visor": DetectorPreset(
        model="google/owlvit-base-patch32",
        score_threshold=0.1,
        query_template="a photo of a {noun}",
        description="VISOR (Gokhale et al., 2022): OWL-ViT B/32, query 'a photo of a {noun}', score > 0.1.",
    ),
    "owlv2": DetectorPreset(
        model="google/owlv2-base-patch16-ensemble",
        score_threshold=0.1,
        query_template="a photo of a {noun}",
        description="OWLv2 B/16 (ensemble checkpoint), open vocabulary; the paper-grade default detector.",
    ),
    "grounding-dino": DetectorPreset(
        model="IDEA-Research/grounding-dino-base",
        score_threshold=0.35,
        query_template="{noun}",
        text_threshold=0.25,
        description="Grounding DINO base, open vocabulary, with the authors' demo thresholds (box 0.35, text 0.25).",
    ),
    "geneval": DetectorPreset(
        model="facebook/mask2former-swin-small-coco-instance",
        score_threshold=0.3,
        max_per_label=16,
        description=(
            "GenEval's detector family: Mask2Former Swin-S, COCO instance segmentation, score > 0.3, at most 16 "
            "per class (GenEval runs the mmdetection checkpoint; this is the Hugging Face port of the same model)."
        ),
    ),
    "detr": DetectorPreset(
        model="facebook/detr-resnet-50",
        score_threshold=0.5,
        description="DETR ResNet-50, COCO closed set, score > 0.5.",
    ),
}
"""Named Hub detectors with the settings of published protocols (`load_detector("visor")`)."""

DEPTH_PRESETS: dict[str, DepthPreset] = {
    "depth-anything-v2": DepthPreset(
        model="depth-anything/Depth-Anything-V2-Large-hf",
        description="Depth Anything V2 Large, relative inverse depth; the paper-grade default depth model.",
    ),
    "depth-anything-v2-small": DepthPreset(
        model="depth-anything/Depth-Anything-V2-Small-hf",
        description="Depth Anything V2 Small: 25M parameters, for quick runs.",
    ),
    "dpt-hybrid": DepthPreset(
        model="Intel/dpt-hybrid-midas",
        description="DPT-Hybrid (MiDaS 3.0): the depth model of T2I-CompBench's 3D-spatial evaluation.",
    ),
    "dpt-large": DepthPreset(model="Intel/dpt-large", description="DPT-Large (MiDaS 3.0)."),
}
"""Named Hub depth models (`load_depth_estimator("depth-anything-v2")`)."""

DEFAULT_HUB_DETECTOR_PRESET = "owlv2"
"""The detector preset we recommend to users with the Hub and a GPU (paper-grade numbers)."""
DEFAULT_DEPTH_PRESET = "depth-anything-v2"
"""The depth preset we recommend to users with the Hub (no depth model ships with the package)."""

EMBEDDED = "embedded"
WORLD = "world"


def _world_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The world backends are exact and run on the CPU: torch device / dtype / batch options do not apply."""
    return {k: v for k, v in kwargs.items() if k not in ("device", "torch_dtype", "batch_size")}


def load_detector(name_or_path: str | os.PathLike | Detector = EMBEDDED, **kwargs: Any) -> Detector:
    """Build a detector from a name: "embedded", a preset, a Hub model id or a local model folder.

    Args:
        name_or_path: "embedded" (default; offline COCO-80 CenterNet), a key of `DETECTOR_PRESETS`, a Hugging Face
            model id, or a folder written by `save_pretrained`. An object that already is a `Detector` is returned
            as is.
        **kwargs: passed to the backend: for the embedded detector `EmbeddedDetectorConfig` fields (e.g.
            `score_threshold`); for Hugging Face models `device`, `torch_dtype`, `score_threshold`, `batch_size`,
            `query_template`, `text_threshold`, `max_per_label` (they override a preset's settings).

    Returns:
        A `Detector`.

    Raises:
        ModelLoadError: (a ValueError) the path does not exist, holds no model, or holds a model that is not a
            supported detector; the message names the path or id.

    Examples:

    ```py
    >>> detector = load_detector("embedded", score_threshold=0.4)
    >>> detector.name
    'centernet_mobilenetv3_coco'
    >>> load_detector("/no/such/model")
    Traceback (most recent call last):
      ...
    diffusers_spatial.perception.base.ModelLoadError: detector model path '/no/such/model' does not exist

    ```
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        if isinstance(name_or_path, Detector):
            if kwargs:
                raise ValueError(f"options {sorted(kwargs)} cannot be applied to an already built detector")
            return name_or_path
        raise TypeError(f"name_or_path must be a model name, path or Detector, got {type(name_or_path).__name__}")
    name = os.fspath(name_or_path)
    if name == EMBEDDED:
        from .embedded import EmbeddedDetector

        # It runs on the CPU with onnxruntime: torch device / dtype options (shared with the depth model) do not apply.
        device, torch_dtype = kwargs.pop("device", None), kwargs.pop("torch_dtype", None)
        if (device is not None and not str(device).startswith("cpu")) or torch_dtype is not None:
            from diffusers.utils import logging

            logging.get_logger(__name__).info(
                f"the embedded detector runs on the CPU (onnxruntime); ignoring device={device!r}, "
                f"torch_dtype={torch_dtype!r}"
            )
        return EmbeddedDetector(**kwargs)
    if name == WORLD:
        from ..world.perception import WorldDetector

        return WorldDetector(**_world_kwargs(kwargs))
    if name in DETECTOR_PRESETS:
        preset = DETECTOR_PRESETS[name]
        name, kwargs = preset.model, {**preset.kwargs(), **kwargs}
    from .hf_detection import load_hf_detector

    return load_hf_detector(name, **kwargs)


def load_depth_estimator(name_or_path: str | os.PathLike | DepthEstimator, **kwargs: Any) -> DepthEstimator:
    """Build a monocular depth estimator from a preset name, a Hub model id or a local model folder.

    Args:
        name_or_path: a key of `DEPTH_PRESETS`, a Hugging Face model id (DPT or Depth Anything), or a folder
            written by `save_pretrained`. An object that already is a `DepthEstimator` is returned as is.
        **kwargs: `device`, `torch_dtype`, `batch_size` (see `HFDepthEstimator`).

    Raises:
        ModelLoadError: (a ValueError) the path does not exist, holds no model, or holds a model that is not a
            supported depth model; the message names the path or id.

    Examples:

    ```py
    >>> load_depth_estimator("embedded")
    Traceback (most recent call last):
      ...
    diffusers_spatial.perception.base.ModelLoadError: no depth model ships with the package: pass a depth preset (['depth-anything-v2', 'depth-anything-v2-small', 'dpt-hybrid', 'dpt-large']), a Hub model id or a local folder, or use depth=None for the geometric fallback

    ```
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        if isinstance(name_or_path, DepthEstimator):
            if kwargs:
                raise ValueError(f"options {sorted(kwargs)} cannot be applied to an already built depth estimator")
            return name_or_path
        raise TypeError(
            f"name_or_path must be a model name, path or DepthEstimator, got {type(name_or_path).__name__}"
        )
    name = os.fspath(name_or_path)
    if name == EMBEDDED:
        raise ModelLoadError(
            f"no depth model ships with the package: pass a depth preset ({sorted(DEPTH_PRESETS)}), a Hub model id "
            "or a local folder, or use depth=None for the geometric fallback"
        )
    if name == WORLD:
        from ..world.perception import WorldDepthEstimator

        return WorldDepthEstimator(**_world_kwargs(kwargs))
    if name in DEPTH_PRESETS:
        name = DEPTH_PRESETS[name].model
    from .hf_depth import HFDepthEstimator

    return HFDepthEstimator(name, **kwargs)


def per_image_queries(queries: Queries, count: int) -> list[list[str] | None]:
    """One query list (or None) per image from None, one shared list of strings, or one list per image.

    Examples:

    ```py
    >>> per_image_queries(["dog", "cat"], 2)
    [['dog', 'cat'], ['dog', 'cat']]
    >>> per_image_queries([["dog"], []], 2)
    [['dog'], []]

    ```
    """
    if queries is None:
        return [None] * count
    if isinstance(queries, str):
        raise TypeError(f"queries must be a list of strings (or one list per image), got the string {queries!r}")
    queries = list(queries)
    if queries and all(not isinstance(q, str) for q in queries):
        if len(queries) != count:
            raise ValueError(f"got {len(queries)} query lists for {count} images")
        lists = [list(q) if q is not None else None for q in queries]
    else:
        lists = [list(queries)] * count
    for per_image in lists:
        for query in per_image or ():
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"each query must be a non-empty string, got {query!r}")
    return [list(q) if q is not None else None for q in lists]


# ---------------------------------------------------------------------------------------------------------------
# Shared by the Hugging Face backends (hf_detection, hf_depth).


@dataclass
class ResolvedModel:
    """A model id or folder, checked, with its transformers config."""

    name: str
    source: str
    config: Any = field(repr=False)

    @property
    def model_type(self) -> str:
        return self.config.model_type

    @property
    def architectures(self) -> list[str]:
        return list(getattr(self.config, "architectures", None) or [])


def resolve_model(name_or_path: str | os.PathLike, role: str) -> ResolvedModel:
    """Check a model id / folder and read its config; every failure names it.

    Args:
        name_or_path: Hub model id or local folder.
        role: "detector" or "depth", for messages.
    """
    name = os.fspath(name_or_path)
    if not name.strip():
        raise ModelLoadError(f"{role} model name is empty")
    source = os.path.expanduser(name)
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "config.json")):
            raise ModelLoadError(
                f"{role} model folder {name!r} has no config.json: expected a transformers model saved with "
                "save_pretrained (config.json, model.safetensors and the processor files)"
            )
    elif os.path.exists(source):
        raise ModelLoadError(f"{role} model path {name!r} is a file; expected a model folder or a Hub model id")
    elif os.path.isabs(source) or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name:
        raise ModelLoadError(f"{role} model path {name!r} does not exist")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as e:  # OSError (missing / unreachable), ValueError (unknown model type), JSON errors
        where = "the folder" if os.path.isdir(source) else "the Hugging Face Hub (or its cache)"
        raise ModelLoadError(f"cannot read the config of {role} model {name!r} from {where}: {e}") from e
    return ResolvedModel(name=name, source=source, config=config)


def load_pretrained(auto_class: Any, resolved: ResolvedModel, role: str, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained` from safetensors only, refusing checkpoints whose weights do not fit the class."""
    try:
        model, info = auto_class.from_pretrained(
            resolved.source, use_safetensors=True, output_loading_info=True, **kwargs
        )
    except Exception as e:
        raise ModelLoadError(
            f"cannot load the {role} model {resolved.name!r} ({', '.join(resolved.architectures) or 'unknown'}) "
            f"with {auto_class.__name__} (weights are read from safetensors files only): {e}"
        ) from e
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise ModelLoadError(
            f"{role} model {resolved.name!r} holds {', '.join(resolved.architectures) or 'a model'} weights that do "
            f"not fit {type(model).__name__}: {len(missing)} weights are missing (e.g. {missing[:3]})"
        )
    return model.eval()


def load_processor(auto_class: Any, resolved: ResolvedModel, role: str) -> Any:
    """`auto_class.from_pretrained` for the processor, with an error naming the model."""
    try:
        return auto_class.from_pretrained(resolved.source)
    except Exception as e:
        raise ModelLoadError(
            f"cannot load the {auto_class.__name__.removeprefix('Auto')} of {role} model {resolved.name!r}: {e}"
        ) from e


def resolve_device(device: Any = None) -> Any:
    """A `torch.device`: the given one, else CUDA when available, else the CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device: {e}") from e


def resolve_dtype(torch_dtype: Any = None) -> Any:
    """A `torch.dtype` from None (float32), a dtype, or its name ("float16", "bf16", "torch.bfloat16")."""
    import torch

    if torch_dtype is None:
        return torch.float32
    if isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16", "float": "float32"}
    name = str(torch_dtype).removeprefix("torch.")
    dtype = getattr(torch, aliases.get(name, name), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"torch_dtype {torch_dtype!r} is not a floating-point torch dtype")
    return dtype
