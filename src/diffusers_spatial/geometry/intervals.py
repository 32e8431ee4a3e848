"""Confidence intervals for accuracies and for paired changes of accuracy: pure functions, standard library only.

A spatial accuracy is a share of images judged right, so it comes with sampling noise; a claim that a method helps
must say how much of the difference noise could make. Two tools:

- `wilson_interval(correct, n)`: the Wilson score interval of one accuracy (good at small n and near 0 or 1, where
  the textbook normal interval fails);
- `paired_change(fixed, broken, n)`: for two runs judged on the same images (same prompts, same seeds), the change
  of accuracy `(fixed - broken) / n`, its 95% interval (the normal interval of a paired difference of proportions)
  and the exact two-sided McNemar p-value (a binomial test on the discordant pairs).

Examples:

```py
>>> from diffusers_spatial.geometry.intervals import paired_change, wilson_interval
>>> [round(v, 3) for v in wilson_interval(45, 100)]
[0.356, 0.548]
>>> change = paired_change(fixed=30, broken=5, n=200)
>>> change["delta"], [round(v, 3) for v in change["interval"]], change["p_value"] < 1e-4
(0.125, [0.07, 0.18], True)

```
"""

from __future__ import annotations

import math

__all__ = ["Z_95", "paired_change", "wilson_interval"]

Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of the proportion `correct / n` (95% by default); `(0.0, 1.0)` when n is 0."""
    _check_counts(correct=correct, n=n)
    if correct > n:
        raise ValueError(f"correct ({correct}) cannot exceed n ({n})")
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def _binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (the smaller tail, doubled, capped at 1)."""
    if n == 0:
        return 1.0
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_change(fixed: int, broken: int, n: int, z: float = Z_95) -> dict[str, float | tuple[float, float] | None]:
    """The change of accuracy between two runs judged on the same `n` images.

    Args:
        fixed: images wrong in the reference run and right in the other.
        broken: images right in the reference run and wrong in the other.
        n: images judged in both runs (fixed + broken + both right + both wrong).
        z: the normal quantile of the interval (95% by default).

    Returns:
        `delta` ((fixed - broken) / n), `interval` (its confidence interval) and `p_value` (exact McNemar), all None
        when n is 0.
    """
    _check_counts(fixed=fixed, broken=broken, n=n)
    if fixed + broken > n:
        raise ValueError(f"fixed + broken ({fixed + broken}) cannot exceed n ({n})")
    if n == 0:
        return {"delta": None, "interval": None, "p_value": None}
    delta = (fixed - broken) / n
    variance = ((fixed + broken) - (fixed - broken) ** 2 / n) / (n * n)
    half = z * math.sqrt(max(variance, 0.0))
    return {
        "delta": delta,
        "interval": (max(-1.0, delta - half), min(1.0, delta + half)),
        "p_value": _binomial_two_sided(fixed, fixed + broken),
    }
