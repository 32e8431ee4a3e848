"""The pair rules of the "esplora" protocol: each returns, per (A instance, B instance) pair, a verdict
(1 holds, -1 violated, 0 ambiguous) and a strength (larger = more support for the relation).
"""

from __future__ import annotations

import numpy as np

from ..boxes import intersection_area, normalized_offsets, sizes

__all__ = [
    "depth_pair",
    "depth_scale",
    "depth_verdict",
    "ground_occlusion_pairs",
    "near_pairs",
    "planar_pairs",
    "region_median",
    "shares_pixels",
]

HOLDS, AMBIGUOUS, VIOLATED = 1, 0, -1

# relation -> (axis, sign): the normalised offset u of A from B along `axis`, times `sign`, is positive when
# the relation's direction is right (x grows rightwards, y downwards).
PLANAR = {"left_of": (0, -1.0), "right_of": (0, 1.0), "above": (1, -1.0), "below": (1, 1.0)}


def planar_pairs(box_a: np.ndarray, box_b: np.ndarray, axis: np.ndarray, sign: np.ndarray, margin: float):
    """Left/right/above/below from margin-normalised centroid offsets, dominant axis aware.

    With `u` the offset of A from B divided by the summed half-extents (|u| > 1: projections disjoint), `s` its
    component along the relation's direction and `p` the perpendicular |component|:
    holds if `s > margin`, neither centre lies inside the other box's extent along the axis, and `s >= p`;
    violated if the same holds on the wrong side, or `p > margin` and `p > s` (separated mainly along the other
    axis); ambiguous otherwise (the boxes overlap too much on both axes).
    `axis[k]` (0 = x, 1 = y) and `sign[k]` (+1 / -1) give pair k's relation as in `PLANAR`.
    """
    u = normalized_offsets(box_a, box_b)
    rows = np.arange(len(axis))
    s = u[rows, axis] * sign
    p = np.abs(u[rows, 1 - axis])
    # Neither centre may lie inside the other box's extent along the axis: a small object over one end of a large
    # one (a cat on a sofa's arm) is on it, not beside it. In units of u that is max(h) / (hA + hB) >= 0.5.
    half_a, half_b = sizes(box_a)[rows, axis] / 2, sizes(box_b)[rows, axis] / 2
    inside = np.maximum(half_a, half_b) / np.maximum(half_a + half_b, 1e-9)
    along = np.maximum(margin, inside)
    verdict = np.where(
        (s > along) & (s >= p), HOLDS, np.where((s < -along) | ((p > margin) & (p > s)), VIOLATED, AMBIGUOUS)
    )
    return verdict.astype(np.int8), s


def near_pairs(box_a: np.ndarray, box_b: np.ndarray, near: float, far: float):
    """next_to: the separation `max(|u_x|, |u_y|)` (1 = touching) holds up to `near`, is violated beyond `far`."""
    separation = np.abs(normalized_offsets(box_a, box_b)).max(axis=1)
    verdict = np.where(separation <= near, HOLDS, np.where(separation > far, VIOLATED, AMBIGUOUS))
    return verdict.astype(np.int8), -separation


def ground_occlusion_pairs(
    box_a: np.ndarray, box_b: np.ndarray, front: np.ndarray, ground_margin: float, area_ratio: float
):
    """in_front_of / behind without depth, from two weak cues (`front[k]`: True for in_front_of, False behind).

    Ground contact: on a common ground plane the box whose bottom edge is lower is nearer; the bottom-edge
    difference is divided by the mean box height and must exceed `ground_margin`. Occlusion: when the boxes
    overlap, the clearly larger one (area ratio above `area_ratio`) is taken to be in front. Cues that disagree, or
    no cue, give ambiguous.
    """
    height_a, height_b = sizes(box_a)[:, 1], sizes(box_b)[:, 1]
    ground = (box_a[:, 3] - box_b[:, 3]) / np.maximum((height_a + height_b) / 2, 1e-9)
    ground_vote = np.where(ground > ground_margin, 1, np.where(ground < -ground_margin, -1, 0))
    area_a = np.prod(sizes(box_a), axis=1)
    area_b = np.prod(sizes(box_b), axis=1)
    overlap = intersection_area(box_a, box_b) > 0
    occlusion_vote = np.where(
        overlap & (area_a > area_ratio * area_b), 1, np.where(overlap & (area_b > area_ratio * area_a), -1, 0)
    )
    conflict = (ground_vote != 0) & (occlusion_vote != 0) & (ground_vote != occlusion_vote)
    nearer = np.where(conflict, 0, np.where(ground_vote != 0, ground_vote, occlusion_vote))  # +1: A nearer
    direction = np.where(front, 1, -1)
    return (nearer * direction).astype(np.int8), ground * direction


def depth_scale(depth: np.ndarray, percentiles: tuple[float, float]) -> float:
    """The map's robust depth range (the spread between two percentiles; the full range if that is 0)."""
    low, high = np.percentile(depth, percentiles)
    scale = float(high - low)
    return scale if scale > 0 else float(depth.max() - depth.min())


def _pixel_span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """The pixels a box edge range touches, clipped to the map (empty for a zero-width or outside box); mirroring
    the box mirrors the span exactly."""
    return min(max(int(np.floor(lo)), 0), size), min(max(int(np.ceil(hi)), 0), size)


def _spans(box: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    height, width = shape
    x0, x1 = _pixel_span(box[0], box[2], width)
    y0, y1 = _pixel_span(box[1], box[3], height)
    return x0, x1, y0, y1


def shares_pixels(box: np.ndarray, other: np.ndarray, shape: tuple[int, int]) -> bool:
    """Do the two boxes' pixel regions in a map of `shape` intersect?"""
    ax0, ax1, ay0, ay1 = _spans(box, shape)
    bx0, bx1, by0, by1 = _spans(other, shape)
    return max(ax0, bx0) < min(ax1, bx1) and max(ay0, by0) < min(ay1, by1)


def region_median(depth: np.ndarray, box: np.ndarray, other: np.ndarray, mask: np.ndarray | None) -> float | None:
    """Median depth of an object: inside its mask if it has a non-empty one, else inside its box minus the other
    object's box (the overlap belongs to whichever is in front), or the whole box when nothing is left. None when
    the box has no pixel in the map."""
    if mask is not None and mask.any():
        return float(np.median(depth[mask]))
    x0, x1, y0, y1 = _spans(box, depth.shape)
    region = depth[y0:y1, x0:x1]
    if region.size == 0:
        return None
    if not shares_pixels(box, other, depth.shape):
        return float(np.median(region))
    keep = np.ones(region.shape, dtype=bool)
    ox0, ox1, oy0, oy1 = _spans(other, depth.shape)
    keep[max(oy0 - y0, 0) : max(oy1 - y0, 0), max(ox0 - x0, 0) : max(ox1 - x0, 0)] = False
    return float(np.median(region[keep] if keep.any() else region))


def depth_verdict(median_a, median_b, scale: float, front: bool, depth_margin: float):
    """One pair's verdict from the two objects' median depths (larger = nearer): the difference over the map's
    robust range must exceed `depth_margin` in the relation's direction. Returns (verdict, strength or None when
    a box has no pixel in the map)."""
    if median_a is None or median_b is None:
        return AMBIGUOUS, None
    strength = (median_a - median_b) / scale * (1 if front else -1)
    verdict = HOLDS if strength > depth_margin else VIOLATED if strength < -depth_margin else AMBIGUOUS
    return verdict, strength


def depth_pair(depth, scale, box_a, box_b, mask_a, mask_b, front: bool, depth_margin: float):
    """One pair's verdict straight from the map: `depth_verdict` of the two `region_median`s."""
    median_a = region_median(depth, box_a, box_b, mask_a)
    median_b = region_median(depth, box_b, box_a, mask_b)
    return depth_verdict(median_a, median_b, scale, front, depth_margin)
