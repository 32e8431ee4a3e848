"""Exact perception of the world: flat-colour segmentation into objects, their shapes, boxes, masks and depth.

The world's images are flat colours on a plain background, so perception needs no learned model: every pixel is
assigned to the nearest palette colour (or to none, when it is far from all of them), each colour's connected
regions are objects, and an object's shape is the template (circle, square, triangle inscribed in its box) that
matches it best (each shape drawn with the region's area and centroid); that overlap (IoU) is the detection's
score. Depth follows the world's camera: every object has
the same physical size, so an object's relative inverse depth is its apparent radius.

On rendered ground truth this recovers every object, its shape and its box exactly (tests/test_world.py); on a
generated image it reports what is there, blobs and all, like any detector. Both backends follow the contracts of
`diffusers_spatial.perception` and are built by name: `load_detector("world")`, `load_depth_estimator("world")`,
so the metric, the bench, TORE calibration and training validation use them unchanged.

Examples:

```py
>>> import numpy as np
>>> from diffusers_spatial.world import WorldConfig, WorldDetector, render_scene, sample_scene
>>> config = WorldConfig()
>>> scene = sample_scene(config, np.random.default_rng(1), relation="above")
>>> found = WorldDetector(config).detect([render_scene(scene, config)])[0]
>>> sorted(d["label"] for d in found) == sorted([scene.subject.shape, scene.object.shape])
True

```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import WorldConfig
from .scene import SHAPE_AREA, SHAPE_CENTROID_OFFSET, shape_mask

__all__ = ["WORLD", "Segment", "WorldDepthEstimator", "WorldDetector", "classify_shape", "segment_objects"]

_FIT_STARTS = (1.0, 1.12, 1.25)
_FIT_MOVES = [
    m for i in range(3) for m in ((0.0,) * i + (1.0,) + (0.0,) * (2 - i), (0.0,) * i + (-1.0,) + (0.0,) * (2 - i))
]
_FIT_MOVES += [(a, 0.0, b) for a in (1.0, -1.0) for b in (1.0, -1.0)] + [
    (0.0, a, b) for a in (1.0, -1.0) for b in (1.0, -1.0)
]

WORLD = "world"
"""The name both world backends answer to (`load_detector(WORLD)`, `load_depth_estimator(WORLD)`)."""


@dataclass
class Segment:
    """One connected region of one palette colour: `mask` (H x W bool) and `box` `[x1, y1, x2, y2]` (x2, y2 past
    the last pixel)."""

    color: str
    mask: np.ndarray
    box: list[float]

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def _as_pixels(image: Any) -> np.ndarray:
    """An H x W x 3 float array from a PIL image or an H x W x 3 array (uint8 0..255 or float 0..1)."""
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H x W x 3), got an array of shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        pixels = np.clip(pixels.astype(np.float32), 0.0, 1.0) * 255.0
    return pixels.astype(np.float32)


def palette_index(image: Any, config: WorldConfig, color_tolerance: float | None = None) -> np.ndarray:
    """Per pixel, the index of the nearest palette colour (0: the background, k: `config.color_names[k - 1]`),
    or -1 where that colour is farther than `color_tolerance` (None: always the nearest)."""
    pixels = _as_pixels(image)
    palette = np.array([config.background] + [rgb for _, rgb in config.colors], dtype=np.float32)
    distance = np.sqrt(((pixels[:, :, None, :] - palette[None, None]) ** 2).sum(-1))
    nearest = distance.argmin(-1)
    if color_tolerance is not None:
        nearest[distance.min(-1) > color_tolerance] = -1
    return nearest


def _connected_components(mask: np.ndarray) -> np.ndarray:
    """4-connected labelling of a bool mask: int array, -1 outside the mask, one id (a pixel index) per region."""
    height, width = mask.shape
    labels = np.where(mask, np.arange(height * width).reshape(height, width), -1)
    big = height * width
    while True:
        current = np.where(mask, labels, big)
        best = current.copy()
        best[1:, :] = np.minimum(best[1:, :], current[:-1, :])
        best[:-1, :] = np.minimum(best[:-1, :], current[1:, :])
        best[:, 1:] = np.minimum(best[:, 1:], current[:, :-1])
        best[:, :-1] = np.minimum(best[:, :-1], current[:, 1:])
        best = np.where(mask, best, -1)
        # Pointer jumping: follow each label to its own label, so long regions settle in few rounds.
        flat = best.ravel()
        inside = flat >= 0
        flat[inside] = flat[flat[inside]]
        if np.array_equal(flat.reshape(height, width), labels):
            return labels
        labels = flat.reshape(height, width)


def segment_objects(
    image: Any, config: WorldConfig, *, color_tolerance: float = 80.0, min_area: float | None = None
) -> list[Segment]:
    """The single-colour connected regions of an image that are large enough to be objects.

    Args:
        image: a PIL image or an H x W x 3 array, of any size (sizes scale with it).
        config: the world (palette and background).
        color_tolerance: a pixel belongs to the nearest palette colour only if it is within this RGB distance.
        min_area: smallest region kept, in pixels of a `config.resolution` image (default: a third of the
            smallest object the world draws); scaled to the image's size.
    """
    nearest = palette_index(image, config, color_tolerance)
    height, width = nearest.shape
    scale = (height * width) / float(config.resolution**2)
    if min_area is None:  # a third of the smallest object the world draws
        min_area = min(SHAPE_AREA[s] for s in config.shapes) * (config.min_radius * config.resolution) ** 2 / 3.0
    keep_area = float(min_area) * scale
    segments = []
    for index, name in enumerate(config.color_names, start=1):
        components = _connected_components(nearest == index)
        ids, counts = np.unique(components[components >= 0], return_counts=True)
        for region, count in zip(ids, counts):
            if count < keep_area:
                continue
            mask = components == region
            ys, xs = np.nonzero(mask)
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
            segments.append(Segment(name, mask, box))
    return segments


def _iou(template: np.ndarray, mask: np.ndarray, hidden: np.ndarray | None) -> float:
    """Overlap of a template with a region; template pixels under `hidden` (nearer objects) cost nothing."""
    union = template | mask
    if hidden is not None:
        union &= ~(hidden & ~mask)
    total = union.sum()
    return float((template & mask).sum() / total) if total else 0.0


def _fit_shape(shape: str, mask: np.ndarray, hidden: np.ndarray | None) -> tuple[float, tuple[float, float], float]:
    """Fit `shape` to a region: `(iou, center, radius)`.

    It starts from the shape drawn with the region's area and centroid (exact for an unoccluded object) and, when
    nearer objects touch the region (`hidden`), refines centre and radius by coordinate search: the part of the
    template they hide is free, so the fit recovers the whole object from its visible part.
    """
    # Work in a window around the region, wide enough for the whole object: cost independent of image size.
    ys, xs = np.nonzero(mask)
    pad = max(xs.max() - xs.min(), ys.max() - ys.min()) + 2
    top, left = max(int(ys.min()) - pad, 0), max(int(xs.min()) - pad, 0)
    window = (slice(top, int(ys.max()) + pad + 1), slice(left, int(xs.max()) + pad + 1))
    mask = mask[window]
    hidden = hidden[window] if hidden is not None else None
    ys, xs = ys - top, xs - left

    def start(grow: float) -> list[float]:
        radius = grow * float(np.sqrt(len(xs) / SHAPE_AREA[shape]))
        return [float(xs.mean()) + 0.5, float(ys.mean()) + 0.5 - SHAPE_CENTROID_OFFSET[shape] * radius, radius]

    def score(p):
        return _iou(shape_mask(shape, (p[0], p[1]), p[2], mask.shape), mask, hidden) if p[2] > 0.5 else -1.0

    if hidden is None:
        params = start(1.0)
        return score(params), (params[0] + left, params[1] + top), params[2]
    best, best_params = -1.0, None
    for grow in _FIT_STARTS:  # the hidden part is unknown: start from several sizes
        params = start(grow)
        value = score(params)
        step = max(1.0, 0.25 * params[2])
        while step > 0.05:
            improved = False
            for move in _FIT_MOVES:  # one parameter at a time, and a shift with a size change (one edge stays)
                trial = [p + m * step for p, m in zip(params, move)]
                trial_value = score(trial)
                if trial_value > value + 1e-9:
                    params, value, improved = trial, trial_value, True
            if not improved:
                step /= 2
        if value > best:
            best, best_params = value, params
    return best, (best_params[0] + left, best_params[1] + top), best_params[2]


def _touching(mask: np.ndarray, others: np.ndarray) -> bool:
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return bool((grown & others).any())


def classify_shape(
    segment: Segment, shapes: Sequence[str], hidden: np.ndarray | None = None
) -> tuple[str, float, float]:
    """The shape that fits the segment best: `(shape, iou, radius)`.

    Args:
        segment: one object region.
        shapes: the candidate shapes.
        hidden: pixels of the other objects; where they touch the segment they may hide part of it (see
            `_fit_shape`). None: the segment is taken as whole.
    """
    if hidden is not None and not _touching(segment.mask, hidden):
        hidden = None
    best = (shapes[0], -1.0, 0.0)
    for shape in shapes:
        iou, _, radius = _fit_shape(shape, segment.mask, hidden)
        if iou > best[1]:
            best = (shape, iou, radius)
    return best


def _check_config(config: WorldConfig | None) -> WorldConfig:
    if config is None:
        return WorldConfig()
    if not isinstance(config, WorldConfig):
        raise TypeError(f"config must be a WorldConfig, got {type(config).__name__}")
    return config


class WorldDetector:
    """The world's exact detector (closed set: the world's shapes); a `perception.Detector`.

    Args:
        config: the world (default: `WorldConfig()`, the world of the shipped model).
        score_threshold: keep objects whose shape template overlaps them at least this much (IoU).
        color_tolerance: see `segment_objects`.
        min_area: see `segment_objects`.

    Each detection is `{"label": shape, "score": IoU, "box", "mask", "color"}`.
    """

    name = WORLD

    def __init__(
        self,
        config: WorldConfig | None = None,
        *,
        score_threshold: float = 0.5,
        color_tolerance: float = 80.0,
        min_area: float | None = None,
    ):
        self.config = _check_config(config)
        for option, value in (("score_threshold", score_threshold), ("color_tolerance", color_tolerance)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{option} must be a finite number >= 0, got {value!r}")
        if min_area is not None and (isinstance(min_area, bool) or not isinstance(min_area, (int, float))):
            raise ValueError(f"min_area must be a number or None, got {min_area!r}")
        self.score_threshold = float(score_threshold)
        self.color_tolerance = float(color_tolerance)
        self.min_area = min_area
        self.labels = tuple(self.config.shapes)

    def __repr__(self) -> str:
        return f"WorldDetector(resolution={self.config.resolution}, score_threshold={self.score_threshold})"

    def segments(self, image: Any) -> list[tuple[Segment, str, float, float]]:
        """Every object region of `image` with its shape, score and (whole-object) radius, below the threshold
        included."""
        found = segment_objects(image, self.config, color_tolerance=self.color_tolerance, min_area=self.min_area)
        out = []
        for i, segment in enumerate(found):
            others = [other.mask for j, other in enumerate(found) if j != i]
            hidden = np.logical_or.reduce(others) if others else None
            out.append((segment, *classify_shape(segment, self.labels, hidden)))
        return out

    def detect(self, images: Sequence[Any], queries=None) -> list[list[dict[str, Any]]]:
        keep = None
        if queries is not None:
            from ..perception.base import per_image_queries

            keep = per_image_queries(queries, len(images))
        out = []
        for i, image in enumerate(images):
            detections = [
                {"label": shape, "score": score, "box": segment.box, "mask": segment.mask, "color": segment.color}
                for segment, shape, score, _ in self.segments(image)
                if score >= self.score_threshold
            ]
            if keep is not None and keep[i] is not None:
                detections = [d for d in detections if d["label"] in keep[i]]
            out.append(detections)
        return out


class WorldDepthEstimator:
    """The world's exact depth: relative inverse depth = apparent radius over the smallest radius drawn (larger =
    nearer); 0 on the background. A `perception.DepthEstimator`."""

    name = WORLD

    def __init__(self, config: WorldConfig | None = None, *, color_tolerance: float = 80.0):
        self.detector = WorldDetector(config, score_threshold=0.0, color_tolerance=color_tolerance)

    def __repr__(self) -> str:
        return f"WorldDepthEstimator(resolution={self.detector.config.resolution})"

    def estimate(self, images: Sequence[Any]) -> list[np.ndarray]:
        config = self.detector.config
        out = []
        for image in images:
            height = _as_pixels(image).shape[0]
            segments = self.detector.segments(image)
            # The background is the ground plane, nearer towards the bottom of the image (0 .. 1 < any object).
            depth = np.repeat(((np.arange(height) + 0.5) / height)[:, None], _as_pixels(image).shape[1], axis=1)
            depth = depth.astype(np.float32)
            unit = config.min_radius * height  # the smallest radius drawn, in this image's pixels
            for segment, _, _, radius in segments:
                depth[segment.mask] = radius / unit
            out.append(depth)
        return out
