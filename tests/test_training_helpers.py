"""Shared builders for the training tests: a tiny spatial dataset on disk and a runner for the example scripts.

The dataset follows the spatial dataset's row format (docs/architecture.md): an ImageFolder with `metadata.jsonl`
holding `prompt`, `subject`, `relation`, `object` and `boxes`; each image draws two coloured objects at the
positions its caption states, over a noisy gradient.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
SD_SCRIPT = REPO / "examples" / "train_esplora.py"
SDXL_SCRIPT = REPO / "examples" / "train_esplora_sdxl.py"
FLOW_SCRIPT = REPO / "examples" / "train_esplora_flow.py"
BIN = Path(sys.executable).parent

_PAIRS = [("dog", "cat"), ("cup", "book"), ("car", "bench")]
_RELATIONS = [("left_of", "to the left of"), ("right_of", "to the right of"), ("above", "above"), ("below", "below")]


def _layout(relation: str, width: int, height: int) -> tuple[tuple, tuple]:
    """Boxes (subject, object) that satisfy `relation`."""
    w, h = width // 3, height // 3
    left, right = (2, h, 2 + w, 2 * h), (width - 2 - w, h, width - 2, 2 * h)
    top, bottom = (w, 2, 2 * w, 2 + h), (w, height - 2 - h, 2 * w, height - 2)
    return {"left_of": (left, right), "right_of": (right, left), "above": (top, bottom), "below": (bottom, top)}[
        relation
    ]


def make_spatial_imagefolder(root: str | os.PathLike, n: int = 8, size: tuple[int, int] = (48, 40), seed: int = 0):
    """Write `n` images + metadata.jsonl into `root`; return the folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    rows = []
    for i in range(n):
        subject, obj = _PAIRS[i % len(_PAIRS)]
        relation, phrase = _RELATIONS[i % len(_RELATIONS)]
        gradient = np.linspace(0, 1, width)[None, :, None] * rng.uniform(60, 200, 3)
        pixels = (gradient + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        box_s, box_o = _layout(relation, width, height)
        draw.ellipse(box_s, fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        draw.rectangle(box_o, fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        name = f"{i:03d}.png"
        image.save(root / name)
        rows.append(
            {
                "file_name": name,
                "prompt": f"a {subject} {phrase} a {obj}",
                "subject": subject,
                "relation": relation,
                "object": obj,
                "boxes": [
                    {"label": subject, "score": 1.0, "box": list(map(float, box_s))},
                    {"label": obj, "score": 1.0, "box": list(map(float, box_o))},
                ],
                "source": "synthetic",
            }
        )
    with open(root / "metadata.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return root


def training_env(tmp: str | os.PathLike) -> dict:
    """Environment for a training subprocess: caches under `tmp`, the Hub off (tests are offline)."""
    env = dict(os.environ)
    env.update(
        HF_HOME=str(Path(tmp) / "hf_home"),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    return env


def launch_command(script: Path, args: list[str]) -> list[str]:
    """`accelerate launch <script> ...`, the command a user runs."""
    return [str(BIN / "accelerate"), "launch", "--num_processes", "1", "--mixed_precision", "no", str(script), *args]


def run_training(script: Path, args: list[str], tmp: str | os.PathLike, timeout: int = 600):
    """Run a training script to completion; return the CompletedProcess (stdout and stderr merged)."""
    return subprocess.run(
        launch_command(script, args),
        env=training_env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def tail(process, lines: int = 60) -> str:
    return "\n".join((process.stdout or "").splitlines()[-lines:])
