"""Throughput of the geometric judge: `score_images` (vectorised across images) against a naive per-image,
per-pair pure-Python loop written from the same rules, measured side by side in one run on one core.

Every protocol scores the same synthetic workload (default: 10,000 images with 20 detections each, random boxes
in a 512 x 512 image, COCO labels with each prompt noun drawn 30% of the time). The two implementations must
agree on every verdict and score before any time is reported; the run fails otherwise.

Usage:

    python bench/bench_geometry.py                      # writes bench/results/geometry.md and geometry.json
    python bench/bench_geometry.py --images 2000 --repeats 1
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: no BLAS / OpenMP threads behind numpy

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from diffusers_spatial.geometry import resolve_prompt, score_image, score_images  # noqa: E402
from diffusers_spatial.geometry.labels import normalize_label, t2i_target_noun  # noqa: E402
from diffusers_spatial.geometry.protocols import esplora_rules  # noqa: E402
from diffusers_spatial.geometry.protocols.t2i_compbench import WORDS_2D, WORDS_3D  # noqa: E402
from diffusers_spatial.vocabulary import COCO_CLASSES  # noqa: E402

SIZE = 512
PHRASES = {
    "planar": ["to the left of", "to the right of", "above", "below"],
    "t2i_2d": ["on the left of", "on the right of", "on the top of", "on the bottom of", "next to"],
    "t2i_3d": ["in front of", "behind"],
    "esplora": ["to the left of", "to the right of", "above", "below", "next to", "in front of", "behind"],
}


# ----------------------------------------------------------------------------------------------------------------
# Workload
# ----------------------------------------------------------------------------------------------------------------


def make_workload(n_images: int, n_detections: int, phrases: list[str], seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = COCO_CLASSES[:40]
    prompts, detections = [], []
    for i in range(n_images):
        a, b = rng.choice(len(classes), 2, replace=False)
        prompts.append(f"a photo of a {classes[a]} {phrases[i % len(phrases)]} a {classes[b]}")
        xy = rng.uniform(0, SIZE - 20, (n_detections, 2))
        wh = rng.uniform(10, 200, (n_detections, 2))
        pick = rng.random(n_detections)
        labels = np.where(pick < 0.3, classes[a], np.where(pick < 0.6, classes[b], rng.choice(classes, n_detections)))
        scores = rng.random(n_detections)
        detections.append(
            [
                {
                    "label": str(labels[k]),
                    "score": float(scores[k]),
                    "box": [*map(float, xy[k]), *map(float, xy[k] + wh[k])],
                }
                for k in range(n_detections)
            ]
        )
    return prompts, detections


def make_depths(n_images: int, seed: int = 0) -> list[np.ndarray]:
    """A pool of 16 smooth depth maps, shared by reference (no copy per image)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    pool = [np.sin(3 * xx * rng.random() + 2 * yy * rng.random()) + rng.random() * yy for _ in range(16)]
    return [pool[i % 16] for i in range(n_images)]


# ----------------------------------------------------------------------------------------------------------------
# Naive baselines: one image at a time, lists of dicts, nested loops over box pairs, Python floats.
# ----------------------------------------------------------------------------------------------------------------


def _center(b):
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def naive_visor(prompt, dets, depth):
    p = resolve_prompt(prompt)
    found_a = found_b = holds = False
    for da in dets:  # every ordered pair of detections, labels checked inside the loop
        for db in dets:
            if da["score"] > 0.1 and db["score"] > 0.1:
                is_a = normalize_label(da["label"]) == p.subject_noun
                is_b = normalize_label(db["label"]) == p.object_noun
                found_a, found_b = found_a or is_a, found_b or is_b
                if is_a and is_b:
                    (ax, ay), (bx, by) = _center(da["box"]), _center(db["box"])
                    if p.relation == "left_of":
                        holds = holds or ax - bx < 0
                    elif p.relation == "right_of":
                        holds = holds or ax - bx > 0
                    elif p.relation == "above":
                        holds = holds or ay - by < 0
                    else:
                        holds = holds or ay - by > 0
    correct = found_a and found_b and holds
    return correct, float(correct)


def _t2i_first(dets, target, threshold):
    for d in dets:
        if d["score"] >= threshold and normalize_label(d["label"]) == target:
            return d
    return None


def naive_t2i_2d(prompt, dets, depth):
    p = resolve_prompt(prompt)
    word = next((w for w in WORDS_2D if w in prompt), None)
    a = _t2i_first(dets, t2i_target_noun(p.subject_noun), 0.5)
    b = _t2i_first(dets, t2i_target_noun(p.object_noun), 0.5)
    position = 0.0
    if a and b:
        (ax, ay), (bx, by) = _center(a["box"]), _center(b["box"])
        dx, dy, iou = bx - ax, by - ay, _iou(a["box"], b["box"])
        soft = 1.0 if iou < 0.1 else 0.1 / iou
        if word in ("next to", "on side of", "near"):
            position = 1.0 if abs(dx) < 150 or abs(dy) < 150 else 150 / max(abs(dx), abs(dy))
        else:
            direction = {
                "on the left of": dx > 0 and abs(dx) > abs(dy),
                "on the right of": dx < 0 and abs(dx) > abs(dy),
                "on the top of": dy > 0 and abs(dy) > abs(dx),
                "on the bottom of": dy < 0 and abs(dy) > abs(dx),
            }
            position = soft if direction.get(word, False) else 0.0
        score = 0.25 * a["score"] + 0.25 * b["score"]
        score += position / 2
    else:
        score = 0.25 * a["score"] if a else 0.25 * b["score"] if b else 0.0
    score = 0.0 if score < 0.5 else score
    return (bool(a and b and position > 0 and score > 0) if word else None), score


def naive_t2i_3d(prompt, dets, depth):
    p = resolve_prompt(prompt)
    word = next((w for w in WORDS_3D if w in prompt), None)
    kept = [d for d in dets if d["score"] >= 0.5]
    na, nb = t2i_target_noun(p.subject_noun), t2i_target_noun(p.object_noun)
    ia = ib = None
    for k, d in enumerate(kept):
        label = normalize_label(d["label"])
        if na in label:
            ia = k
        if nb in label:
            ib = k
        if ia is not None and ib is not None:
            break
    if ia is None or ib is None:  # one object at most: its first match
        ia = next((k for k, d in enumerate(kept) if na in normalize_label(d["label"])), None)
        ib = next((k for k, d in enumerate(kept) if nb in normalize_label(d["label"])), None)
    position = 0.0
    if ia is not None and ib is not None:
        low, high = depth.min(), depth.max()
        norm = np.floor(255 * ((depth - low) / (high - low)).astype(np.float32)) / 255
        a, b = kept[ia]["box"], kept[ib]["box"]
        crop_a = norm[int(a[0]) : int(a[2]), int(a[1]) : int(a[3])]
        crop_b = norm[int(b[0]) : int(b[2]), int(b[1]) : int(b[3])]
        if crop_a.size and crop_b.size:
            diff = float(crop_a.mean()) - float(crop_b.mean())
            iou = _iou(a, b)
            right = diff > 0 if word == "in front of" else diff < 0
            position = 0.0 if not right or iou <= 0 else 1.0 if iou > 0.5 else iou / 0.5
        score = 0.25 * kept[ia]["score"] + 0.25 * kept[ib]["score"]
        score += position / 2
    else:
        score = 0.25 * kept[ia]["score"] if ia is not None else 0.25 * kept[ib]["score"] if ib is not None else 0.0
    return bool(ia is not None and ib is not None and position > 0), score


def naive_geneval(prompt, dets, depth):
    p = resolve_prompt(prompt)

    def top(target):
        best = None
        for d in dets:
            if d["score"] > 0.3 and normalize_label(d["label"]) == target:
                key = (-d["score"], *d["box"])
                if best is None or key < best[0]:
                    best = (key, d["box"])
        return best and best[1]

    a, b = top(p.subject_noun), top(p.object_noun)
    if not (a and b):
        return False, 0.0
    (ax, ay), (bx, by) = _center(a), _center(b)
    off = (ax - bx, ay - by)
    dims = ((a[2] - a[0]) + (b[2] - b[0]), (a[3] - a[1]) + (b[3] - b[1]))
    rev = [math.copysign(max(abs(o) - 0.1 * d, 0), o) if o else 0.0 for o, d in zip(off, dims)]
    if all(abs(r) < 1e-3 for r in rev):
        return False, 0.0
    norm = math.hypot(*off)
    dx, dy = rev[0] / norm, rev[1] / norm
    found = {"left_of": dx < -0.5, "right_of": dx > 0.5, "above": dy < -0.5, "below": dy > 0.5}
    return found[p.relation], float(found[p.relation])


_PLANAR = {"left_of": (0, -1.0), "right_of": (0, 1.0), "above": (1, -1.0), "below": (1, 1.0)}


def _naive_pair(relation, a, b, depth, scale):
    ua = [
        ((a[k] + a[k + 2]) / 2 - (b[k] + b[k + 2]) / 2) / max(((a[k + 2] - a[k]) + (b[k + 2] - b[k])) / 2, 1e-9)
        for k in (0, 1)
    ]
    if relation in _PLANAR:
        axis, sign = _PLANAR[relation]
        s, p = ua[axis] * sign, abs(ua[1 - axis])
        half_a, half_b = (a[axis + 2] - a[axis]) / 2, (b[axis + 2] - b[axis]) / 2
        along = max(0.5, max(half_a, half_b) / max(half_a + half_b, 1e-9))  # neither centre inside the other's extent
        return 1 if s > along and s >= p else -1 if s < -along or (p > 0.5 and p > s) else 0
    if relation == "next_to":
        sep = max(abs(ua[0]), abs(ua[1]))
        return 1 if sep <= 2.0 else -1 if sep > 3.0 else 0
    front = relation == "in_front_of"
    if depth is not None:
        return esplora_rules.depth_pair(depth, scale, np.array(a), np.array(b), None, None, front, 0.05)[0]
    ground = (a[3] - b[3]) / max(((a[3] - a[1]) + (b[3] - b[1])) / 2, 1e-9)
    g = 1 if ground > 0.1 else -1 if ground < -0.1 else 0
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    overlap = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1])) > 0
    o = 1 if overlap and area_a > 1.2 * area_b else -1 if overlap and area_b > 1.2 * area_a else 0
    nearer = 0 if g and o and g != o else g or o
    return nearer if front else -nearer


def naive_esplora(prompt, dets, depth):
    p = resolve_prompt(prompt)
    scale = esplora_rules.depth_scale(depth, (5.0, 95.0)) if depth is not None else None
    subjects = [d for d in dets if d["score"] >= 0.3 and normalize_label(d["label"]) == p.subject_noun]
    objects = [d for d in dets if d["score"] >= 0.3 and normalize_label(d["label"]) == p.object_noun]
    dropped, tie = set(), False  # one object under both nouns (IoU >= 0.7): the weaker label goes, a tie abstains
    for da in subjects:
        for db in objects:
            if _iou(da["box"], db["box"]) >= 0.7:
                if da["score"] == db["score"]:
                    tie = True
                else:
                    dropped.add(id(da) if da["score"] < db["score"] else id(db))
    subjects = [d for d in subjects if id(d) not in dropped]
    objects = [d for d in objects if id(d) not in dropped]
    if not (subjects and objects):
        return False, 0.0
    verdicts = [_naive_pair(p.relation, da["box"], db["box"], depth, scale) for da in subjects for db in objects]
    correct = None if tie else False if -1 in verdicts else None if 0 in verdicts else True
    return correct, float(correct is True)


# ----------------------------------------------------------------------------------------------------------------
# Runner
# ----------------------------------------------------------------------------------------------------------------

CASES = [
    # name, protocol, phrases, naive, with depth
    ("visor", "visor", "planar", naive_visor, False),
    ("t2i_compbench_2d", "t2i_compbench_2d", "t2i_2d", naive_t2i_2d, False),
    ("t2i_compbench_3d (depth maps)", "t2i_compbench_3d", "t2i_3d", naive_t2i_3d, True),
    ("geneval", "geneval", "planar", naive_geneval, False),
    ("esplora (2D, next_to, 3D geometric fallback)", "esplora", "esplora", naive_esplora, False),
    ("esplora (3D, depth maps)", "esplora", "t2i_3d", naive_esplora, True),
]


def best_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each function, the functions interleaved in every repeat (so load spikes hit both)."""
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def run_case(name, protocol, phrases, naive, with_depth, n_images, n_detections, repeats):
    prompts, dets = make_workload(n_images, n_detections, PHRASES[phrases])
    depths = make_depths(n_images) if with_depth else [None] * n_images
    for p in set(prompts):  # parse every prompt once up front: both sides then hit the same cache
        resolve_prompt(p)
    runs = {}

    def fast():
        runs["fast"] = score_images(prompts, dets, protocol=protocol, depths=depths)

    def slow():
        runs["slow"] = [naive(p, d, z) for p, d, z in zip(prompts, dets, depths)]

    def one_by_one():  # the public per-image entry point, called in a loop
        runs["single"] = [score_image(p, d, protocol=protocol, depth=z) for p, d, z in zip(prompts, dets, depths)]

    t_fast, t_slow, t_single = best_times([fast, slow, one_by_one], repeats)
    if runs["single"] != runs["fast"]:
        raise SystemExit(f"{name}: score_image and score_images disagree")
    mismatches = [
        (i, (s.correct, s.score), ref)
        for i, (s, ref) in enumerate(zip(runs["fast"], runs["slow"]))
        if s.correct != ref[0] or not math.isclose(s.score, ref[1], abs_tol=1e-12)
    ]
    if mismatches:
        raise SystemExit(f"{name}: {len(mismatches)} verdicts differ from the naive loop, e.g. {mismatches[:3]}")
    fast_scores = runs["fast"]
    return {
        "case": name,
        "protocol": protocol,
        "images": n_images,
        "detections_per_image": n_detections,
        "vectorised_s": t_fast,
        "naive_s": t_slow,
        "vectorised_images_per_s": n_images / t_fast,
        "naive_images_per_s": n_images / t_slow,
        "score_image_loop_s": t_single,
        "speedup": t_slow / t_fast,
        "correct": sum(1 for s in fast_scores if s.correct),
        "undetermined": sum(1 for s in fast_scores if s.correct is None),
        "agreement": f"{n_images}/{n_images}",
    }


def write_results(rows: list[dict], args, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "images": args.images,
        "depth_images": args.depth_images,
        "detections_per_image": args.detections,
        "repeats": args.repeats,
        "depth_repeats": args.depth_repeats,
    }
    (out / "geometry.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Geometric judge throughput",
        "",
        f"`python bench/bench_geometry.py --images {args.images} --detections {args.detections} --repeats {args.repeats}"
        f" --depth-images {args.depth_images} --depth-repeats {args.depth_repeats}`"
        f" (one process, OMP_NUM_THREADS=1; Python {meta['python']}, numpy {meta['numpy']}, {meta['cpus']} CPUs shared,"
        f" 1-min load {meta['load_average_1min']:.1f} at the end of the run). Times are the best of the repeats; both"
        " sides ran in the same process, one after the other, on the same inputs, and agreed on every verdict.",
        "",
        "| case | images x detections | score_images (s) | images/s | naive loop (s) | images/s | speed-up |"
        " score_image loop (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['images']:,} x {r['detections_per_image']} | {r['vectorised_s']:.3f} | "
            f"{r['vectorised_images_per_s']:,.0f} | {r['naive_s']:.3f} | {r['naive_images_per_s']:,.0f} | "
            f"{r['speedup']:.1f}x | {r['score_image_loop_s']:.3f} |"
        )
    lines += [
        "",
        "The naive loop is the same rules written the obvious way: one image at a time, Python floats, no input",
        "validation, no details. For the pair rules (VISOR's any pair, esplora's every pair) it is a nested loop over",
        "all detection pairs; `score_images` replaces that by per-image numpy reductions (`min`/`max` for VISOR, all",
        "instance pairs at once for esplora). T2I-CompBench and GenEval read one box per noun (first / most",
        "confident): their naive loop is a single early-exit scan, and the batch path's cost there is what the",
        "baseline skips -- validating every detection, building JSON-ready details and `ImageScore` objects -- so",
        "the ratio is below 1 while 10,000 images still take well under a second. Rows with depth maps read pixels per",
        "image on both sides (crop means / medians are numpy in the baseline too, 512 x 512 maps).",
        "The last column calls the public per-image `score_image` in a loop (same verdicts): the batch entry point",
        "amortises validation and array set-up over the whole batch.",
        "",
    ]
    (out / "geometry.md").write_text("\n".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--detections", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--depth-images", type=int, default=1_000, help="images in the rows with depth maps")
    parser.add_argument("--depth-repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    rows = []
    for case in CASES:
        with_depth = case[-1]
        n_images = args.depth_images if with_depth else args.images
        row = run_case(*case, n_images, args.detections, args.depth_repeats if with_depth else args.repeats)
        print(
            f"{row['case']:<48} {row['vectorised_s']:.3f}s ({row['vectorised_images_per_s']:,.0f} img/s)  "
            f"naive {row['naive_s']:.3f}s  x{row['speedup']:.1f}"
        )
        rows.append(row)
    write_results(rows, args, args.out)
    print(f"wrote {args.out / 'geometry.md'}")


if __name__ == "__main__":
    main()
