"""Benchmark: the embedded detector through `Perception`, one image at a time vs batched, side by side.

Reports images per second and the share of wall time spent outside the model itself (everything except the
onnxruntime `session.run` calls: image reading, resizing, NMS, mapping boxes back, noun matching, bookkeeping).
The configurations run interleaved in the same process, round after round, and each one's median round (by wall
time) is reported, so machine load affects them alike.

Inputs are real photos (scikit-image's data module, plus Debian's darknet photos when installed), cycled to
`--images` images, with spatial prompts so noun matching runs too.

Usage:

    python bench/bench_perception.py                      # writes bench/results/perception.md
    python bench/bench_perception.py --images 64 --rounds 7 --batch-size 8
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime

from diffusers_spatial.perception import Perception
from diffusers_spatial.perception.embedded import EmbeddedDetector
from diffusers_spatial.photos import available_photos, load_photo

RESULTS = Path(__file__).parent / "results" / "perception.md"
PROMPTS = ["a person to the left of a dog", "a cup above a dining table", "a motorbike to the right of a car"]


class TimedSession:
    """Wraps an onnxruntime session and adds up the time spent in `run` (the model itself)."""

    def __init__(self, session):
        self.session = session
        self.seconds = 0.0

    def run(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.session.run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def __getattr__(self, name):
        return getattr(self.session, name)


class TimedEmbeddedDetector(EmbeddedDetector):
    """The embedded detector, its model calls timed."""

    @property
    def session(self):
        if not isinstance(getattr(self, "_timed", None), TimedSession):
            self._timed = TimedSession(super().session)
        return self._timed


@dataclass
class Config:
    name: str
    batch_size: int
    inputs: str  # "pil" or "files"


def run_once(config: Config, detector: TimedEmbeddedDetector, images, files) -> tuple[float, float, int]:
    """(wall seconds, model seconds, detections) for one pass over the images."""
    perception = Perception(detector=detector, batch_size=config.batch_size, progress=False)
    inputs = images if config.inputs == "pil" else files
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(inputs))]
    detector.session.seconds = 0.0
    start = time.perf_counter()
    results = perception.run(inputs, prompts)
    wall = time.perf_counter() - start
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return wall, detector.session.seconds, sum(len(r.detections) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48, help="images per pass")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    names = available_photos()
    photos = [load_photo(name) for name in names]
    images = [photos[i % len(photos)] for i in range(args.images)]
    configs = [
        Config("one image at a time", 1, "pil"),
        Config(f"batched ({args.batch_size})", args.batch_size, "pil"),
        Config(f"batched ({args.batch_size}), from JPEG files", args.batch_size, "files"),
    ]
    detectors = {c.name: TimedEmbeddedDetector(batch_size=c.batch_size, num_threads=args.threads) for c in configs}
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, photo in enumerate(photos):
            path = os.path.join(folder, f"{i}.jpg")
            photo.save(path, quality=95)
            paths.append(path)
        files = [paths[i % len(paths)] for i in range(args.images)]

        for config in configs:  # warm-up: sessions created, caches filled
            run_once(config, detectors[config.name], images[:4], files[:4])
        timings: dict[str, list[tuple[float, float, int]]] = {c.name: [] for c in configs}
        for _ in range(args.rounds):
            for config in configs:
                timings[config.name].append(run_once(config, detectors[config.name], images, files))

    rows = []
    baseline = None
    for config in configs:
        runs = sorted(timings[config.name])
        wall, model, _ = runs[len(runs) // 2]  # the median round by wall time
        throughput = args.images / wall
        baseline = baseline or throughput
        share = model / wall
        rows.append((config.name, throughput, throughput / baseline, 1000 * wall / args.images, share, 1 - share))

    lines = [
        "# Perception benchmark: embedded detector, one image at a time vs batched",
        "",
        f"Command: `python bench/bench_perception.py --images {args.images} --rounds {args.rounds} "
        f"--batch-size {args.batch_size} --threads {args.threads}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end; Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}.",
        f"Inputs: {args.images} real photos cycled from {len(names)} ({', '.join(names)}), sizes "
        f"{min(p.width for p in photos)}-{max(p.width for p in photos)} px wide, with spatial prompts. "
        f"The median of {args.rounds} interleaved rounds (by wall time).",
        "",
        "| configuration | images/s | speed-up | ms/image | model share | outside the model |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, throughput, speedup, ms, model_share, outside in rows:
        lines.append(f"| {name} | {throughput:.2f} | {speedup:.2f}x | {ms:.1f} | {model_share:.1%} | {outside:.1%} |")
    lines += [
        "",
        '"Outside the model" is wall time minus the onnxruntime `session.run` time: resizing to 512 x 512, NMS, '
        "mapping boxes back, noun matching and `Perception`'s bookkeeping, plus decoding in the files row (done in a "
        "reader thread while the model runs the previous batch, so only its non-overlapped part counts). "
        "Target: under 10%.",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
