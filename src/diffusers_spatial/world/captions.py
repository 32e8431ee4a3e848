"""Captions of world scenes in the two regimes, and the world's samples: an image, its caption and its truth.

`caption_scene(scene, regime, rng)` describes a scene as a caption source would:

- **LAION-like** (`config.LAION_LIKE`): most captions only list the objects ("a red circle and a blue square"),
  naming them in reading order (left to right, top to bottom, near to far) most of the time; a minority state a
  relation, and some of those state it mirrored ("left" for "right"). A model trained on such captions learns
  what to draw, a weak sense of where, and the biases of the captions (the first-named object goes left / up).
- **verified** (`config.VERIFIED`): every caption states the true relation, and both object orders ("A left of B",
  "B right of A") are equally frequent: the data ESPLoRA trains on.

`world_sample(config, regime, seed, index)` is a pure function of its arguments, so a dataset of any size is
random-access, reproducible and shardable without storing anything.

Examples:

```py
>>> from diffusers_spatial.world.captions import world_sample
>>> from diffusers_spatial.world.config import VERIFIED, WorldConfig
>>> sample = world_sample(WorldConfig(), VERIFIED, seed=0, index=3)
>>> sample.caption.text == sample.caption.prompt(), sample.caption.true
(True, True)
>>> sample.image.shape
(32, 32, 3)

```
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from ..relations import CANONICAL_PHRASE, CONVERSE
from .config import CaptionRegime, WorldConfig
from .scene import Scene, WorldObject, render_scene, sample_scene, visible_masks

__all__ = ["WorldCaption", "WorldSample", "caption_scene", "reading_order", "world_prompt", "world_sample"]


def _with_article(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def world_prompt(subject: str, relation: str, obj: str) -> str:
    """ "a red circle to the left of a blue square" from ("red circle", "left_of", "blue square")."""
    return f"{_with_article(subject)} {CANONICAL_PHRASE[relation]} {_with_article(obj)}"


@dataclass(frozen=True)
class WorldCaption:
    """A caption and what it claims: `relation` is None for a caption that only lists the objects.

    Args:
        text: the caption.
        first, second: the objects in the order the caption names them.
        relation: the relation the caption states between `first` and `second`, or None.
        true: whether the stated relation holds in the image (True for object lists).
    """

    text: str
    first: WorldObject
    second: WorldObject
    relation: str | None
    true: bool

    def prompt(self) -> str | None:
        """The caption as a spatial prompt (None for object lists)."""
        if self.relation is None:
            return None
        return world_prompt(self.first.name, self.relation, self.second.name)


def reading_order(scene: Scene) -> Scene:
    """The scene stated with the object a reader meets first as subject (left, top, or nearer)."""
    return scene if scene.relation in ("left_of", "above", "in_front_of") else scene.converse()


def caption_scene(scene: Scene, regime: CaptionRegime, rng: np.random.Generator) -> WorldCaption:
    """Describe `scene` as a caption source of `regime` would (see the module docstring)."""
    fact = reading_order(scene)
    if rng.random() >= regime.p_reading_order:
        fact = fact.converse()
    if rng.random() >= regime.p_relation_caption:
        text = f"{_with_article(fact.subject.name)} and {_with_article(fact.object.name)}"
        return WorldCaption(text, fact.subject, fact.object, None, True)
    mirrored = rng.random() < regime.p_mirror_error
    relation = CONVERSE[fact.relation] if mirrored else fact.relation
    text = world_prompt(fact.subject.name, relation, fact.object.name)
    return WorldCaption(text, fact.subject, fact.object, relation, not mirrored)


@dataclass(frozen=True)
class WorldSample:
    """One sample of the world: the rendered image, its caption, and the scene (the ground truth)."""

    image: np.ndarray
    caption: WorldCaption
    scene: Scene
    seed: int
    index: int

    def boxes(self, resolution: int) -> list[dict]:
        """Ground-truth boxes `{"label", "score", "box"}` of the visible pixels, subject first, labels = nouns."""
        out = []
        for obj, mask in zip(self.scene.objects, visible_masks(self.scene, resolution)):
            ys, xs = np.nonzero(mask)
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
            out.append({"label": obj.shape, "score": 1.0, "box": box})
        return out


def world_sample(
    config: WorldConfig,
    regime: CaptionRegime,
    seed: int,
    index: int,
    *,
    exclude_pairs: Collection[frozenset[str]] = (),
) -> WorldSample:
    """Sample `index` of the world dataset `(config, regime, seed)`: a pure function of its arguments.

    A `balanced` regime cycles through `config.relations` (index modulo their number), so any run of consecutive
    indices is relation-balanced; otherwise the layout is drawn at random.

    Args:
        exclude_pairs: object pairs (`frozenset({"red circle", "blue square"})`) never drawn (see
            `scene.pick_objects`): keep them for held-out evaluation.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    relation = config.relations[index % len(config.relations)] if regime.balanced else None
    scene = sample_scene(config, rng, relation=relation, exclude_pairs=exclude_pairs)
    caption = caption_scene(scene, regime, rng)
    return WorldSample(render_scene(scene, config), caption, scene, int(seed), int(index))
