"""Benchmark-level figures: each protocol's own, plus the figures every protocol shares (and the bias table)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from .bias import as_image_scores, bias_table
from .protocols import get_protocol
from .types import ImageScore

__all__ = ["aggregate"]


def aggregate(
    protocol: str,
    image_scores: Iterable[ImageScore | Mapping[str, Any]],
    prompt_ids: Sequence[Hashable] | None = None,
) -> dict:
    """Summarise a protocol's image scores into its benchmark figures and the shared figures.

    Protocol figures (percent for VISOR, fractions elsewhere; None when a denominator is zero):
    - "visor": `OA`, `VISOR_cond`, `VISOR_uncond`, `VISOR_1` .. `VISOR_4` (prompts grouped by `prompt_ids`).
    - "t2i_compbench_2d" / "t2i_compbench_3d": `score`, the mean image score.
    - "geneval": `accuracy` (correct images / images) and `prompt_accuracy`.
    - "esplora": `accuracy` (correct / images), `determined_accuracy`, `coverage`, `hedging_rate`, `low_confidence`.

    Shared figures: `n_images`, `undetermined`, `object_accuracy` (`subject`, `object`, `both`: fractions of
    images), `per_relation`, `per_order`, `counterfactual` (from the bias table) and `bias_table`.

    Args:
        protocol: the protocol that produced `image_scores` (each score's `protocol` must match).
        image_scores: `ImageScore`s or their `to_dict()` forms.
        prompt_ids: one id per image grouping images of the same prompt (default: the prompt text).

    Examples:

    ```py
    >>> from diffusers_spatial.geometry import aggregate, score_images
    >>> cat, dog = {"label": "cat", "score": 0.9, "box": [0, 0, 10, 10]}, {"label": "dog", "score": 0.9, "box": [50, 0, 60, 10]}
    >>> scores = score_images(["a cat left of a dog"] * 2, [[cat, dog], [cat]], protocol="visor")
    >>> figures = aggregate("visor", scores)
    >>> figures["OA"], figures["VISOR_cond"], figures["VISOR_uncond"], figures["VISOR_1"], figures["VISOR_2"]
    (50.0, 100.0, 50.0, 100.0, 0.0)

    ```
    """
    spec = get_protocol(protocol)
    scores = as_image_scores(image_scores)
    wrong = sorted({s.protocol for s in scores} - {spec.name})
    if wrong:
        raise ValueError(f"aggregate({protocol!r}, ...) got image scores from other protocol(s): {wrong}")
    if prompt_ids is None:
        prompt_ids = [s.prompt for s in scores]
    else:
        prompt_ids = list(prompt_ids)
        if len(prompt_ids) != len(scores):
            raise ValueError(f"prompt_ids has {len(prompt_ids)} entries for {len(scores)} image scores")
        for pid in prompt_ids:
            if not isinstance(pid, Hashable):
                raise ValueError(f"prompt ids must be hashable (str or int), got {pid!r}")
    table = bias_table(scores)
    n = len(scores)

    def found(s: ImageScore, key: str) -> bool:
        return bool(s.details.get(key, s.objects_found))

    return {
        "protocol": spec.name,
        "n_images": n,
        **spec.figures(scores, prompt_ids),
        "undetermined": table["undetermined"],
        "object_accuracy": {
            "subject": sum(found(s, "subject_found") for s in scores) / n if n else None,
            "object": sum(found(s, "object_found") for s in scores) / n if n else None,
            "both": sum(bool(s.objects_found) for s in scores) / n if n else None,
        },
        "per_relation": table["relations"],
        "per_order": table["orders"],
        "counterfactual": table["counterfactual"],
        "bias_table": table,
    }
