"""The settings of the synthetic spatial world: palette, shapes, sizes, layouts and the two caption regimes.

The world is the proving ground of the method (docs/world.md): small images of two flat-coloured shapes whose
positions, and therefore every spatial fact, are known exactly. `WorldConfig` says what the world looks like;
`CaptionRegime` says how its images are described (LAION-like noisy alt-text, or ESPLoRA-verified relations).
Both are frozen dataclasses with `to_dict` / `from_dict`, so the exact world a model was trained in is saved beside
it (`world_config.json`) and the perception backend that judges it reads the same palette.

Examples:

```py
>>> from diffusers_spatial.world.config import WorldConfig, LAION_LIKE, VERIFIED
>>> config = WorldConfig()
>>> config.resolution, config.color_names, config.shapes
(32, ('red', 'green', 'blue', 'yellow'), ('circle', 'square', 'triangle'))
>>> WorldConfig.from_dict(config.to_dict()) == config
True
>>> LAION_LIKE.p_relation_caption, VERIFIED.p_relation_caption
(0.35, 1.0)

```
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..relations import RELATIONS_2D, RELATIONS_3D

__all__ = [
    "LAION_LIKE",
    "VERIFIED",
    "WORLD_CONFIG_NAME",
    "CaptionRegime",
    "WorldConfig",
]

WORLD_CONFIG_NAME = "world_config.json"
"""File name of a saved `WorldConfig` (inside a world model's folder)."""

_DEFAULT_COLORS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (220, 40, 40)),
    ("green", (40, 170, 60)),
    ("blue", (40, 80, 220)),
    ("yellow", (230, 200, 30)),
)
_WORLD_RELATIONS = RELATIONS_2D + RELATIONS_3D


def _check_fraction(name: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class WorldConfig:
    """What the world looks like. Sizes are fractions of `resolution`, so one config scales to any image size.

    Args:
        resolution: image side in pixels (square images).
        colors: `(name, (r, g, b))` pairs; the two objects of a scene never share a colour.
        shapes: object nouns, a subset of "circle", "square", "triangle"; the two objects never share a shape, so
            each is named by its noun alone (as the benchmarks' detectors name objects).
        background: background colour.
        min_radius, max_radius: object radius range of 2D scenes (fraction of `resolution`).
        first_span, second_span: where along the relation's axis the centres of the first (left / top) and second
            object fall (fractions of `resolution`): the two thirds of the image, as photographers place two
            subjects. Fixed places make "which goes where" the thing to learn, not where the places are.
        min_separation: smallest centre distance along the axis (fraction of `resolution`), so that "left of" is
            never a matter of a pixel.
        across_span: where the common centre line across the axis falls (fraction of `resolution`).
        near_scale: (min, max) of how much larger the nearer object of a 3D scene is drawn: every object has the
            same physical size, so apparent size (with the ground contact lower in the image) is the depth cue.
        relations: the relation ids scenes are drawn for (2D and 3D ids of `relations`; not `next_to`).
    """

    resolution: int = 32
    colors: tuple[tuple[str, tuple[int, int, int]], ...] = _DEFAULT_COLORS
    shapes: tuple[str, ...] = ("circle", "square", "triangle")
    background: tuple[int, int, int] = (245, 245, 245)
    min_radius: float = 0.11
    max_radius: float = 0.155
    first_span: tuple[float, float] = (0.19, 0.41)
    second_span: tuple[float, float] = (0.59, 0.81)
    min_separation: float = 0.34
    across_span: tuple[float, float] = (0.25, 0.75)
    near_scale: tuple[float, float] = (1.45, 1.75)
    relations: tuple[str, ...] = RELATIONS_2D

    def __post_init__(self):
        # Tuples all the way down, so that configs read from JSON compare equal and stay hashable.
        object.__setattr__(self, "colors", tuple((str(n), tuple(int(c) for c in rgb)) for n, rgb in self.colors))
        for name in ("shapes", "relations", "background", "near_scale", "first_span", "second_span", "across_span"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution < 16:
            raise ValueError(f"resolution must be an integer >= 16, got {self.resolution!r}")
        if len(self.colors) < 2 or len(set(self.color_names)) != len(self.colors):
            raise ValueError(f"colors must name at least two distinct colours, got {self.color_names}")
        for name, rgb in self.colors + (("background", self.background),):
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError(f"colour {name!r} must be three integers in [0, 255], got {rgb}")
        if len(self.shapes) < 2 or len(set(self.shapes)) != len(self.shapes):
            raise ValueError(f"shapes must name at least two distinct shapes, got {self.shapes}")
        unknown = set(self.shapes) - {"circle", "square", "triangle"}
        if unknown:
            raise ValueError(f"unknown shapes {sorted(unknown)}: the world draws circle, square and triangle")
        _check_fraction("min_radius", self.min_radius, low=0.03, high=0.2)
        _check_fraction("max_radius", self.max_radius, low=self.min_radius, high=0.2)
        for name in ("first_span", "second_span", "across_span"):
            span = getattr(self, name)
            if (
                len(span) != 2
                or not all(isinstance(v, (int, float)) for v in span)
                or not 0 <= span[0] <= span[1] <= 1
            ):
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high <= 1, got {span}")
        if self.first_span[1] > self.second_span[0]:
            raise ValueError(f"first_span {self.first_span} must lie before second_span {self.second_span}")
        _check_fraction("min_separation", self.min_separation, low=0.0, high=0.8)
        if len(self.near_scale) != 2 or not (1.2 <= self.near_scale[0] <= self.near_scale[1] <= 2.0):
            raise ValueError(f"near_scale must be (min, max) with 1.2 <= min <= max <= 2.0, got {self.near_scale}")
        bad = [r for r in self.relations if r not in _WORLD_RELATIONS]
        if bad or not self.relations:
            raise ValueError(f"relations must be a non-empty subset of {_WORLD_RELATIONS}, got {self.relations}")
        # The largest 2D layout must fit: two objects of max_radius, min_separation apart, inside the image.
        if 2 * self.max_radius + self.min_separation > 0.95:
            raise ValueError("max_radius and min_separation leave no room for two objects side by side")

    @property
    def color_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.colors)

    @property
    def palette(self) -> dict[str, tuple[int, int, int]]:
        return dict(self.colors)

    @property
    def object_names(self) -> tuple[str, ...]:
        """Every object's name, "<colour> <shape>", colour-major."""
        return tuple(f"{c} {s}" for c in self.color_names for s in self.shapes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["colors"] = {name: list(rgb) for name, rgb in self.colors}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown world config keys {sorted(unknown)}; expected some of {sorted(known)}")
        data = dict(data)
        if isinstance(data.get("colors"), dict):
            data["colors"] = tuple(data["colors"].items())
        return cls(**data)

    def save(self, directory: str | os.PathLike) -> str:
        """Write `world_config.json` into `directory`; returns its path."""
        path = os.path.join(directory, WORLD_CONFIG_NAME)
        os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> WorldConfig:
        """Read a `world_config.json` (or the folder holding one); errors name the file."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, WORLD_CONFIG_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"no world config at {path!r}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path!r} is not a world config (invalid JSON: {e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path!r} is not a world config (expected a JSON object)")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path!r}: {e}") from None


@dataclass(frozen=True)
class CaptionRegime:
    """How a world image is described.

    Args:
        name: "laion_like" or "verified" (or your own).
        p_relation_caption: share of captions that state a relation; the rest say "A and B".
        p_reading_order: share of captions that name the objects in reading order (left to right, top to bottom,
            near to far); web alt-text mostly does.
        p_mirror_error: share of relation captions whose relation is mirrored (left/right, above/below or
            in front/behind confused): captioners and caption models make exactly this error.
        balanced: draw the scenes' relations in turn, so that any run of consecutive samples is relation-balanced
            (else at random).
    """

    name: str
    p_relation_caption: float
    p_reading_order: float
    p_mirror_error: float
    balanced: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        for name in ("p_relation_caption", "p_reading_order", "p_mirror_error"):
            _check_fraction(name, getattr(self, name))
        if not isinstance(self.balanced, bool):
            raise ValueError(f"balanced must be a bool, got {self.balanced!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LAION_LIKE = CaptionRegime("laion_like", p_relation_caption=0.35, p_reading_order=0.8, p_mirror_error=0.25)
"""Web alt-text: mostly "A and B" in reading order; a third of captions state a relation, a quarter of those
mirrored."""

VERIFIED = CaptionRegime("verified", p_relation_caption=1.0, p_reading_order=0.5, p_mirror_error=0.0, balanced=True)
"""ESPLoRA's curated data: every caption a true relation, both object orders equally often."""
