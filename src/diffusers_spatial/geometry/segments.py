"""Per-image reductions over a flat array of detections (or pairs) grouped by image.

A batch stores all detections of all images in one array, image by image; `offsets[i]:offsets[i + 1]` is image
i's slice and `image_index[k]` the image of element k. These helpers reduce such arrays per image without a
Python loop over images.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "first_true",
    "gather",
    "last_true_before",
    "pair_indices",
    "segment_count",
    "segment_max",
    "segment_min",
    "top_k",
    "top_one",
]


def segment_count(flags: np.ndarray, image_index: np.ndarray, n_images: int) -> np.ndarray:
    """Number of True flags per image."""
    return np.bincount(image_index[flags], minlength=n_images)


def _segment_reduce(ufunc, values: np.ndarray, offsets: np.ndarray, fill: float) -> np.ndarray:
    out = np.full(len(offsets) - 1, fill, dtype=np.float64)
    starts = offsets[:-1]
    nonempty = starts < offsets[1:]
    if values.size:
        # Consecutive non-empty starts delimit exactly one image each: empty images have zero length.
        out[nonempty] = ufunc.reduceat(values, starts[nonempty])
    return out


def segment_min(values: np.ndarray, flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-image minimum of `values` where `flags`; +inf for an image with no flagged element."""
    return _segment_reduce(np.minimum, np.where(flags, values, np.inf), offsets, np.inf)


def segment_max(values: np.ndarray, flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-image maximum of `values` where `flags`; -inf for an image with no flagged element."""
    return _segment_reduce(np.maximum, np.where(flags, values, -np.inf), offsets, -np.inf)


def first_true(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Flat index of each image's first True flag (in the given order), or -1 when it has none."""
    n = flags.size
    first = segment_min(np.arange(n, dtype=np.float64), flags, offsets)
    return np.where(np.isfinite(first), first, -1).astype(np.int64)


def last_true_before(flags: np.ndarray, offsets: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Flat index of each image's last True flag at or before flat index `stop[i]`, or -1 when none."""
    n = flags.size
    image_index = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    allowed = flags & (np.arange(n) <= stop[image_index]) if n else flags
    last = segment_max(np.arange(n, dtype=np.float64), allowed, offsets)
    return np.where(np.isfinite(last), last, -1).astype(np.int64)


def top_one(flags: np.ndarray, scores: np.ndarray, boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Flat index of each image's most confident flagged element, or -1 when it has none.

    Ties on the score are broken by the smaller box `(x1, y1, x2, y2)`, so the choice does not depend on the
    order the detections come in.
    """
    n_images = len(offsets) - 1
    image_index = np.repeat(np.arange(n_images), np.diff(offsets))
    best_score = segment_max(scores, flags, offsets)
    candidates = flags & (scores == best_score[image_index]) if flags.size else flags
    best = first_true(candidates, offsets)
    tied_images = segment_count(candidates, image_index, n_images) > 1
    if tied_images.any():  # rare: sort only the tied candidates by box
        tied = np.flatnonzero(candidates & tied_images[image_index])
        b = boxes[tied]
        ranked = tied[np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], image_index[tied]))]
        images = image_index[ranked]
        head = np.ones(ranked.size, dtype=bool)
        head[1:] = images[1:] != images[:-1]
        best[images[head]] = ranked[head]
    return best


def top_k(flags: np.ndarray, scores: np.ndarray, image_index: np.ndarray, k: int) -> np.ndarray:
    """`flags` with at most `k` True per image: each image's `k` highest-scoring flagged elements.

    Ties on the score keep the earlier element. One sort of the flagged elements, no Python loop.
    """
    idx = np.flatnonzero(flags)
    out = np.zeros(flags.shape, dtype=bool)
    if idx.size == 0:
        return out
    ranked = idx[np.lexsort((idx, -scores[idx], image_index[idx]))]
    images = image_index[ranked]
    head = np.ones(ranked.size, dtype=bool)
    head[1:] = images[1:] != images[:-1]
    starts = np.flatnonzero(head)
    rank = np.arange(ranked.size) - np.repeat(starts, np.diff(np.append(starts, ranked.size)))
    out[ranked[rank < k]] = True
    return out


def pair_indices(a_flags: np.ndarray, b_flags: np.ndarray, image_index: np.ndarray, n_images: int):
    """Every (a, b) pair of flat indices within the same image with `a_flags[a]` and `b_flags[b]`.

    Returns `(a, b, image)` arrays, grouped by image (image-major). Built with `np.repeat`, no Python loop.
    """
    a_idx = np.flatnonzero(a_flags)
    b_idx = np.flatnonzero(b_flags)
    nb = np.bincount(image_index[b_idx], minlength=n_images)
    b_start = np.concatenate(([0], np.cumsum(nb)[:-1]))
    a_image = image_index[a_idx]
    reps = nb[a_image]
    total = int(reps.sum())
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    pa = np.repeat(a_idx, reps)
    block_start = np.repeat(np.cumsum(reps) - reps, reps)
    within = np.arange(total) - block_start
    pb = b_idx[np.repeat(b_start[a_image], reps) + within]
    return pa, pb, image_index[pa]


def gather(values: np.ndarray, index: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """`values[index]` where `index >= 0`, `fill` where it is -1 (safe on an empty `values`)."""
    out = np.full(index.shape, fill, dtype=np.float64)
    present = index >= 0
    out[present] = values[index[present]]
    return out
