"""Convert the CenterNet (MobileNetV3, COCO-80) TFJS graph model of `@vladmandic/human` to ONNX.

This is the one-off script that produced `src/diffusers_spatial/assets/centernet_mobilenetv3_coco.onnx`. It is not
part of the package: it needs TensorFlow and tf2onnx, which the package never imports. Run it in a throwaway venv
(see tools/README.md):

    python tools/convert_centernet.py --output src/diffusers_spatial/assets/centernet_mobilenetv3_coco.onnx

Steps:
1. `npm pack @vladmandic/human@3.3.6` into a temporary folder; unpack `models/centernet.{json,bin}` and `LICENSE`.
2. Build a TensorFlow GraphDef from the TFJS `modelTopology` and fill every Const from `weightsManifest`
   (fp16-quantised weights are dequantised; constants whose node says int64 but TFJS stored as int32 are cast back).
3. Split the TFJS-only fused ops (`_FusedConv2D`, `FusedDepthwiseConv2dNative`) into conv + BiasAdd + activation.
4. Make the batch dimension dynamic: the graph's box decoding hard-codes batch 1 (flat reshapes and a flat gather);
   it is rewritten to a per-image gather (`GatherV2` with `batch_dims=1`). Checked below: a batch of N gives the
   same detections as N single-image runs of the unmodified graph.
5. `tf2onnx.convert.from_graph_def(opset=13)`; the input is renamed `images` (N x 512 x 512 x 3 float RGB 0..255,
   stretch-resized) and the output `detections` (N x 100 x 6: x1, y1, x2, y2 in 512-px coordinates, score,
   0-based COCO-80 class).
6. Optionally store the weights as fp16 (each followed by a Cast to fp32, which onnxruntime folds at load time). The
   source weights are fp16 already, so this is lossless; the script checks that every converted initializer
   round-trips exactly and that fp32 and fp16 ONNX give identical detections on the check photos.
7. Check the ONNX against TensorFlow on real photos, write the ONNX and a NOTICE, print their sha256.

tf2onnx numbers the nodes it creates in an order that varies between runs, so two conversions give files with
different bytes (and sha256) but the same graph and the same outputs; `--compare-with` checks that.
"""

from __future__ import annotations

import json
import tarfile
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
    rename_value,
    run_onnx,
    sha256_of,
    summarise,
    update_notice,
    write_asset,
)

PACKAGE = "@vladmandic/human"
VERSION = "3.3.6"
MODEL_JSON = "package/models/centernet.json"
MODEL_BIN = "package/models/centernet.bin"
LICENSE = "package/LICENSE"
INPUT_NODE = "tower_0/images"
OUTPUT_NODE = "tower_0/detections"
OPSET = 13


def fetch_package(workdir: Path) -> dict[str, Path]:
    """Download the npm tarball with `npm pack` (no install, no scripts run) and unpack the model files."""
    tarball = npm_pack(f"{PACKAGE}@{VERSION}", workdir)
    members = (MODEL_JSON, MODEL_BIN, LICENSE)
    with tarfile.open(tarball) as tar:
        tar.extractall(workdir, members=[tar.getmember(m) for m in members], filter="data")
    return {"tarball": tarball, "json": workdir / MODEL_JSON, "bin": workdir / MODEL_BIN, "license": workdir / LICENSE}


def read_weights(model: dict, bin_dir: Path) -> dict[str, np.ndarray]:
    """Read the TFJS weight shards, dequantising to each weight's original dtype."""
    weights = {}
    for group in model["weightsManifest"]:
        buffer = b"".join((bin_dir / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = [int(d) for d in spec["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            stored = np.dtype(quant["dtype"] if quant else spec["dtype"])
            values = np.frombuffer(buffer, stored, count, offset)
            offset += stored.itemsize * count
            if quant is None:
                pass
            elif quant["dtype"] == "float16":
                values = values.astype(np.float32)
            elif quant["dtype"] in ("uint8", "uint16"):
                values = values.astype(np.float32) * quant["scale"] + quant["min"]
            else:
                raise ValueError(f"Unsupported TFJS quantisation {quant!r} for weight {spec['name']!r}")
            weights[spec["name"]] = values.reshape(shape).astype(spec["dtype"])
        if offset != len(buffer):
            raise ValueError(f"Weight manifest covers {offset} bytes but the shards hold {len(buffer)}")
    return weights


def build_graph_def(model: dict, weights: dict[str, np.ndarray]):
    """GraphDef from the TFJS topology, with every Const filled from the weights."""
    import tensorflow as tf
    from google.protobuf import json_format

    graph_def = json_format.ParseDict(model["modelTopology"], tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    for node in graph_def.node:
        if node.op != "Const":
            continue
        if node.name not in weights:
            raise KeyError(f"Const {node.name!r} has no entry in the weights manifest")
        dtype = tf.as_dtype(node.attr["dtype"].type)
        # TFJS has no int64: such constants were stored as int32 and are cast back to what the node declares.
        values = weights[node.name].astype(dtype.as_numpy_dtype)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values, dtype=dtype, shape=values.shape))
    return graph_def


_CONV_ATTRS = ("T", "strides", "padding", "explicit_paddings", "dilations", "data_format")
_ACTIVATIONS = {"Relu", "Relu6", "Elu", "Sigmoid", "Tanh"}


def split_fused_ops(graph_def) -> int:
    """Rewrite TFJS's fused convolutions as standard TensorFlow ops; returns how many were split."""
    import tensorflow as tf

    nodes, count = [], 0
    for node in graph_def.node:
        if node.op not in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            if node.op.startswith(("_Fused", "Fused")):
                raise NotImplementedError(f"TFJS fused op {node.op!r} ({node.name}) is not handled")
            nodes.append(node)
            continue
        fused = [s.decode() for s in node.attr["fused_ops"].list.s]
        if fused[:1] != ["BiasAdd"] or node.attr["num_args"].i != 1 or not set(fused[1:]) <= _ACTIVATIONS:
            raise NotImplementedError(f"{node.name}: fused ops {fused} with {node.attr['num_args'].i} args")
        x, kernel, bias = node.input
        conv = tf.compat.v1.NodeDef(
            name=f"{node.name}/conv", op="Conv2D" if node.op == "_FusedConv2D" else "DepthwiseConv2dNative"
        )
        conv.input.extend([x, kernel])
        for key in _CONV_ATTRS:
            conv.attr[key].CopyFrom(node.attr[key])
        bias_add = tf.compat.v1.NodeDef(name=node.name if len(fused) == 1 else f"{node.name}/bias_add", op="BiasAdd")
        bias_add.input.extend([conv.name, bias])
        for key in ("T", "data_format"):
            bias_add.attr[key].CopyFrom(node.attr[key])
        nodes += [conv, bias_add]
        if len(fused) == 2:
            activation = tf.compat.v1.NodeDef(name=node.name, op=fused[1])
            activation.input.append(bias_add.name)
            activation.attr["T"].CopyFrom(node.attr["T"])
            nodes.append(activation)
        count += 1
    del graph_def.node[:]
    graph_def.node.extend(nodes)
    return count


def make_batch_dynamic(graph_def, model: dict) -> None:
    """Let the graph take N images: the decoding step flattens and gathers as if N were 1.

    Each patched constant is checked against its expected value so that a different source graph fails loudly.
    """
    import tensorflow as tf

    outputs = model["signature"]["outputs"]
    _, height, width, classes = (int(d["size"]) for d in outputs["tower_0/keypoints"]["tensorShape"]["dim"])
    box_dims = int(outputs["tower_0/wh"]["tensorShape"]["dim"][3]["size"])
    top_k = int(outputs[OUTPUT_NODE]["tensorShape"]["dim"][1]["size"])
    patches = {
        # keypoints N x H x W x C -> N x (H*W*C) for the per-image top-k
        "tower_0/Reshape/shape": ([1, -1], [-1, height * width * classes]),
        # box sizes N x H x W x 4 -> N x (H*W) x 4, gathered per image below
        "tower_0/BatchGather/concat": ([height * width, box_dims], [-1, height * width, box_dims]),
        "tower_0/BatchGather/Reshape_1/shape": ([-1], [-1, top_k]),
        "tower_0/BatchGather/GatherV2/axis": (0, 1),
        "tower_0/BatchGather/concat_1": ([1, top_k, box_dims], [-1, top_k, box_dims]),
    }
    by_name = {node.name: node for node in graph_def.node}
    for name, (expected, new) in patches.items():
        tensor = by_name[name].attr["value"].tensor
        current = tf.make_ndarray(tensor)
        if current.tolist() != expected:
            raise ValueError(f"{name} is {current.tolist()}, expected {expected}: the source graph changed")
        values = np.asarray(new, dtype=current.dtype)
        tensor.CopyFrom(tf.make_tensor_proto(values, dtype=tensor.dtype, shape=values.shape))
    by_name["tower_0/BatchGather/GatherV2"].attr["batch_dims"].i = 1
    by_name[INPUT_NODE].attr["shape"].shape.dim[0].size = -1


def run_tensorflow(graph_def, batch: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run(f"{OUTPUT_NODE}:0", {f"{INPUT_NODE}:0": batch})


def to_onnx(graph_def):
    import tf2onnx

    model, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=[f"{INPUT_NODE}:0"], output_names=[f"{OUTPUT_NODE}:0"], opset=OPSET
    )
    rename_value(model.graph, f"{INPUT_NODE}:0", ONNX_INPUT)
    rename_value(model.graph, f"{OUTPUT_NODE}:0", ONNX_OUTPUT)
    return model


def write_notice(path: Path, files: dict[str, Path], onnx_path: Path, fp16: bool) -> None:
    storage = "fp16 (lossless: the source weights are fp16)" if fp16 else "fp32"
    body = f"""CenterNet object detector (MobileNetV3 backbone, 80 COCO classes, 512x512 input), converted to ONNX by
tools/convert_centernet.py from the TensorFlow.js graph model shipped in the npm package:

  package: {PACKAGE}@{VERSION} (npm), licence MIT
  tarball: {files["tarball"].name}  sha256 {sha256_of(files["tarball"])}
  file:    {MODEL_JSON}  sha256 {sha256_of(files["json"])}
  file:    {MODEL_BIN}  sha256 {sha256_of(files["bin"])}
  model:   trained on COCO with https://github.com/610265158/mobilenetv3_centernet (that repository has no
           licence file), converted to TFJS and published under the MIT licence below by Vladimir Mandic

  onnx:    {onnx_path.name}  sha256 {sha256_of(onnx_path)}
           opset {OPSET}, weights stored as {storage},
           batch dimension made dynamic (decoding gathers per image); outputs unchanged otherwise.

The licence of the source package ({LICENSE}) follows.

{files["license"].read_text(encoding="utf-8").strip()}
"""
    update_notice(path, onnx_path.name, body)


def main(argv=None) -> None:
    args = parse_converter_args(__doc__.split("\n")[0], argv)
    with package_workdir(args.workdir) as workdir:
        files = fetch_package(workdir)
        model_json = json.loads(files["json"].read_text(encoding="utf-8"))
        weights = read_weights(model_json, files["bin"].parent)
        print(f"read {len(weights)} weights from {PACKAGE}@{VERSION}")

        graph_def = build_graph_def(model_json, weights)
        print(f"split {split_fused_ops(graph_def)} fused ops")
        batch, used = load_check_images(args.check_images, size=512)
        # Reference: the unmodified (batch-1) graph, one image at a time.
        reference = np.concatenate([run_tensorflow(graph_def, image[None]) for image in batch])
        make_batch_dynamic(graph_def, model_json)
        batched = run_tensorflow(graph_def, batch)
        print(f"TF batched vs single-image: max abs diff {np.abs(batched - reference).max():.2e}")

        model = to_onnx(graph_def)
        onnx_fp32 = run_onnx(model, batch)
        print(f"ONNX fp32 vs TF: max abs diff {np.abs(onnx_fp32 - reference).max():.2e}")
        model = finish_model(args, model, batch)
        for path, detections in zip(used, onnx_fp32):
            print(f"  {Path(path).name}: (class, score) >= 0.3: {summarise(detections, 0.3)}")

        write_asset(args, model, lambda notice: write_notice(notice, files, args.output, fp16=not args.fp32))


if __name__ == "__main__":
    main()
