"""Depth map checks shared by the protocols that read depth (relative inverse depth: larger = nearer)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_depth", "check_mask"]


def check_depth(depth, image_size: tuple[int, int] | None, where: str) -> np.ndarray:
    """Return `depth` as a float64 H x W array, or raise ValueError naming the problem.

    The map must be 2-D, non-empty, numeric and finite; when `image_size = (width, height)` is given its shape must
    be `(height, width)`. A constant map is valid here: each protocol decides what it means.
    """
    try:
        array = np.asarray(depth)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: depth must be an H x W array, got {type(depth).__name__}: {error}") from None
    if array.dtype.kind not in "iuf" or array.ndim != 2 or array.size == 0:
        raise ValueError(
            f"{where}: depth must be a non-empty 2-D numeric H x W array, got dtype {array.dtype} shape {array.shape}"
        )
    if image_size is not None and array.shape != (image_size[1], image_size[0]):
        raise ValueError(
            f"{where}: depth shape {array.shape} does not match image_size (width, height) = {tuple(image_size)}: "
            f"expected ({image_size[1]}, {image_size[0]})"
        )
    array = array.astype(np.float64, copy=False)
    if not (np.isfinite(array.min()) and np.isfinite(array.max())):  # NaN or inf reach min or max: no extra mask
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"{where}: depth has {bad} non-finite value(s) (NaN or inf) out of {array.size}")
    return array


def check_mask(mask, shape: tuple[int, int], where: str) -> np.ndarray:
    """Return an instance mask as a bool array of the depth map's `shape`, or raise ValueError."""
    array = np.asarray(mask)
    if array.shape != tuple(shape):
        raise ValueError(f"{where}: mask shape {array.shape} does not match the depth map's {tuple(shape)}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{where}: mask must be boolean or numeric, got dtype {array.dtype}")
    return array.astype(bool, copy=False)
