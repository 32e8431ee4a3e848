"""Helpers shared by the scripts that convert third-party detectors into the package's ONNX assets.

Imported by `convert_centernet.py` and `convert_ssd_oidv4.py` (run them as `python tools/<script>.py`, which puts
this folder on `sys.path`). Needs numpy, onnx, onnxruntime and Pillow; see tools/README.md for the venv.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ONNX_INPUT = "images"
ONNX_OUTPUT = "detections"
# Photos used to check conversions (Debian package `darknet`); any RGB photos can be passed with --check-images.
DEFAULT_CHECK_IMAGES = [f"/usr/share/darknet/data/{name}.jpg" for name in ("dog", "person", "horses", "giraffe")]
NOTICE_INTRO = (
    "Third-party models bundled in diffusers_spatial/assets/, one section per file. Each section is written by the\n"
    "script in tools/ that converted the model; tools/README.md says how to re-run it.\n"
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def npm_pack(spec: str, workdir: Path) -> Path:
    """Download an npm package tarball with `npm pack` (nothing is installed or run) and return its path."""
    result = subprocess.run(["npm", "pack", spec, "--silent"], cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`npm pack {spec}` failed:\n{result.stderr}")
    return workdir / result.stdout.strip().splitlines()[-1]


def rename_value(graph, old: str, new: str) -> None:
    """Rename a tensor everywhere in an ONNX graph (inputs, outputs, node inputs and outputs)."""
    for value in list(graph.input) + list(graph.output):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def store_weights_fp16(model, min_size: int = 16):
    """Copy of `model` whose float initializers are stored as fp16, each followed by a Cast back to fp32.

    Only initializers that round-trip exactly are converted, so the computation is unchanged (onnxruntime folds
    the Casts when it loads the model); returns the model and the names of float initializers kept as fp32.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    casts, kept = [], []
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if values.size < min_size or not np.array_equal(half.astype(np.float32), values):
            kept.append(init.name)
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}__fp16"))
        casts.append(helper.make_node("Cast", [init.name], [name], name=f"{name}__cast", to=onnx.TensorProto.FLOAT))
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model, kept


def load_check_images(paths: list[str], size: int) -> tuple[np.ndarray, list[str]]:
    """N x size x size x 3 float32 RGB 0..255 batch of the photos that exist (stretch-resized, bilinear)."""
    from PIL import Image

    arrays, used = [], []
    for path in paths:
        if not Path(path).is_file():
            print(f"check image {path} not found, skipped", file=sys.stderr)
            continue
        image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.float32))
        used.append(path)
    if not arrays:
        raise FileNotFoundError(
            f"No check image found among {paths}: install Debian's `darknet` or pass --check-images"
        )
    return np.stack(arrays), used


def run_onnx(model, batch: np.ndarray, one_at_a_time: bool = False) -> np.ndarray:
    """The `detections` output of an ONNX model (a ModelProto) on a batch, optionally one image per run."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    if one_at_a_time:
        return np.concatenate([session.run([ONNX_OUTPUT], {ONNX_INPUT: image[None]})[0] for image in batch])
    return session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0]


def check_fp16_storage(model, batch: np.ndarray, one_at_a_time: bool = False):
    """fp16-storage copy of `model`, after checking that it gives exactly the detections of the fp32 model."""
    model_fp16, kept = store_weights_fp16(model)
    print(f"fp16 storage: {len(kept)} float initializers kept fp32 (small or not exact in fp16)")
    fp32 = run_onnx(model, batch, one_at_a_time)
    fp16 = run_onnx(model_fp16, batch, one_at_a_time)
    print(f"ONNX fp16 storage vs fp32: max abs diff {np.abs(fp16 - fp32).max():.2e}")
    if not np.array_equal(fp16, fp32):
        raise RuntimeError("fp16 storage changed the detections; rerun with --fp32")
    return model_fp16


def compare_with(path: Path, model, batch: np.ndarray, one_at_a_time: bool = False) -> None:
    """Fail unless an earlier ONNX file gives the same detections as `model` on the batch."""
    import onnx

    earlier = run_onnx(onnx.load(str(path)), batch, one_at_a_time)
    current = run_onnx(model, batch, one_at_a_time)
    print(f"ONNX vs {path}: max abs diff {np.abs(earlier - current).max():.2e}")
    if not np.allclose(earlier, current, rtol=0, atol=1e-5):
        raise RuntimeError(f"{path} gives other detections than this conversion")


def summarise(detections: np.ndarray, threshold: float) -> list[tuple[int, float]]:
    """(class, score) of one image's detections rows at or above `threshold`."""
    keep = detections[:, 4] >= threshold
    return [(int(c), round(float(s), 3)) for s, c in zip(detections[keep, 4], detections[keep, 5])]


def update_notice(path: Path, model_file: str, body: str) -> None:
    """Write one model's section of the assets' NOTICE file, keeping the other models' sections."""
    sections, current = {}, None
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("==== ") and line.endswith(" ===="):
                current = line[5:-5]
                sections[current] = []
            elif current is not None:
                sections[current].append(line)
    sections = {name: "\n".join(lines).strip("\n") for name, lines in sections.items()}
    sections[model_file] = body.strip("\n")
    text = NOTICE_INTRO + "".join(f"\n==== {name} ====\n\n{sections[name]}\n" for name in sorted(sections))
    path.write_text(text, encoding="utf-8")


def parse_converter_args(description: str, argv=None) -> argparse.Namespace:
    """The converters' common command line: output, NOTICE, fp32 storage, work folder, check photos, comparison."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", type=Path, required=True, help="where to write the ONNX file")
    parser.add_argument("--notice", type=Path, default=None, help="NOTICE file to update (default: next to --output)")
    parser.add_argument("--fp32", action="store_true", help="store weights as fp32 instead of fp16")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the downloaded package here")
    parser.add_argument("--check-images", nargs="+", default=DEFAULT_CHECK_IMAGES, help="RGB photos for the checks")
    parser.add_argument(
        "--compare-with",
        type=Path,
        default=None,
        help="an earlier ONNX (e.g. the committed asset) that must give the same detections on the check photos",
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def package_workdir(workdir: Path | None) -> Iterator[Path]:
    """`--workdir` (created if missing), else a temporary folder removed on exit: where the package is unpacked."""
    with tempfile.TemporaryDirectory() as tmp:
        path = workdir or Path(tmp)
        path.mkdir(parents=True, exist_ok=True)
        yield path


def finish_model(args: argparse.Namespace, model, batch: np.ndarray, one_at_a_time: bool = False):
    """The model to write: fp16 storage unless `--fp32` (checked exact), checked against `--compare-with`."""
    if not args.fp32:
        model = check_fp16_storage(model, batch, one_at_a_time)
    if args.compare_with is not None:
        compare_with(args.compare_with, model, batch, one_at_a_time)
    return model


def write_asset(args: argparse.Namespace, model, write_notice: Callable[[Path], None]) -> None:
    """Write the ONNX file to `--output` and its NOTICE section (`write_notice(notice_path)`), and say where."""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(model.SerializeToString())
    notice = args.notice or args.output.parent / "NOTICE"
    write_notice(notice)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB) sha256 {sha256_of(args.output)}")
    print(f"wrote {notice}")
