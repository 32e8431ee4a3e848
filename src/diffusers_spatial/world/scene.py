"""Scenes of the world and how they are drawn: pure functions of a `WorldConfig` and a numpy random generator.

A `Scene` holds two `WorldObject`s and the relation that holds between them ("subject relation object"), true by
construction: `sample_scene` places the objects so that the relation is unambiguous (along its axis the centres are
in its first and last third, at least `min_separation` apart, across it they are nearly aligned; in 3D the nearer
object is drawn larger and lower). `render_scene` draws it; `object_mask` is the exact pixel set of one object,
which the world's perception recovers from the image alone.

Examples:

```py
>>> import numpy as np
>>> from diffusers_spatial.world.config import WorldConfig
>>> from diffusers_spatial.world.scene import render_scene, sample_scene
>>> config = WorldConfig()
>>> scene = sample_scene(config, np.random.default_rng(0), relation="left_of")
>>> scene.subject.center[0] < scene.object.center[0], scene.relation
(True, 'left_of')
>>> render_scene(scene, config).shape
(32, 32, 3)

```
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

import numpy as np

from ..relations import CONVERSE, RELATIONS_3D
from .config import WorldConfig

__all__ = [
    "SHAPE_AREA",
    "SHAPE_CENTROID_OFFSET",
    "Scene",
    "WorldObject",
    "object_mask",
    "pick_objects",
    "render_scene",
    "sample_scene",
    "shape_mask",
    "visible_masks",
]

# Shape geometry in units of the radius r: a circle of radius r, a square of half-side 0.88 r (about the circle's
# area), an upward triangle of height 2 r and half-base 1.15 r.
_SQUARE_HALF = 0.88
_TRIANGLE_HALF_BASE = 1.15
_MAX_TRIES = 50


@dataclass(frozen=True)
class WorldObject:
    """One object: a colour, a shape (its noun), a centre `(x, y)` in pixels and a radius in pixels."""

    color: str
    shape: str
    center: tuple[float, float]
    radius: float

    @property
    def name(self) -> str:
        """ "red circle"."""
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Two objects and the relation that holds between them: `subject relation object`.

    The objects are drawn in `drawing_order` (the nearer one last). `converse()` states the same fact the other way
    round ("A left of B" = "B right of A").
    """

    subject: WorldObject
    relation: str
    object: WorldObject

    @property
    def objects(self) -> tuple[WorldObject, WorldObject]:
        return (self.subject, self.object)

    @property
    def drawing_order(self) -> tuple[WorldObject, WorldObject]:
        if self.relation == "in_front_of":
            return (self.object, self.subject)
        return (self.subject, self.object)

    def converse(self) -> Scene:
        return replace(self, subject=self.object, relation=CONVERSE[self.relation], object=self.subject)


SHAPE_AREA = {"circle": np.pi, "square": (2 * _SQUARE_HALF) ** 2, "triangle": 2 * _TRIANGLE_HALF_BASE}
"""Area of each shape in units of radius squared."""
SHAPE_CENTROID_OFFSET = {"circle": 0.0, "square": 0.0, "triangle": 1.0 / 3.0}
"""How far below its centre a shape's centroid lies, in radii (a triangle's centroid is a third of its height up
from the base)."""


def shape_mask(
    shape: str, center: tuple[float, float], radius: float, resolution: int | tuple[int, int]
) -> np.ndarray:
    """The pixels (centres inside the shape) of a shape of `radius` at `center` in an image of `resolution`
    (its side, or `(height, width)`), as a bool array."""
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    cx, cy = center
    if shape == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= radius * radius
    if shape == "square":
        half = _SQUARE_HALF * radius
        return (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    if shape == "triangle":
        top, height = cy - radius, 2.0 * radius
        along = (ys - top) / height  # 0 at the apex, 1 at the base
        return (along >= 0) & (along <= 1) & (np.abs(xs - cx) <= along * _TRIANGLE_HALF_BASE * radius)
    raise ValueError(f"unknown shape {shape!r}: expected circle, square or triangle")


def object_mask(obj: WorldObject, resolution: int) -> np.ndarray:
    """The exact pixels of `obj` drawn alone."""
    return shape_mask(obj.shape, obj.center, obj.radius, resolution)


def visible_masks(scene: Scene, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of subject and object that stay visible once the nearer object is drawn over the farther one."""
    first, second = scene.drawing_order
    front = object_mask(second, resolution)
    back = object_mask(first, resolution) & ~front
    return (back, front) if first is scene.subject else (front, back)


def render_scene(scene: Scene, config: WorldConfig) -> np.ndarray:
    """Draw a scene: a resolution x resolution x 3 uint8 RGB array (flat colours, no anti-aliasing)."""
    image = np.empty((config.resolution, config.resolution, 3), dtype=np.uint8)
    image[:] = config.background
    palette = config.palette
    for obj in scene.drawing_order:
        image[object_mask(obj, config.resolution)] = palette[obj.color]
    return image


def pick_objects(
    config: WorldConfig, rng: np.random.Generator, exclude_pairs: Collection[frozenset[str]] = ()
) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two objects `(colour, shape)` of different colours and different shapes, never a pair of `exclude_pairs`
    (object names, either order); redrawn from `rng` until allowed."""
    excluded = {frozenset(pair) for pair in exclude_pairs}
    names = config.color_names
    if excluded:
        pairs = {
            frozenset((f"{c1} {s1}", f"{c2} {s2}"))
            for c1 in names
            for c2 in names
            for s1 in config.shapes
            for s2 in config.shapes
            if c1 != c2 and s1 != s2
        }
        if pairs <= excluded:
            raise ValueError("exclude_pairs leaves no object pair to draw")
    while True:
        colors = rng.choice(len(config.colors), size=2, replace=False)
        shapes = rng.choice(len(config.shapes), size=2, replace=False)
        first, second = (names[colors[0]], config.shapes[shapes[0]]), (names[colors[1]], config.shapes[shapes[1]])
        if frozenset((" ".join(first), " ".join(second))) not in excluded:
            return first, second


def _layout_2d(config: WorldConfig, rng: np.random.Generator, first_radius: float, second_radius: float):
    """Centres (along, across) of the first (left / top) and second object along one axis."""
    res = float(config.resolution)
    big = max(first_radius, second_radius)
    first = max(rng.uniform(*config.first_span) * res, first_radius + 1.0)  # a one-pixel margin to the border
    second = max(rng.uniform(*config.second_span) * res, first + config.min_separation * res)
    second = min(second, res - second_radius - 1.0)
    across = rng.uniform(*config.across_span) * res
    jitter = 0.06 * res
    low, high = big + 1.0, res - big - 1.0
    across_first = float(np.clip(across + rng.uniform(-jitter, jitter), low, high))
    across_second = float(np.clip(across + rng.uniform(-jitter, jitter), low, high))
    return (first, across_first), (second, across_second)


def _layout_3d(config: WorldConfig, rng: np.random.Generator, near: tuple[str, float], far: tuple[str, float]):
    """Centres (x, y) of the near and far object (shape, radius): the near one lower (its ground contact is nearer
    the viewer) and hiding part of the far one's side: between 8% and 30% of it, so that both stay recognisable
    and their boxes overlap (T2I-CompBench's 3D rule reads nothing from boxes apart)."""
    res = float(config.resolution)
    (near_shape, near_radius), (far_shape, far_radius) = near, far
    best, best_miss = None, np.inf
    for _ in range(_MAX_TRIES):
        near_left = rng.random() < 0.5
        left_r, right_r = (near_radius, far_radius) if near_left else (far_radius, near_radius)
        distance = rng.uniform(0.4, 1.0) * _TRIANGLE_HALF_BASE * (near_radius + far_radius)
        low = 1.0 + _TRIANGLE_HALF_BASE * left_r
        high = res - 1.0 - _TRIANGLE_HALF_BASE * right_r - distance
        left_x = rng.uniform(low, max(low, high))
        right_x = left_x + distance
        near_bottom = rng.uniform(0.8 * res, res - 1.0)
        far_bottom = max(near_bottom - rng.uniform(0.06, 0.15) * res, 2.0 * far_radius + 1.0)
        near_c = (left_x if near_left else right_x, near_bottom - near_radius)
        far_c = (right_x if near_left else left_x, far_bottom - far_radius)
        far_mask = shape_mask(far_shape, far_c, far_radius, config.resolution)
        hidden = (far_mask & shape_mask(near_shape, near_c, near_radius, config.resolution)).sum() / far_mask.sum()
        miss = max(0.08 - hidden, hidden - 0.3, 0.0)
        if miss < best_miss:
            best, best_miss = (near_c, far_c), miss
        if miss == 0.0:
            break
    return best


def sample_scene(
    config: WorldConfig,
    rng: np.random.Generator,
    *,
    relation: str | None = None,
    objects: tuple[tuple[str, str], tuple[str, str]] | None = None,
    exclude_pairs: Collection[frozenset[str]] = (),
) -> Scene:
    """Draw a random scene whose subject stands in `relation` (default: any of `config.relations`) to its object.

    Args:
        config: the world.
        rng: the source of randomness (`np.random.default_rng(seed)`): the same generator state gives the same
            scene.
        relation: a relation id of `config.relations`, or None for a random one.
        objects: `((colour, shape), (colour, shape))` of subject and object, or None for a random pair (two
            different colours and two different shapes).
        exclude_pairs: object pairs a random pair is never drawn from (held out for evaluation).
    """
    if relation is None:
        relation = config.relations[int(rng.integers(len(config.relations)))]
    elif relation not in config.relations:
        raise ValueError(f"relation {relation!r} is not drawn in this world: expected one of {config.relations}")
    if objects is None:
        objects = pick_objects(config, rng, exclude_pairs)
    (s_color, s_shape), (o_color, o_shape) = objects
    if s_color == o_color or s_shape == o_shape:
        raise ValueError(f"the two objects must differ in colour and in shape, got {objects}")
    res = config.resolution
    if relation in RELATIONS_3D:
        far = rng.uniform(config.min_radius, config.max_radius * 0.85) * res
        near = min(far * rng.uniform(*config.near_scale), 0.26 * res)
        near_shape, far_shape = (s_shape, o_shape) if relation == "in_front_of" else (o_shape, s_shape)
        near_c, far_c = _layout_3d(config, rng, (near_shape, near), (far_shape, far))
        s_center, s_radius, o_center, o_radius = (
            (near_c, near, far_c, far) if relation == "in_front_of" else (far_c, far, near_c, near)
        )
    else:
        s_radius, o_radius = rng.uniform(config.min_radius, config.max_radius, size=2) * res
        subject_first = relation in ("left_of", "above")
        first_r, second_r = (s_radius, o_radius) if subject_first else (o_radius, s_radius)
        (a1, c1), (a2, c2) = _layout_2d(config, rng, first_r, second_r)
        horizontal = relation in ("left_of", "right_of")
        first_c, second_c = ((a1, c1), (a2, c2)) if horizontal else ((c1, a1), (c2, a2))
        s_center, o_center = (first_c, second_c) if subject_first else (second_c, first_c)
    subject = WorldObject(s_color, s_shape, tuple(float(v) for v in s_center), float(s_radius))
    obj = WorldObject(o_color, o_shape, tuple(float(v) for v in o_center), float(o_radius))
    return Scene(subject, relation, obj)
