"""Convert MediaPipe's SSD-MobileNetV2 Open Images detector (in `@mediapipe/objectron`) to an ONNX asset.

This is the one-off script that produced `src/diffusers_spatial/assets/ssd_mobilenetv2_oidv4.onnx`, the second,
opt-in embedded detector (23 Open Images classes; better than CenterNet on cats and dogs, and faster). Run it in
the throwaway venv of tools/README.md:

    python tools/convert_ssd_oidv4.py --output src/diffusers_spatial/assets/ssd_mobilenetv2_oidv4.onnx \
        --notice src/diffusers_spatial/assets/NOTICE

Steps:
1. `npm pack @mediapipe/objectron@0.4.1675468480`; cut `object_detection_ssd_mobilenetv2_oidv4_fp16.tflite` and
   `object_detection_oidv4_labelmap.txt` out of `objectron_solution_packed_assets.data` at the offsets its loader
   script lists.
2. `tf2onnx.convert.from_tflite(opset=13)`: input 1 x 300 x 300 x 3 in [-1, 1], raw outputs 1 x 1917 x 4 box
   encodings and 1 x 1917 x 24 class logits.
3. Append to the graph what MediaPipe's `object_detection_oid_v4_cpu.pbtxt` does around the model, so the ONNX
   keeps the same contract as the CenterNet asset: input `images` (RGB 0..255, stretch-resized to 300 x 300;
   scaled to [-1, 1] inside), output `detections` 1 x 1917 x 6 (x1, y1, x2, y2 in 300-px coordinates, score,
   0-based class without the background). Anchors: SsdAnchorsCalculator (6 layers, scales 0.2..0.95, strides
   16..512, aspect ratios 1, 2, 0.5, 3, 0.3333, reduced boxes in the lowest layer); decoding:
   TensorsToDetectionsCalculator (scales 10, 10, 5, 5, exponential box size, sigmoid scores, class 0 ignored).
4. Check against the TFLite interpreter plus a numpy version of the same decoding on real photos; store the
   weights as fp16 (lossless: the TFLite weights are fp16) after checking the detections are identical.
5. Write the ONNX and its NOTICE section (Apache-2.0), print the sha256.
"""

from __future__ import annotations

import json
import math
import re
import tarfile
from importlib import metadata
from pathlib import Path

import numpy as np
from onnx_assets import (
    ONNX_INPUT,
    ONNX_OUTPUT,
    finish_model,
    load_check_images,
    npm_pack,
    package_workdir,
    parse_converter_args,
    run_onnx,
    sha256_of,
    summarise,
    update_notice,
    write_asset,
)

PACKAGE = "@mediapipe/objectron"
VERSION = "0.4.1675468480"
ASSETS = "package/objectron_solution_packed_assets.data"
LOADER = "package/objectron_solution_packed_assets_loader.js"
TFLITE_NAME = "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite"
LABELMAP_NAME = "object_detection_oidv4_labelmap.txt"
OPSET = 13
INPUT_SIZE = 300
# SsdAnchorsCalculator and TensorsToDetectionsCalculator options of object_detection_oid_v4_cpu.pbtxt.
ANCHOR_STRIDES = (16, 32, 64, 128, 256, 512)
ANCHOR_MIN_SCALE, ANCHOR_MAX_SCALE = 0.2, 0.95
ANCHOR_ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w


def fetch_package(workdir: Path) -> dict[str, Path]:
    """Download the npm tarball and cut the TFLite model and label map out of the packed assets."""
    tarball = npm_pack(f"{PACKAGE}@{VERSION}", workdir)
    with tarfile.open(tarball) as tar:
        tar.extractall(workdir, members=[tar.getmember(m) for m in (ASSETS, LOADER)], filter="data")
    loader = (workdir / LOADER).read_text(encoding="utf-8")
    listing = json.loads(re.search(r"loadPackage\((\{.*?\})\);", loader, re.S).group(1))
    data = (workdir / ASSETS).read_bytes()
    files = {"tarball": tarball, "assets": workdir / ASSETS}
    for entry in listing["files"]:
        name = Path(entry["filename"]).name
        if name in (TFLITE_NAME, LABELMAP_NAME):
            files[name] = workdir / name
            files[name].write_bytes(data[entry["start"] : entry["end"]])
    missing = {TFLITE_NAME, LABELMAP_NAME} - set(files)
    if missing:
        raise FileNotFoundError(f"{sorted(missing)} not listed in {LOADER}")
    return files


def ssd_anchors() -> np.ndarray:
    """1917 x 4 anchors (cx, cy, w, h), normalised, in the model's output order (MediaPipe SsdAnchorsCalculator)."""
    layers = len(ANCHOR_STRIDES)

    def scale(i: int) -> float:
        return ANCHOR_MIN_SCALE + (ANCHOR_MAX_SCALE - ANCHOR_MIN_SCALE) * i / (layers - 1)

    anchors = []
    for i, stride in enumerate(ANCHOR_STRIDES):
        if i == 0:  # reduce_boxes_in_lowest_layer
            shapes = [(1.0, 0.1), (2.0, scale(0)), (0.5, scale(0))]
        else:  # every aspect ratio, plus the interpolated scale at ratio 1
            following = 1.0 if i == layers - 1 else scale(i + 1)
            shapes = [(r, scale(i)) for r in ANCHOR_ASPECT_RATIOS] + [(1.0, math.sqrt(scale(i) * following))]
        size = math.ceil(INPUT_SIZE / stride)
        for y in range(size):
            for x in range(size):
                for ratio, s in shapes:
                    anchors.append(((x + 0.5) / size, (y + 0.5) / size, s * math.sqrt(ratio), s / math.sqrt(ratio)))
    return np.asarray(anchors, dtype=np.float32)


def decode_numpy(encodings: np.ndarray, logits: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Reference decoding (N x 1917 x 6) as MediaPipe's TensorsToDetectionsCalculator does it."""
    cx, cy, aw, ah = anchors.T
    y = encodings[..., 0] / BOX_SCALES[0] * ah + cy
    x = encodings[..., 1] / BOX_SCALES[1] * aw + cx
    h = np.exp(encodings[..., 2] / BOX_SCALES[2]) * ah
    w = np.exp(encodings[..., 3] / BOX_SCALES[3]) * aw
    scores = 1 / (1 + np.exp(-logits[..., 1:]))
    boxes = np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=-1) * INPUT_SIZE
    return np.concatenate([boxes, scores.max(-1, keepdims=True), scores.argmax(-1)[..., None]], axis=-1)


def add_pre_and_post_processing(model, anchors: np.ndarray):
    """Wrap the raw model: `images` (0..255) in, decoded `detections` (N x 1917 x 6) out."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    (raw_input,) = [i.name for i in graph.input]
    encodings, logits = (o.name for o in graph.output)
    cx, cy, aw, ah = anchors.T
    consts = {
        "pre/scale": np.float32(1 / 127.5),
        "pre/one": np.float32(1.0),
        "post/center_scale": np.array([1 / BOX_SCALES[0], 1 / BOX_SCALES[1]], np.float32),
        "post/size_scale": np.array([1 / BOX_SCALES[2], 1 / BOX_SCALES[3]], np.float32),
        "post/anchor_center_yx": np.stack([cy, cx], -1),
        "post/anchor_size_hw": np.stack([ah, aw], -1),
        "post/half": np.float32(0.5),
        "post/input_size": np.float32(INPUT_SIZE),
        # Slices along the last axis: box centre (0:2), box size (2:4), class logits without the background (1:).
        "post/start_center": np.array([0], np.int64),
        "post/end_center": np.array([2], np.int64),
        "post/start_size": np.array([2], np.int64),
        "post/end_size": np.array([4], np.int64),
        "post/start_classes": np.array([1], np.int64),
        "post/end_classes": np.array([1 << 30], np.int64),
        "post/axis": np.array([2], np.int64),
        "post/xyxy": np.array([1, 0, 3, 2], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items())

    def node(op, inputs, output, **attrs):
        return helper.make_node(op, inputs, [output], name=output, **attrs)

    pre = [node("Mul", [ONNX_INPUT, "pre/scale"], "pre/scaled"), node("Sub", ["pre/scaled", "pre/one"], raw_input)]
    post = [
        node("Slice", [encodings, "post/start_center", "post/end_center", "post/axis"], "post/enc_center"),
        node("Slice", [encodings, "post/start_size", "post/end_size", "post/axis"], "post/enc_size"),
        node("Mul", ["post/enc_center", "post/center_scale"], "post/center_offset"),
        node("Mul", ["post/center_offset", "post/anchor_size_hw"], "post/center_shift"),
        node("Add", ["post/center_shift", "post/anchor_center_yx"], "post/center_yx"),
        node("Mul", ["post/enc_size", "post/size_scale"], "post/log_size"),
        node("Exp", ["post/log_size"], "post/size_ratio"),
        node("Mul", ["post/size_ratio", "post/anchor_size_hw"], "post/size_hw"),
        node("Mul", ["post/size_hw", "post/half"], "post/half_size"),
        node("Sub", ["post/center_yx", "post/half_size"], "post/yx1"),
        node("Add", ["post/center_yx", "post/half_size"], "post/yx2"),
        node("Concat", ["post/yx1", "post/yx2"], "post/yxyx", axis=2),
        node("Gather", ["post/yxyx", "post/xyxy"], "post/xyxy_norm", axis=2),
        node("Mul", ["post/xyxy_norm", "post/input_size"], "post/boxes"),
        node("Sigmoid", [logits], "post/probs"),
        node("Slice", ["post/probs", "post/start_classes", "post/end_classes", "post/axis"], "post/class_probs"),
        node("ReduceMax", ["post/class_probs"], "post/score", axes=[2], keepdims=1),
        node("ArgMax", ["post/class_probs"], "post/class_id", axis=2, keepdims=1),
        node("Cast", ["post/class_id"], "post/class", to=TensorProto.FLOAT),
        node("Concat", ["post/boxes", "post/score", "post/class"], ONNX_OUTPUT, axis=2),
    ]
    nodes = pre + list(graph.node) + post
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input[0].name = ONNX_INPUT
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, [1, len(anchors), 6]))
    return model


def run_tflite(path: Path, batch: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    outputs = {o["name"]: o["index"] for o in interpreter.get_output_details()}
    results = []
    for image in batch:
        interpreter.set_tensor(inp["index"], image[None] / np.float32(127.5) - np.float32(1.0))
        interpreter.invoke()
        encodings = interpreter.get_tensor(outputs["raw_outputs/box_encodings"])
        logits = interpreter.get_tensor(outputs["raw_outputs/class_predictions"])
        results.append(decode_numpy(encodings, logits, anchors))
    return np.concatenate(results)


def apache_license_text() -> str:
    """Apache-2.0 terms, as shipped with tf2onnx (the npm package names the licence but carries no copy)."""
    text = metadata.distribution("tf2onnx").read_text("LICENSE") or ""
    end = text.find("END OF TERMS AND CONDITIONS")
    if "Apache License" not in text or end < 0:
        raise RuntimeError("tf2onnx's LICENSE is not the Apache-2.0 text")
    return text[: end + len("END OF TERMS AND CONDITIONS")].strip("\n")


def write_notice(path: Path, files: dict[str, Path], labels: list[str], onnx_path: Path, fp16: bool) -> None:
    storage = "fp16 (lossless: the source weights are fp16)" if fp16 else "fp32"
    body = f"""SSD-MobileNetV2 object detector trained on Open Images v4 ({len(labels)} classes, 300x300 input), from
Google's MediaPipe Objectron solution, converted to ONNX by tools/convert_ssd_oidv4.py:

  package: {PACKAGE}@{VERSION} (npm), licence Apache-2.0 (package.json "license")
  tarball: {files["tarball"].name}  sha256 {sha256_of(files["tarball"])}
  file:    {ASSETS}  sha256 {sha256_of(files["assets"])}
           holding {TFLITE_NAME}  sha256 {sha256_of(files[TFLITE_NAME])}
           and {LABELMAP_NAME}  sha256 {sha256_of(files[LABELMAP_NAME])}
  classes: {", ".join(labels)}

  onnx:    {onnx_path.name}  sha256 {sha256_of(onnx_path)}
           opset {OPSET}, weights stored as {storage}. Modified: input scaling to [-1, 1], SSD anchor
           decoding, sigmoid scores and best class (as MediaPipe's object_detection_oid_v4_cpu.pbtxt) are added
           to the graph.

Licensed under the Apache License, Version 2.0, whose terms follow.

{apache_license_text()}
"""
    update_notice(path, onnx_path.name, body)


def main(argv=None) -> None:
    import tf2onnx

    args = parse_converter_args(__doc__.split("\n")[0], argv)
    with package_workdir(args.workdir) as workdir:
        files = fetch_package(workdir)
        labels = files[LABELMAP_NAME].read_text(encoding="utf-8").split("\n")[1:]  # line 0 is the background
        labels = [label for label in labels if label]
        anchors = ssd_anchors()
        print(f"{len(labels)} classes, {len(anchors)} anchors")

        model, _ = tf2onnx.convert.from_tflite(str(files[TFLITE_NAME]), opset=OPSET)
        model = add_pre_and_post_processing(model, anchors)
        batch, used = load_check_images(args.check_images, size=INPUT_SIZE)
        reference = run_tflite(files[TFLITE_NAME], batch, anchors)
        detections = run_onnx(model, batch, one_at_a_time=True)
        same_class = (reference[..., 4] < 0.05) | (reference[..., 5] == detections[..., 5])
        diff = np.abs(reference - detections)
        print(
            f"ONNX vs TFLite + numpy decoding: max abs diff scores {diff[..., 4].max():.2e}, "
            f"boxes {diff[..., :4].max():.2e} px; same classes: {same_class.all()}"
        )
        if not np.allclose(reference[..., :5], detections[..., :5], atol=1e-2) or not same_class.all():
            raise RuntimeError("the ONNX model disagrees with the TFLite model")
        model = finish_model(args, model, batch, one_at_a_time=True)
        for path, image_detections in zip(used, detections):
            found = [(labels[c], s) for c, s in summarise(image_detections, 0.5)]
            print(f"  {Path(path).name}: (class, score) >= 0.5: {found}")

        write_asset(args, model, lambda notice: write_notice(notice, files, labels, args.output, fp16=not args.fp32))


if __name__ == "__main__":
    main()
