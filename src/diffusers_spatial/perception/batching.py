"""`Perception`: boxes (and depth) for many images at once, in batches, where one bad image never stops the rest.

`Perception(detector=..., depth=...)` loads its models on first use. `run(images, prompts)` takes paths, bytes,
PIL images or numpy arrays (`perception.images`), runs the detector and the depth model on batches of
`batch_size` images with a progress bar, and returns one `PerceptionResult` per image, in order:

- `detections`: `{"label", "score", "box"}` dicts (plus `"mask"` for instance segmentation) in the original
  image's pixels, even when a huge image was downscaled for the models;
- `depth`: H x W float32 relative inverse depth at the original size, or None without a depth model. Then
  `depth_source` is "none" and `depth_confidence` is "low": the esplora protocol falls back to its geometric
  depth cues (box size and vertical position) and says so;
- `noun_labels`: for each noun of the prompt, the detector label that stands for it (`perception.labels`), or
  the reason the detector cannot see it - the verdict is then undetermined with that reason, never "absent";
- `error`: why the image has no result (unreadable file, model failure on that image), else None.

Open-vocabulary detectors look for the prompt's subject and object nouns; images without a spatial prompt are
searched for `default_queries` (the COCO-80 classes). Closed-set detectors always return all their classes, so
later stages can use every object in the image.

Examples:

```py
>>> from PIL import Image
>>> from diffusers_spatial.perception import Perception
>>> perception = Perception(progress=False)  # the embedded detector, no depth model
>>> results = perception.run([Image.new("RGB", (64, 48)), "missing.jpg"], ["a puppy left of a sofa", None])
>>> results[0].noun_labels["puppy"].label, results[0].depth_confidence, results[0].image_size
('dog', 'low', (64, 48))
>>> results[1].error
"cannot load image 'missing.jpg': no such file"

```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..relations import MultipleRelationsError, SpatialPrompt, parse_spatial_prompt
from ..vocabulary import COCO_CLASSES
from .base import DepthEstimator, Detector, load_depth_estimator, load_detector
from .images import DEFAULT_MAX_PIXELS, ImageInput, ImageLoadError, LoadedImage, load_image
from .labels import NounMatch, match_nouns

__all__ = [
    "DEPTH_CONFIDENCE_HIGH",
    "DEPTH_CONFIDENCE_LOW",
    "NO_DEPTH",
    "Perception",
    "PerceptionResult",
    "score_results",
    "undetermined_score",
]

NO_DEPTH = "none"
"""`depth_source` when no depth model ran."""
DEPTH_CONFIDENCE_HIGH = "high"
"""`depth_confidence` when a depth model produced the depth map."""
DEPTH_CONFIDENCE_LOW = "low"
"""`depth_confidence` without a depth model: in-front-of / behind come from the geometric fallback."""


@dataclass
class PerceptionResult:
    """What `Perception.run` found in one image.

    Args:
        detections: detection dicts in the original image's pixels (empty when `error` is set).
        depth: H x W float32 relative inverse depth at the original size, or None.
        image_size: `(width, height)` of the original image, or None when it could not be read.
        error: why this image has no result, or None.
        noun_labels: prompt noun -> `NounMatch` (the detector label for it, or why there is none).
        prompt: the parsed spatial prompt, or None (no prompt, or not a spatial prompt: see `prompt_error`).
        prompt_error: why the prompt given for this image could not be read, or None.
        source: the image's file name or description.
        detector: the detector's name.
        depth_source: the depth model's name, or "none".
        depth_confidence: "high" (a depth model ran) or "low" (geometric fallback).
        scale: working size / original size (1.0 unless the image was downscaled for the models).
    """

    detections: list[dict[str, Any]] = field(default_factory=list)
    depth: np.ndarray | None = None
    image_size: tuple[int, int] | None = None
    error: str | None = None
    noun_labels: dict[str, NounMatch] = field(default_factory=dict)
    prompt: SpatialPrompt | None = None
    prompt_error: str | None = None
    source: str = ""
    detector: str = ""
    depth_source: str = NO_DEPTH
    depth_confidence: str = DEPTH_CONFIDENCE_LOW
    scale: float = 1.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def subject_label(self) -> str | None:
        """The detector label standing for the prompt's subject (None: no prompt, or the detector cannot see it)."""
        return self._label(self.prompt.subject_noun) if self.prompt is not None else None

    @property
    def object_label(self) -> str | None:
        """The detector label standing for the prompt's object (None: no prompt, or the detector cannot see it)."""
        return self._label(self.prompt.object_noun) if self.prompt is not None else None

    def _label(self, noun: str) -> str | None:
        match = self.noun_labels.get(noun)
        return match.label if match is not None else None

    @property
    def undetermined_reason(self) -> str | None:
        """Why a spatial verdict on this image cannot be decided from perception alone, or None if it can."""
        if self.error is not None:
            return self.error
        if self.prompt_error is not None:
            return self.prompt_error
        unseen = [m.reason for m in self.noun_labels.values() if not m.visible]
        return "; ".join(unseen) if unseen else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary: detections without masks, depth as its shape only."""
        return {
            "source": self.source,
            "image_size": list(self.image_size) if self.image_size is not None else None,
            "error": self.error,
            "detector": self.detector,
            "detections": [{k: d[k] for k in ("label", "score", "box")} for d in self.detections],
            "depth_source": self.depth_source,
            "depth_confidence": self.depth_confidence,
            "depth_shape": list(self.depth.shape) if self.depth is not None else None,
            "prompt": self.prompt.render() if self.prompt is not None else None,
            "prompt_error": self.prompt_error,
            "noun_labels": {noun: match.to_dict() for noun, match in self.noun_labels.items()},
            "undetermined_reason": self.undetermined_reason,
        }


class Perception:
    """Detector + optional depth model over many images, in batches, with per-image errors.

    Args:
        detector: "embedded" (default: the offline COCO detector), a preset ("visor", "owlv2", "grounding-dino",
            "geneval", "detr"), a Hugging Face model id or folder, or a ready `Detector`.
        depth: None (no depth model: geometric fallback, `depth_confidence="low"`), a depth preset
            ("depth-anything-v2", "dpt-hybrid", ...), a model id or folder, or a ready `DepthEstimator`.
        batch_size: images per detector / depth call.
        progress: show a tqdm progress bar.
        device: torch device for Hugging Face models (the embedded detector always runs on the CPU).
        torch_dtype: dtype for Hugging Face models (e.g. "float16" on a GPU).
        max_pixels: images with more pixels are downscaled for the models (`perception.images`); results are
            mapped back to the original pixels.
        default_queries: what an open-vocabulary detector looks for in images without a spatial prompt.
        detector_kwargs: extra options for `load_detector` (e.g. `{"score_threshold": 0.2}`).
        depth_kwargs: extra options for `load_depth_estimator`.

    Examples:

    ```py
    >>> perception = Perception(detector="visor", depth="depth-anything-v2", device="cuda")  # doctest: +SKIP
    >>> results = perception.run(["a.png", "b.png"], ["a dog left of a cat", "a cup in front of a vase"])  # doctest: +SKIP

    ```
    """

    def __init__(
        self,
        detector: str | os.PathLike | Detector = "embedded",
        depth: str | os.PathLike | DepthEstimator | None = None,
        batch_size: int = 8,
        progress: bool = True,
        *,
        device: Any = None,
        torch_dtype: Any = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        default_queries: Sequence[str] = COCO_CLASSES,
        detector_kwargs: dict[str, Any] | None = None,
        depth_kwargs: dict[str, Any] | None = None,
    ):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
            raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
        if isinstance(default_queries, str) or not all(isinstance(q, str) and q.strip() for q in default_queries):
            raise ValueError(f"default_queries must be a list of non-empty strings, got {default_queries!r:.200}")
        self.batch_size = batch_size
        self.progress = progress
        self.max_pixels = max_pixels
        self.default_queries = list(default_queries)
        self._detector_spec = detector
        self._depth_spec = depth
        model_options = {k: v for k, v in (("device", device), ("torch_dtype", torch_dtype)) if v is not None}
        self._detector_kwargs = {**model_options, **(detector_kwargs or {})}
        self._depth_kwargs = {**model_options, **(depth_kwargs or {})}
        self._detector: Detector | None = None
        self._depth: DepthEstimator | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(detector={self.detector_name!r}, depth={self.depth_name!r}, "
            f"batch_size={self.batch_size})"
        )

    @property
    def detector(self) -> Detector:
        """The detector, loaded on first access."""
        if self._detector is None:
            if isinstance(self._detector_spec, (str, os.PathLike)):
                self._detector = load_detector(self._detector_spec, **self._detector_kwargs)
            else:
                self._detector = load_detector(self._detector_spec)
        return self._detector

    @property
    def depth_estimator(self) -> DepthEstimator | None:
        """The depth model (loaded on first access), or None."""
        if self._depth is None and self._depth_spec is not None:
            if isinstance(self._depth_spec, (str, os.PathLike)):
                self._depth = load_depth_estimator(self._depth_spec, **self._depth_kwargs)
            else:
                self._depth = load_depth_estimator(self._depth_spec)
        return self._depth

    @property
    def detector_name(self) -> str:
        if self._detector is not None:
            return self._detector.name
        spec = self._detector_spec
        return os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else getattr(spec, "name", repr(spec))

    @property
    def depth_name(self) -> str:
        """The depth model's name, or "none"."""
        if self._depth_spec is None:
            return NO_DEPTH
        if self._depth is not None:
            return self._depth.name
        spec = self._depth_spec
        return os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else getattr(spec, "name", repr(spec))

    def run(
        self,
        images: Sequence[ImageInput],
        prompts: Sequence[str | SpatialPrompt | None] | str | SpatialPrompt | None = None,
    ) -> list[PerceptionResult]:
        """Detect (and estimate depth) in every image; one `PerceptionResult` per image, in order.

        Args:
            images: paths, bytes, PIL images or numpy arrays (any mix), or one N x H x W x C array.
            prompts: one prompt per image (str, `SpatialPrompt` or None), one prompt for all images, or None.
                They give the open-vocabulary queries and the noun-to-label matches.

        Returns:
            The results; an image that cannot be read or that a model fails on gets `error` set, the others are
            unaffected.

        Raises:
            ValueError: `prompts` has a different length than `images`, or the detector / depth model cannot be
                loaded (`ModelLoadError`).
            RuntimeError: a model fails on every image of a batch (of two or more) with the same error: it is
                broken, not the images. Nothing that is wrong with one image raises.
        """
        if isinstance(images, np.ndarray) and images.ndim == 4:  # a stacked N x H x W x C batch
            images = list(images)
        if isinstance(images, (str, bytes, os.PathLike, np.ndarray)) or not isinstance(images, Sequence):
            raise TypeError(
                f"images must be a sequence (list) of images or an N x H x W x C array, got {type(images).__name__}"
                " (wrap a single image in a list)"
            )
        count = len(images)
        if prompts is None or isinstance(prompts, (str, SpatialPrompt)):
            prompts = [prompts] * count
        elif len(prompts) != count:
            raise ValueError(f"got {len(prompts)} prompts for {count} images: pass one per image, or one for all")
        detector, depth = self.detector, self.depth_estimator
        from tqdm.auto import tqdm

        def prepare(start: int) -> list[_Pending]:
            stop = min(start + self.batch_size, count)
            return [self._prepare(detector, images[i], prompts[i]) for i in range(start, stop)]

        results: list[PerceptionResult] = []
        starts = range(0, count, self.batch_size)
        # Images of the next batch are read (decoded, converted, resized) in a thread while the models run on the
        # current one: decoding releases the GIL, and so do onnxruntime and torch.
        with (
            ThreadPoolExecutor(max_workers=1) as reader,
            tqdm(total=count, desc="perception", unit="img", disable=not self.progress) as bar,
        ):
            upcoming = reader.submit(prepare, starts[0]) if count else None
            for k in range(len(starts)):
                pending = upcoming.result()
                if k + 1 < len(starts):
                    upcoming = reader.submit(prepare, starts[k + 1])
                results += self._run_models(detector, depth, pending)
                bar.update(len(pending))
        return results

    def _run_models(self, detector, depth, pending: list[_Pending]) -> list[PerceptionResult]:
        ready = [p for p in pending if p.loaded is not None]
        if ready:
            pixels = [p.loaded.image for p in ready]
            queries = [p.queries for p in ready] if detector.labels is None else None
            detections = _per_item(
                lambda idx: detector.detect([pixels[i] for i in idx], _pick(queries, idx)), len(ready), "detector"
            )
            depths = (
                _per_item(lambda idx: depth.estimate([pixels[i] for i in idx]), len(ready), "depth model")
                if depth is not None
                else [(None, None)] * len(ready)
            )
            for p, (found, detect_error), (depth_map, depth_error) in zip(ready, detections, depths):
                p.finish(found, detect_error or depth_error, depth_map, depth)
        return [p.result for p in pending]

    def _prepare(self, detector, image, prompt) -> _Pending:
        """Read the prompt and the image; errors go into the result, never out."""
        result = PerceptionResult(detector=detector.name)
        result.prompt, result.prompt_error = _read_prompt(prompt)
        queries = self.default_queries
        if result.prompt is not None:
            nouns = [result.prompt.subject_noun, result.prompt.object_noun]
            result.noun_labels = match_nouns(nouns, detector.labels, detector=detector.name)
            queries = list(dict.fromkeys(nouns))
        try:
            loaded = load_image(image, max_pixels=self.max_pixels)
        except ImageLoadError as e:
            result.source, result.error = e.source, str(e)
            return _Pending(result, None, [])
        result.source = loaded.source
        result.image_size = loaded.original_size
        result.scale = loaded.scale
        return _Pending(result, loaded, queries)


def undetermined_score(protocol: str, prompt: SpatialPrompt, reason: str, *, text: str | None = None):
    """The `geometry.ImageScore` of an image whose verdict perception cannot decide: `correct=None`, score 0 and
    `details["reason"]`.

    Args:
        protocol: the protocol's name.
        prompt: the image's parsed spatial prompt.
        reason: why it is undetermined (`PerceptionResult.undetermined_reason`).
        text: the prompt as written; default `prompt.render()`.

    Examples:

    ```py
    >>> from diffusers_spatial.relations import parse_spatial_prompt
    >>> score = undetermined_score("esplora", parse_spatial_prompt("a cat left of a dog"), "unreadable image")
    >>> score.correct, score.details
    (None, {'reason': 'unreadable image'})

    ```
    """
    from ..geometry import ImageScore

    return ImageScore(
        protocol=protocol,
        prompt=prompt.render() if text is None else text,
        relation=prompt.relation,
        subject=prompt.subject_noun,
        object=prompt.object_noun,
        score=0.0,
        objects_found=False,
        correct=None,
        details={"reason": reason},
    )


def score_results(results: Sequence[PerceptionResult], protocol: str = "esplora", **options: Any) -> list:
    """Judge each image's spatial prompt from its perception, under a geometry protocol.

    The detector labels standing for the prompt's nouns (`noun_labels`) are what the protocol looks for, and the
    depth map (when a depth model ran) and the original image size are passed along. An image whose verdict
    cannot be decided from perception - it could not be read, a model failed on it, or the detector cannot see
    one of its nouns - gets an undetermined `ImageScore` (`correct=None`) with that `details["reason"]`, never a
    "not found". Every score's details record `depth_source` and `depth_confidence`.

    Args:
        results: `Perception.run` results, each with a spatial prompt.
        protocol: a `diffusers_spatial.geometry` protocol ("esplora", "visor", "geneval", ...).
        **options: the protocol's options (see `geometry.score_images`).

    Returns:
        One `geometry.ImageScore` per result, in order.

    Raises:
        ValueError: a result has no spatial prompt (the message gives its index and why).

    Examples:

    ```py
    >>> from PIL import Image
    >>> results = Perception(progress=False).run([Image.new("RGB", (64, 48))], ["a castle left of a dog"])
    >>> score = score_results(results)[0]
    >>> score.correct is None, score.details["reason"]
    (True, "the detector 'centernet_mobilenetv3_coco' cannot see 'castle': none of its 80 classes matches it")

    ```
    """
    from ..geometry import get_protocol, score_images

    missing = [f"{i} ({r.prompt_error or 'no prompt given'})" for i, r in enumerate(results) if r.prompt is None]
    if missing:
        raise ValueError(f"results without a spatial prompt cannot be scored: {', '.join(missing)}")
    name = get_protocol(protocol).name
    decidable = [i for i, r in enumerate(results) if r.undetermined_reason is None]
    picked = [results[i] for i in decidable]
    judged = score_images(
        [r.prompt for r in picked],
        [r.detections for r in picked],
        protocol=protocol,
        depths=[r.depth for r in picked],
        image_sizes=[r.image_size for r in picked],
        subject_label=[r.subject_label for r in picked],
        object_label=[r.object_label for r in picked],
        **options,
    )
    scores = dict(zip(decidable, judged))
    out = []
    for i, result in enumerate(results):
        score = scores.get(i)
        if score is None:
            score = undetermined_score(name, result.prompt, result.undetermined_reason)
        score.details["depth_source"] = result.depth_source
        score.details["depth_confidence"] = result.depth_confidence
        out.append(score)
    return out


@dataclass
class _Pending:
    """A result being built, with the image and queries the models still need."""

    result: PerceptionResult
    loaded: LoadedImage | None
    queries: list[str]

    def finish(self, detections: Any, error: str | None, depth_map: Any, depth: DepthEstimator | None) -> None:
        """Store the models' outputs in the result, mapped back to the original image."""
        result, loaded = self.result, self.loaded
        self.loaded = None  # release the pixels
        if error is not None:
            result.error = error
            return
        result.detections = _to_original(detections, loaded)
        if depth is not None:
            result.depth = _depth_to_original(depth_map, loaded)
            result.depth_source = depth.name
            result.depth_confidence = DEPTH_CONFIDENCE_HIGH


def _read_prompt(prompt: Any) -> tuple[SpatialPrompt | None, str | None]:
    if prompt is None:
        return None, None
    if isinstance(prompt, SpatialPrompt):
        return prompt, None
    if not isinstance(prompt, str):
        return None, f"prompt must be a str or SpatialPrompt, got {type(prompt).__name__}"
    try:
        spatial = parse_spatial_prompt(prompt)
    except MultipleRelationsError as e:
        return None, str(e)
    if spatial is None:
        return None, f"prompt {prompt!r} is not a spatial prompt (no relation between two noun phrases)"
    return spatial, None


def _pick(queries: list[list[str]] | None, indices: list[int]) -> list[list[str]] | None:
    return None if queries is None else [queries[i] for i in indices]


def _per_item(call, count: int, what: str) -> list[tuple[Any, str | None]]:
    """Run `call` on all items at once; if that fails, on each item alone, so only the culprits get an error.

    Raises:
        RuntimeError: every item of a batch of two or more fails, with the same error: the model is broken (a
            corrupt file, out of memory...), not the images, and the run stops instead of failing every image.
    """
    try:
        outputs = call(list(range(count)))
        if len(outputs) != count:
            raise RuntimeError(f"the {what} returned {len(outputs)} results for {count} images")
        return [(output, None) for output in outputs]
    except Exception as e:
        if count == 1:
            return [(None, _failure(what, e))]
        from diffusers.utils import logging

        logging.get_logger(__name__).warning(f"the {what} failed on a batch ({e}); retrying its images one by one")
    singles = [_single(call, i, what) for i in range(count)]
    errors = {f"{type(error).__name__}: {error}" for _, error in singles if error is not None}
    if len(errors) == 1 and all(error is not None for _, error in singles):
        raise RuntimeError(f"the {what} fails on every image of a batch of {count}: {errors.pop()}") from singles[0][1]
    return [(output, None if error is None else _failure(what, error)) for output, error in singles]


def _single(call, i: int, what: str) -> tuple[Any, Exception | None]:
    try:
        outputs = call([i])
        if len(outputs) != 1:
            raise RuntimeError(f"the {what} returned {len(outputs)} results for 1 image")
        return outputs[0], None
    except Exception as e:
        return None, e


def _failure(what: str, error: Exception) -> str:
    return f"the {what} failed on this image: {type(error).__name__}: {error}"


def _to_original(detections: list[Any], loaded: LoadedImage) -> list[dict[str, Any]]:
    """Detection dicts in the original image's pixels (boxes rescaled, masks resized) when it was downscaled."""
    out = []
    for detection in detections:
        if not isinstance(detection, dict):  # a geometry.Detection or any object with the three fields
            detection = {"label": detection.label, "score": detection.score, "box": detection.box}
        detection = dict(detection)
        detection["box"] = loaded.box_to_original(detection["box"])
        if loaded.downscaled and detection.get("mask") is not None:
            detection["mask"] = _resize_mask(detection["mask"], loaded.original_size)
        out.append(detection)
    return out


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.asarray(mask, dtype=bool)).resize(size, Image.Resampling.NEAREST))


def _depth_to_original(depth: Any, loaded: LoadedImage) -> np.ndarray:
    from PIL import Image

    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != (loaded.original_size[1], loaded.original_size[0]):
        depth = np.asarray(Image.fromarray(depth, mode="F").resize(loaded.original_size, Image.Resampling.BILINEAR))
    return depth
