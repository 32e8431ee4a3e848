"""The entry points: `score_image` for one image, `score_images` for a batch (vectorised across images)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..relations import SpatialPrompt
from .context import ScoringContext
from .protocols import get_protocol
from .types import Detection, ImageScore

__all__ = ["score_image", "score_images"]


def score_images(
    prompts: Sequence[str | SpatialPrompt],
    detections: Sequence[Sequence[dict | Detection]],
    *,
    protocol: str = "esplora",
    depths: Sequence[np.ndarray | None] | None = None,
    image_sizes: Sequence[tuple[int, int] | None] | None = None,
    subject_label: str | Sequence[str | None] | None = None,
    object_label: str | Sequence[str | None] | None = None,
    **options: Any,
) -> list[ImageScore]:
    """Score many images at once: image i shows `prompts[i]` and has `detections[i]`.

    Same arguments as `score_image`, one entry per image (`depths[i]`, `image_sizes[i]` may be None;
    `subject_label` / `object_label` are one label for every image or a sequence with one per image). The work is
    vectorised across images, so large batches cost a few microseconds per image.

    Examples:

    ```py
    >>> from diffusers_spatial.geometry import score_images
    >>> dets = [[{"label": "cat", "score": 0.9, "box": [0, 0, 10, 10]}, {"label": "dog", "score": 0.8, "box": [50, 0, 60, 10]}]]
    >>> [s.correct for s in score_images(["a cat left of a dog", "a cat right of a dog"], dets * 2, protocol="visor")]
    [True, False]

    ```
    """
    spec = get_protocol(protocol)
    config = spec.make_config(options)
    context = ScoringContext.build(
        prompts,
        detections,
        depths=depths,
        image_sizes=image_sizes,
        subject_label=subject_label,
        object_label=object_label,
    )
    verdicts = spec.score(context, config)
    scores = verdicts.score.astype(np.float64)
    if not np.isfinite(scores).all():  # a protocol bug, never a user's input: fail loudly rather than emit NaN
        raise RuntimeError(f"protocol {protocol!r} produced a non-finite score: {scores[~np.isfinite(scores)][:3]}")
    results = []
    codes = verdicts.correct.tolist()
    found = verdicts.objects_found.tolist()
    for i, (prompt, text, value, code, ok, details) in enumerate(
        zip(context.prompts, context.texts, scores.tolist(), codes, found, verdicts.details)
    ):
        details["subject_label"] = context.subject_targets[i]
        details["object_label"] = context.object_targets[i]
        results.append(
            ImageScore(
                protocol=spec.name,
                prompt=text,
                relation=prompt.relation,
                subject=prompt.subject_noun,
                object=prompt.object_noun,
                score=value,
                objects_found=ok,
                correct=None if code < 0 else code == 1,
                details=details,
            )
        )
    return results


def score_image(
    prompt: str | SpatialPrompt,
    detections: Sequence[dict | Detection],
    *,
    protocol: str = "esplora",
    depth: np.ndarray | None = None,
    image_size: tuple[int, int] | None = None,
    **options: Any,
) -> ImageScore:
    """Judge whether one image honours its spatial prompt, under one protocol.

    Args:
        prompt: the prompt text ("a photo of a cat to the left of a dog") or a parsed `SpatialPrompt`.
        detections: the image's detections: `{"label": str, "score": float, "box": [x1, y1, x2, y2]}` dicts (pixels,
            origin top-left, y down; optional `"mask"`: H x W bool) or `Detection`s. May be empty.
        protocol: "esplora" (ours, default), "visor", "t2i_compbench_2d", "t2i_compbench_3d" or "geneval".
        depth: H x W relative inverse depth (larger = nearer), for in_front_of / behind (required by
            "t2i_compbench_3d" for its 3D words; "esplora" falls back to geometric cues without it).
        image_size: `(width, height)` of the image (PIL's `Image.size`); the depth map must then be
            `(height, width)`.
        **options: `subject_label` / `object_label` (the detector class names to look for instead of the prompt's
            nouns, e.g. "dog" for "puppy"), and the protocol's own options (its config dataclass fields:
            `score_threshold`, margins, `corrected_crop`, ...).

    Returns:
        An `ImageScore`: `score`, `objects_found`, `correct` (None = undetermined, with `details["reason"]`), and
        `details`.

    Raises:
        ValueError: naming the problem, for an unreadable prompt (empty, no relation, two relations), a malformed
            detection (missing key, non-string label, negative/NaN score, box with x2 < x1 or a non-finite
            coordinate), a depth map of the wrong shape or with NaN, an unknown protocol or option.

    Examples:

    ```py
    >>> from diffusers_spatial.geometry import score_image
    >>> dets = [{"label": "cat", "score": 0.9, "box": [10, 40, 90, 120]}, {"label": "dog", "score": 0.8, "box": [200, 30, 300, 130]}]
    >>> s = score_image("a photo of a cat to the left of a dog", dets, protocol="visor")
    >>> s.correct, s.score, s.objects_found
    (True, 1.0, True)
    >>> score_image("a photo of a cat to the left of a dog", dets).correct  # esplora: boxes clearly apart
    True
    >>> score_image("a cat to the left of a dog", dets[:1]).details["reason"]
    "not detected (score >= 0.3): ['dog']"

    ```
    """
    if isinstance(detections, (str, bytes, dict, Detection)) or not isinstance(detections, Sequence):
        raise ValueError(f"detections must be a list of detections, got {type(detections).__name__}")
    return score_images(
        [prompt],
        [detections],
        protocol=protocol,
        depths=[depth],
        image_sizes=[image_size],
        **options,
    )[0]
