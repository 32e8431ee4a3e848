"""The embedded, offline detectors, run by onnxruntime on the CPU; the default is CenterNet (MobileNetV3, COCO-80).

The ONNX files ship inside the package (`diffusers_spatial/assets/`; provenance, checksums and licences in
`assets/NOTICE`; conversion scripts in `tools/`), so detection works the moment `pip install` finishes, with no
network and no GPU. Two models, by name (`EMBEDDED_MODELS`):

| model | classes | input | size | CPU time / image | licence |
| --- | --- | --- | --- | --- | --- |
| `centernet_mobilenetv3_coco` (default) | the 80 COCO classes | 512 x 512 | 4.2 MB | ~30 ms (2 cores, idle) | MIT |
| `ssd_mobilenetv2_oidv4` | 23 Open Images classes (person, dog, cat, bicycle, car, chair, laptop, mug, ...) | 300 x 300 | 10 MB | ~3x faster | Apache-2.0 |

CenterNet is the default because it sees every COCO class the spatial benchmarks use. The SSD is MediaPipe
Objectron's detector: it knows far fewer classes, but is faster and better on cats and dogs (CenterNet calls
scikit-image's cat a dog). Its labels are its own Open Images names, lowercased ("coffee cup", "cattle", "table");
`perception.labels.match_noun` maps prompt nouns onto them.

Both ONNX graphs take N x S x S x 3 float RGB in 0..255 (stretch-resized, not normalised) and return, per image,
candidate boxes as (x1, y1, x2, y2, score, class) in S-px coordinates. `EmbeddedDetector` resizes, runs the images
in batches, maps boxes back to each image's own pixels, clips them to the image, drops low scores and applies
non-maximum suppression (IoU 0.5, per class by default, as COCO detectors do).

Examples:

```py
>>> from diffusers_spatial.perception.embedded import EmbeddedDetector
>>> from diffusers_spatial.photos import load_photo
>>> detector = EmbeddedDetector()
>>> [(d["label"], [round(v) for v in d["box"]]) for d in detector.detect([load_photo("astronaut")])[0]]
[('person', [8, 9, 369, 512])]
>>> [d["label"] for d in EmbeddedDetector(model="ssd_mobilenetv2_oidv4").detect([load_photo("cat")])[0]]
['cat']

```
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ..geometry.boxes import paired_iou
from ..vocabulary import COCO_CLASSES
from .base import Queries, per_image_queries
from .images import check_pil_images

__all__ = [
    "DEFAULT_EMBEDDED_MODEL",
    "EMBEDDED_MODELS",
    "EmbeddedDetector",
    "EmbeddedDetectorConfig",
    "EmbeddedModel",
    "nms",
]

_INPUT_NAME = "images"
_OUTPUT_NAME = "detections"


@dataclasses.dataclass(frozen=True)
class EmbeddedModel:
    """A bundled ONNX detector: file in `diffusers_spatial/assets/`, its checksum, classes and input size.

    Args:
        name: the model's name, also the detector's `name`.
        file: ONNX file name inside `diffusers_spatial/assets/`.
        sha256: checksum of that file (also recorded in `assets/NOTICE`), checked when the model is loaded.
        labels: class names, in the order of the model's class indices.
        input_size: side of the square input in pixels.
        score_threshold: default score threshold, suited to the model's score scale.
        converter: the script in `tools/` that made the file.
    """

    name: str
    file: str
    sha256: str
    labels: tuple[str, ...]
    input_size: int
    score_threshold: float
    converter: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "centernet_mobilenetv3_coco": EmbeddedModel(
        name="centernet_mobilenetv3_coco",
        file="centernet_mobilenetv3_coco.onnx",
        sha256="7789af57976278ed28feec5affe295b85656758460bd3e3b0fff3bfa4e0b61cc",
        labels=COCO_CLASSES,
        input_size=512,
        score_threshold=0.3,  # true objects score 0.3-0.8
        converter="tools/convert_centernet.py",
    ),
    "ssd_mobilenetv2_oidv4": EmbeddedModel(
        name="ssd_mobilenetv2_oidv4",
        file="ssd_mobilenetv2_oidv4.onnx",
        sha256="1c7b58925161d445bc7b4f919b4d9e68bd6ce73f7ee75a63e14b0394a2d07404",
        labels=(
            "bicycle",
            "boot",
            "laptop",
            "person",
            "chair",
            "cattle",
            "desk",
            "cat",
            "computer mouse",
            "computer monitor",
            "box",
            "mug",
            "coffee cup",
            "stationary bicycle",
            "table",
            "bottle",
            "high heels",
            "vehicle",
            "footwear",
            "dog",
            "book",
            "camera",
            "car",
        ),
        input_size=300,
        score_threshold=0.5,  # MediaPipe keeps 0.6 and up for tracking; true objects score 0.5-0.85
        converter="tools/convert_ssd_oidv4.py",
    ),
}
"""The bundled detectors by name."""

DEFAULT_EMBEDDED_MODEL = "centernet_mobilenetv3_coco"


@dataclasses.dataclass
class EmbeddedDetectorConfig:
    """Options of `EmbeddedDetector`; every field can also be passed to the constructor as a keyword."""

    model: str = dataclasses.field(
        default=DEFAULT_EMBEDDED_MODEL, metadata={"help": f"Which bundled model: one of {sorted(EMBEDDED_MODELS)}."}
    )
    score_threshold: float | None = dataclasses.field(
        default=None,
        metadata={"help": "Drop detections scoring below this; None uses the model's own (CenterNet 0.3, SSD 0.5)."},
    )
    nms_iou: float = dataclasses.field(
        default=0.5, metadata={"help": "Suppress a box overlapping a higher-scoring one by more than this IoU."}
    )
    class_agnostic_nms: bool = dataclasses.field(
        default=False,
        metadata={"help": "Suppress across classes too (one label per object) instead of within each class."},
    )
    batch_size: int = dataclasses.field(
        default=1,
        metadata={
            "help": "Images per onnxruntime call. CenterNet takes any batch, but on a CPU 1 is fastest per image; "
            "the SSD always runs one image at a time."
        },
    )
    num_threads: int = dataclasses.field(
        default=0, metadata={"help": "onnxruntime intra-op threads; 0 lets onnxruntime use all physical cores."}
    )
    model_path: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "An ONNX file to run instead of the bundled one, with the same contract, classes and input size "
            "as `model` (e.g. a re-conversion); its checksum is not checked."
        },
    )

    def __post_init__(self):
        if self.model not in EMBEDDED_MODELS:
            raise ValueError(f"Unknown embedded model {self.model!r}; available: {sorted(EMBEDDED_MODELS)}")
        if self.score_threshold is not None and not (
            _is_number(self.score_threshold) and 0 <= self.score_threshold <= 1
        ):
            raise ValueError(f"score_threshold must be in [0, 1] or None, got {self.score_threshold!r}")
        if not (_is_number(self.nms_iou) and 0.0 < self.nms_iou <= 1.0):
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.num_threads, int) or self.num_threads < 0:
            raise ValueError(f"num_threads must be a non-negative integer, got {self.num_threads!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    Args:
        boxes: N x 4 array of (x1, y1, x2, y2).
        scores: N scores.
        iou_threshold: a box is dropped when its IoU with an already kept box is above this.

    Examples:

    ```py
    >>> import numpy as np
    >>> nms(np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]), np.array([0.9, 0.8, 0.7]), 0.5).tolist()
    [0, 2]

    ```
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iou = paired_iou(np.broadcast_to(boxes[best], (rest.size, 4)), boxes[rest])
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class EmbeddedDetector:
    """Object detector that ships with the package and runs offline on a CPU (tens of milliseconds per image).

    The onnxruntime session is created on first use (and re-created after unpickling, so the detector can be sent
    to worker processes). The bundled model's sha256 is checked when the session is created.

    Args:
        config: an `EmbeddedDetectorConfig`; keyword arguments override its fields (e.g. `model=`,
            `score_threshold=`).

    Examples:

    ```py
    >>> from PIL import Image
    >>> detector = EmbeddedDetector(score_threshold=0.4, num_threads=1)
    >>> detector.name, len(detector.labels)
    ('centernet_mobilenetv3_coco', 80)
    >>> detector.detect([Image.new("RGB", (64, 48), "gray")])
    [[]]

    ```
    """

    def __init__(self, config: EmbeddedDetectorConfig | None = None, **kwargs):
        config = config or EmbeddedDetectorConfig()
        fields = [f.name for f in dataclasses.fields(EmbeddedDetectorConfig)]
        unknown = sorted(set(kwargs) - set(fields))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for the embedded detector; valid: {fields}")
        self.config = dataclasses.replace(config, **kwargs) if kwargs else config
        self.spec = EMBEDDED_MODELS[self.config.model]
        self.name: str = self.spec.name
        self.labels: tuple[str, ...] = self.spec.labels
        self._session = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"config": self.config}

    def __setstate__(self, state):
        self.__init__(state["config"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    @property
    def score_threshold(self) -> float:
        """The threshold `detect` applies by default: the config's, or the model's own."""
        return self.spec.score_threshold if self.config.score_threshold is None else self.config.score_threshold

    @property
    def session(self):
        """The onnxruntime `InferenceSession`, created (and the model file checked) on first access."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._create_session()
        return self._session

    def _read_model(self) -> bytes:
        if self.config.model_path is not None:
            path = Path(self.config.model_path)
            if not path.is_file():
                raise FileNotFoundError(f"EmbeddedDetector model_path {str(path)!r} does not exist or is not a file")
            return path.read_bytes()
        asset = resources.files("diffusers_spatial") / "assets" / self.spec.file
        if not asset.is_file():
            raise FileNotFoundError(
                f"The embedded detector's model {asset} is missing: the package was installed without its data files. "
                f"Reinstall diffusers-spatial (pip keeps package data), or regenerate the file with "
                f"{self.spec.converter} (see tools/README.md)."
            )
        data = asset.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.spec.sha256:
            raise RuntimeError(
                f"The embedded detector's model {asset} is corrupt or was replaced: sha256 {digest}, expected "
                f"{self.spec.sha256}. Reinstall diffusers-spatial, or pass model_path= to use another file."
            )
        return data

    def _create_session(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = self.config.model_path or self.spec.file
        model = self._read_model()
        try:
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for unreadable models
            raise ValueError(f"{source!r} is not a valid ONNX model: {error}") from error
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != [_INPUT_NAME] or _OUTPUT_NAME not in outputs:
            size = self.spec.input_size
            raise ValueError(
                f"{source!r} is not an embedded-detector model: it has inputs {inputs} and outputs {outputs}, "
                f"expected input {_INPUT_NAME!r} (N x {size} x {size} x 3) and output {_OUTPUT_NAME!r} (N x K x 6)"
            )
        return session

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """N x S x S x 3 float32 batch (S the model's input size): RGB in 0..255, each image stretch-resized."""
        size = self.spec.input_size
        batch = np.empty((len(images), size, size, 3), dtype=np.float32)
        for i, image in enumerate(images):
            if image.mode != "RGB":
                image = image.convert("RGB")
            batch[i] = np.asarray(image.resize((size, size), Image.BILINEAR))
        return batch

    def postprocess(
        self,
        raw: np.ndarray,
        image_size: tuple[int, int],
        score_threshold: float,
        allowed: set[int] | None = None,
    ) -> list[dict]:
        """Detection dicts for one image from its K x 6 model output, in the image's pixels, best first."""
        width, height = image_size
        raw = raw[np.isfinite(raw).all(axis=1) & (raw[:, 4] >= score_threshold)]
        classes = raw[:, 5].astype(np.int64)
        valid = (classes >= 0) & (classes < len(self.labels))
        if allowed is not None:
            valid &= np.isin(classes, list(allowed))
        raw, classes = raw[valid], classes[valid]
        boxes = raw[:, :4] * np.array([width, height, width, height], dtype=np.float32) / self.spec.input_size
        boxes = np.clip(boxes, 0, [width, height, width, height])
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores, classes = boxes[nonempty], raw[nonempty, 4], classes[nonempty]
        if self.config.class_agnostic_nms:
            keep = nms(boxes, scores, self.config.nms_iou)
        else:
            # Offsetting each class to its own region makes one NMS call suppress only within a class.
            offsets = (classes * (max(width, height) + 1))[:, None].astype(np.float64)
            keep = nms(boxes + offsets, scores, self.config.nms_iou)
        return [
            {"label": self.labels[classes[i]], "score": float(scores[i]), "box": [float(v) for v in boxes[i]]}
            for i in keep
        ]

    def _allowed_classes(self, queries, count: int) -> list[set[int] | None]:
        index = {label: i for i, label in enumerate(self.labels)}
        allowed = []
        for names in per_image_queries(queries, count):
            unknown = [n for n in names or () if n not in index]
            if unknown:
                raise ValueError(
                    f"{self.name} detects only its {len(self.labels)} classes; not among them: {unknown}. Map prompt "
                    "nouns to classes first (perception.match_nouns reports the nouns a detector cannot see)."
                )
            allowed.append(None if names is None else {index[n] for n in names})
        return allowed

    def detect(
        self,
        images: Sequence[Image.Image],
        queries: Queries = None,
        score_threshold: float | None = None,
    ) -> list[list[dict]]:
        """Detect objects of the model's classes (`labels`) in each image.

        Args:
            images: RGB `PIL.Image.Image`s of any sizes (other modes are converted to RGB; for paths, arrays and
                16-bit images use `diffusers_spatial.perception.images`).
            queries: None for every class, a list of class names (from `labels`) kept for all images, or one such list
                per image.
            score_threshold: overrides the config's threshold for this call.

        Returns:
            One list per image of `{"label", "score", "box": [x1, y1, x2, y2]}` dicts in that image's pixels
            (clipped to the image), highest score first.
        """
        images = check_pil_images(images)
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        allowed = self._allowed_classes(queries, len(images))
        if not images:
            return []

        results = []
        fixed_batch = self.session.get_inputs()[0].shape[0]  # an int when the graph cannot take other batch sizes
        step = min(self.config.batch_size, fixed_batch) if isinstance(fixed_batch, int) else self.config.batch_size
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            raw = self.session.run([_OUTPUT_NAME], {_INPUT_NAME: self.preprocess(chunk)})[0]
            results += [
                self.postprocess(raw[j], image.size, threshold, allowed[start + j]) for j, image in enumerate(chunk)
            ]
        return results
