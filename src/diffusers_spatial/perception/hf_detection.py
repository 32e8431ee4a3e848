"""Hugging Face detectors: open vocabulary (OWL-ViT, OWLv2, Grounding DINO) and closed set (DETR family,
Mask2Former / MaskFormer instance segmentation), loaded by model id or local folder through transformers' Auto
classes, returning the package's detection format.

Every backend:

- takes RGB `PIL.Image.Image`s of any sizes and runs them in batches of `batch_size`;
- returns, per image, `{"label", "score", "box": [x1, y1, x2, y2]}` dicts in that image's own pixels, best
  score first, keeping scores strictly above `score_threshold` (the references' rule); boxes are as the model
  predicts them (not clipped), as the reference protocols use them; instance segmentation adds `"mask"`, an
  H x W bool array at the image's size, and its box is the mask's bounding box (as mmdetection does);
- for open vocabulary, labels are the query nouns themselves (the text template, e.g. "a photo of a {noun}",
  is only what the model reads);
- reads weights from safetensors only, and refuses a checkpoint whose weights do not fit the architecture.

`load_hf_detector` chooses the backend from the config's `model_type`.

Examples:

```py
>>> from diffusers_spatial.perception.hf_detection import load_hf_detector
>>> detector = load_hf_detector("google/owlv2-base-patch16-ensemble", device="cuda")  # doctest: +SKIP
>>> detector.detect([image], queries=["dog", "bicycle"])  # doctest: +SKIP
[[{'label': 'dog', 'score': 0.61, 'box': [128.4, 221.0, 313.9, 540.2]}, ...]]

```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from diffusers.utils import logging

from .base import (
    ModelLoadError,
    Queries,
    ResolvedModel,
    load_pretrained,
    load_processor,
    per_image_queries,
    resolve_device,
    resolve_dtype,
    resolve_model,
)
from .images import check_rgb_images

__all__ = [
    "GroundingDinoDetector",
    "HFDetector",
    "InstanceSegmentationDetector",
    "ObjectDetector",
    "OwlDetector",
    "detector_class_for",
    "load_hf_detector",
]

logger = logging.get_logger(__name__)

OWL_MODEL_TYPES = ("owlvit", "owlv2")
GROUNDING_DINO_MODEL_TYPES = ("grounding-dino", "mm-grounding-dino")
INSTANCE_SEGMENTATION_MODEL_TYPES = ("mask2former", "maskformer")

DEFAULT_SCORE_THRESHOLDS: dict[str, float] = {
    "owlvit": 0.1,
    "owlv2": 0.1,
    "grounding-dino": 0.35,
    "mm-grounding-dino": 0.35,
    "mask2former": 0.3,
    "maskformer": 0.3,
}
"""Per-architecture default score thresholds (VISOR's 0.1 for OWL, the Grounding DINO demo's 0.35, GenEval's 0.3
for Mask2Former); other closed-set detectors default to `DEFAULT_CLOSED_SET_SCORE_THRESHOLD`."""
DEFAULT_CLOSED_SET_SCORE_THRESHOLD = 0.5


class HFDetector:
    """Common loading, batching and output handling of the Hugging Face detector backends.

    Args:
        model_name_or_path: Hugging Face model id or local folder (`save_pretrained` output).
        device: torch device ("cuda", "cuda:1", "cpu"...); default CUDA when available, else CPU.
        torch_dtype: weights' dtype (torch dtype or name such as "float16"); default float32.
        score_threshold: keep detections scoring strictly above this; default per architecture (`DEFAULT_SCORE_THRESHOLDS`).
        batch_size: images per forward pass.
        max_per_label: keep at most this many detections per label (best first); None keeps all.
    """

    auto_model_class = ""  # name of the transformers Auto class
    auto_processor_class = "AutoImageProcessor"
    model_types: tuple[str, ...] = ()
    open_vocabulary = False

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | ResolvedModel,
        *,
        device: Any = None,
        torch_dtype: Any = None,
        score_threshold: float | None = None,
        batch_size: int = 8,
        max_per_label: int | None = None,
    ):
        resolved = (
            model_name_or_path
            if isinstance(model_name_or_path, ResolvedModel)
            else resolve_model(model_name_or_path, "detector")
        )
        self._check_architecture(resolved)
        if score_threshold is None:
            score_threshold = DEFAULT_SCORE_THRESHOLDS.get(resolved.model_type, DEFAULT_CLOSED_SET_SCORE_THRESHOLD)
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_per_label is not None and (not isinstance(max_per_label, int) or max_per_label < 1):
            raise ValueError(f"max_per_label must be a positive integer or None, got {max_per_label!r}")
        import transformers

        self.name = resolved.name
        self.model_type = resolved.model_type
        self.score_threshold = float(score_threshold)
        self.batch_size = batch_size
        self.max_per_label = max_per_label
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(torch_dtype)
        self.processor = load_processor(getattr(transformers, self.auto_processor_class), resolved, "detector")
        model = load_pretrained(getattr(transformers, self.auto_model_class), resolved, "detector", dtype=self.dtype)
        self.model = model.to(self.device)

    def __repr__(self) -> str:
        name, threshold = getattr(self, "name", "?"), getattr(self, "score_threshold", None)
        return f"{type(self).__name__}({name!r}, score_threshold={threshold}, device={str(getattr(self, 'device', None))!r})"

    @classmethod
    def _check_architecture(cls, resolved: ResolvedModel) -> None:
        if resolved.model_type not in cls.model_types:
            raise ModelLoadError(
                f"detector model {resolved.name!r} is a {resolved.model_type!r} model, which {cls.__name__} does not "
                f"run (it runs {list(cls.model_types)}); use load_hf_detector to pick the backend"
            )

    @property
    def labels(self) -> tuple[str, ...] | None:
        """Class names (closed set) or None (open vocabulary)."""
        return None

    def detect(self, images: Sequence[Any], queries: Queries = None) -> list[list[dict[str, Any]]]:
        """Detect objects in each image.

        Args:
            images: RGB `PIL.Image.Image`s (see `perception.images` for paths, arrays and odd modes).
            queries: open vocabulary: the nouns to look for (required), one list for all images or one per image;
                closed set: class names to keep (None keeps every class).

        Returns:
            One list per image of detection dicts in that image's pixels, best score first.
        """
        images = check_rgb_images(images)
        per_image = per_image_queries(queries, len(images))
        results: list[list[dict[str, Any]]] = []
        for start in range(0, len(images), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            results += self._detect_batch(images[chunk], per_image[chunk])
        return [self._limit_per_label(sorted(r, key=lambda d: -d["score"])) for r in results]

    def _detect_batch(self, images: list[Any], queries: list[list[str] | None]) -> list[list[dict[str, Any]]]:
        raise NotImplementedError

    def _limit_per_label(self, detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.max_per_label is None:
            return detections
        counts: dict[str, int] = {}
        kept = []
        for detection in detections:
            counts[detection["label"]] = counts.get(detection["label"], 0) + 1
            if counts[detection["label"]] <= self.max_per_label:
                kept.append(detection)
        return kept

    def _forward(self, inputs: Any) -> Any:
        """The model's outputs for processor `inputs` (moved to its device and dtype), without gradients."""
        import torch

        with torch.no_grad():
            return self.model(**self._to_device(inputs))

    def _to_device(self, inputs: Any) -> dict[str, Any]:
        """Move processor outputs to the model's device; floating tensors (pixels) also to its dtype."""
        moved = {}
        for key, value in inputs.items():
            if hasattr(value, "to"):
                value = value.to(self.device, dtype=self.dtype) if value.is_floating_point() else value.to(self.device)
            moved[key] = value
        return moved


class _ClosedSetMixin:
    """Class names from `config.id2label`; queries filter classes."""

    model: Any
    name: str

    @property
    def labels(self) -> tuple[str, ...]:
        id2label = self.model.config.id2label
        names = [id2label[i] for i in sorted(id2label, key=int)]
        return tuple(dict.fromkeys(n for n in names if n != "N/A"))  # DETR's COCO map has "N/A" holes

    def _allowed(self, queries: list[str] | None) -> set[str] | None:
        if queries is None:
            return None
        labels = self.labels  # rebuilt from id2label on each access
        unknown = [q for q in queries if q not in labels]
        if unknown:
            raise ValueError(
                f"{self.name} detects only its {len(labels)} classes; not among them: {unknown}. Map prompt "
                "nouns to classes first (perception.labels.match_nouns says which nouns a detector cannot see)."
            )
        return set(queries)


class OwlDetector(HFDetector):
    """OWL-ViT / OWLv2 open-vocabulary detection (`AutoModelForZeroShotObjectDetection`).

    Each box gets the query it scores highest on (as the reference post-processing does); queries of the other
    images in a batch never leak into an image's results.

    Args:
        query_template: how a noun becomes the text query; default "a photo of a {noun}" (OWL-ViT's and VISOR's).
        **kwargs: see `HFDetector`.
    """

    auto_model_class = "AutoModelForZeroShotObjectDetection"
    auto_processor_class = "AutoProcessor"
    model_types = OWL_MODEL_TYPES
    open_vocabulary = True

    def __init__(self, model_name_or_path: Any, *, query_template: str = "a photo of a {noun}", **kwargs: Any):
        self.query_template = _check_template(query_template)
        super().__init__(model_name_or_path, **kwargs)

    def _detect_batch(self, images, queries):
        results, todo, nouns = _queried_images(queries, self.name)
        if not todo:
            return results
        texts = [[self.query_template.format(noun=noun) for noun in per_image] for per_image in nouns]
        inputs = self.processor(text=texts, images=[images[i] for i in todo], return_tensors="pt", truncation=True)
        outputs = self._forward(inputs)
        logits = outputs.logits.float().cpu()
        for row, per_image in enumerate(nouns):  # the processor pads every image to the longest query list
            logits[row, :, len(per_image) :] = float("-inf")
        outputs.logits = logits
        outputs.pred_boxes = outputs.pred_boxes.float().cpu()
        sizes = [(images[i].height, images[i].width) for i in todo]
        processed = self.processor.image_processor.post_process_object_detection(
            outputs, threshold=self.score_threshold, target_sizes=sizes
        )
        for row, (i, output) in enumerate(zip(todo, processed)):
            results[i] = _detections(output["boxes"], output["scores"], [nouns[row][int(k)] for k in output["labels"]])
        return results


class GroundingDinoDetector(HFDetector):
    """Grounding DINO open-vocabulary detection (`AutoModelForZeroShotObjectDetection`).

    The queries of an image are joined into one caption ("cat. dog."); each box takes the query whose tokens
    score highest, and is kept when its best token scores above `score_threshold` (the box threshold) and that query
    scores above `text_threshold`.

    Args:
        query_template: how a noun becomes its phrase in the caption; default "{noun}".
        text_threshold: minimum score of the chosen query's tokens; default 0.25.
        **kwargs: see `HFDetector`.
    """

    auto_model_class = "AutoModelForZeroShotObjectDetection"
    auto_processor_class = "AutoProcessor"
    model_types = GROUNDING_DINO_MODEL_TYPES
    open_vocabulary = True

    def __init__(
        self, model_name_or_path: Any, *, query_template: str = "{noun}", text_threshold: float = 0.25, **kwargs: Any
    ):
        self.query_template = _check_template(query_template)
        if not 0.0 <= float(text_threshold) <= 1.0:
            raise ValueError(f"text_threshold must be in [0, 1], got {text_threshold!r}")
        self.text_threshold = float(text_threshold)
        super().__init__(model_name_or_path, **kwargs)

    def _phrase(self, noun: str) -> str:
        # "." separates phrases in the caption, so it cannot appear inside one.
        return " ".join(self.query_template.format(noun=noun).replace(".", " ").lower().split())

    def _detect_batch(self, images, queries):
        import torch

        results, todo, nouns = _queried_images(queries, self.name)
        if not todo:
            return results
        captions = [". ".join(self._phrase(noun) for noun in per_image) + "." for per_image in nouns]
        inputs = self.processor(
            images=[images[i] for i in todo], text=captions, return_tensors="pt", padding=True, truncation=True
        )
        outputs = self._forward(inputs)
        probs = outputs.logits.float().sigmoid().cpu()  # (batch, boxes, max_text_len)
        boxes = _center_to_corners(outputs.pred_boxes.float().cpu())
        input_ids = inputs["input_ids"].cpu()
        for row, i in enumerate(todo):
            spans = self._phrase_spans(input_ids[row].tolist())
            if len(spans) < len(nouns[row]):
                logger.warning(
                    f"{self.name}: the caption of image {i} was truncated; only its first {len(spans)} of "
                    f"{len(nouns[row])} queries are searched"
                )
            spans = spans[: len(nouns[row])]
            if not spans:
                continue
            token_probs = probs[row, :, : input_ids.shape[1]]
            box_scores = token_probs.max(dim=-1).values
            query_scores = torch.stack([token_probs[:, a:b].max(dim=-1).values for a, b in spans], dim=-1)
            best_score, best_query = query_scores.max(dim=-1)
            keep = (box_scores > self.score_threshold) & (best_score > self.text_threshold)
            width, height = images[i].size
            scaled = boxes[row] * torch.tensor([width, height, width, height])
            results[i] = _detections(scaled[keep], box_scores[keep], [nouns[row][int(k)] for k in best_query[keep]])
        return results

    def _phrase_spans(self, ids: list[int]) -> list[tuple[int, int]]:
        """Token ranges [start, end) of the caption's phrases, split at "." and special tokens."""
        tokenizer = self.processor.tokenizer
        separators = set(tokenizer.all_special_ids) | {tokenizer.convert_tokens_to_ids(".")}
        spans, start = [], None
        for position, token in enumerate(ids):
            if token in separators:
                if start is not None:
                    spans.append((start, position))
                start = None
            elif start is None:
                start = position
        if start is not None:
            spans.append((start, len(ids)))
        return spans


class ObjectDetector(_ClosedSetMixin, HFDetector):
    """Closed-set detection with any `AutoModelForObjectDetection` model (DETR, Conditional / Deformable DETR,
    RT-DETR, YOLOS, ...), using the model's own post-processing; labels come from `config.id2label`."""

    auto_model_class = "AutoModelForObjectDetection"

    @classmethod
    def _check_architecture(cls, resolved: ResolvedModel) -> None:
        if detector_class_for(resolved) is not cls:
            raise ModelLoadError(
                f"detector model {resolved.name!r} is a {resolved.model_type!r} model, which {cls.__name__} does "
                "not run; use load_hf_detector to pick the backend"
            )

    def _detect_batch(self, images, queries):
        inputs = self.processor(images=images, return_tensors="pt")
        outputs = self._forward(inputs)
        for key in ("logits", "pred_boxes"):  # post-process on the CPU, in float32
            if getattr(outputs, key, None) is not None:
                setattr(outputs, key, getattr(outputs, key).float().cpu())
        processed = self.processor.post_process_object_detection(
            outputs, threshold=self.score_threshold, target_sizes=[(image.height, image.width) for image in images]
        )
        id2label = self.model.config.id2label
        results = []
        for output, per_image in zip(processed, queries):
            allowed = self._allowed(per_image)
            names = [id2label.get(int(k), str(int(k))) for k in output["labels"]]
            keep = [n != "N/A" and (allowed is None or n in allowed) for n in names]
            results.append(
                _detections(
                    output["boxes"][keep] if any(keep) else output["boxes"][:0],
                    output["scores"][keep] if any(keep) else output["scores"][:0],
                    [n for n, k in zip(names, keep) if k],
                )
            )
        return results


class InstanceSegmentationDetector(_ClosedSetMixin, HFDetector):
    """Mask2Former / MaskFormer instance segmentation (`AutoModelForUniversalSegmentation`), giving masks.

    Post-processing follows mmdetection's (GenEval's detector): class scores are the softmax without the
    "no object" class, the best `num_queries` (query, class) pairs are kept, a mask is its logits > 0 after
    upsampling to the padded input, cropping the padding and resizing to the image, and the score is the class
    score times the mean mask probability inside the mask. The box is the mask's bounding box. Unlike
    transformers' `post_process_instance_segmentation`, padding is cropped before resizing, so masks of images
    batched with larger ones stay aligned.
    """

    auto_model_class = "AutoModelForUniversalSegmentation"
    model_types = INSTANCE_SEGMENTATION_MODEL_TYPES

    def _detect_batch(self, images, queries):
        import torch
        import torch.nn.functional as F

        inputs = self.processor(images=images, return_tensors="pt")
        outputs = self._forward(inputs)
        class_logits = outputs.class_queries_logits.float()
        mask_logits = outputs.masks_queries_logits.float()
        padded_size = tuple(inputs["pixel_values"].shape[-2:])
        pixel_mask = inputs.get("pixel_mask")
        id2label = self.model.config.id2label
        results = []
        for row, (image, per_image) in enumerate(zip(images, queries)):
            allowed = self._allowed(per_image)
            if pixel_mask is not None:
                valid_h = int(pixel_mask[row].any(dim=1).sum())
                valid_w = int(pixel_mask[row].any(dim=0).sum())
            else:
                valid_h, valid_w = padded_size
            scores = class_logits[row].softmax(dim=-1)[:, :-1]  # drop "no object"
            num_queries, num_classes = scores.shape
            top_scores, top_index = scores.flatten().topk(min(num_queries, scores.numel()))
            # The final score is class score x mask score <= class score: drop hopeless candidates early.
            candidates = top_scores > self.score_threshold
            top_scores, top_index = top_scores[candidates], top_index[candidates]
            classes = (top_index % num_classes).tolist()
            if allowed is not None:
                wanted = [id2label.get(c, str(c)) in allowed for c in classes]
                wanted = torch.tensor(wanted, dtype=torch.bool, device=top_scores.device)
                top_scores, top_index = top_scores[wanted], top_index[wanted]
                classes = [c for c, w in zip(classes, wanted.tolist()) if w]
            if not classes:
                results.append([])
                continue
            masks = mask_logits[row, top_index // num_classes][None]
            masks = F.interpolate(masks, size=padded_size, mode="bilinear", align_corners=False)
            masks = masks[:, :, :valid_h, :valid_w]
            masks = F.interpolate(masks, size=(image.height, image.width), mode="bilinear", align_corners=False)[0]
            binary = masks > 0
            mask_scores = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
            final = top_scores.to(mask_scores.device) * mask_scores
            detections = []
            for k, cls in enumerate(classes):
                label = id2label.get(cls, str(cls))
                if final[k] <= self.score_threshold or label == "N/A" or not binary[k].any():
                    continue
                mask = binary[k].cpu().numpy()
                detections.append({"label": label, "score": float(final[k]), "box": _mask_box(mask), "mask": mask})
            results.append(detections)
        return results


_BACKENDS: tuple[type[HFDetector], ...] = (OwlDetector, GroundingDinoDetector, InstanceSegmentationDetector)


def detector_class_for(resolved: ResolvedModel) -> type[HFDetector]:
    """The backend class that runs a model, from its config's `model_type`.

    Raises:
        ModelLoadError: the model is not a detector we can run (the message names it and lists what is).
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES

    for backend in _BACKENDS:
        if resolved.model_type in backend.model_types:
            return backend
    if resolved.model_type in MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES:
        return ObjectDetector
    supported = [*OWL_MODEL_TYPES, *GROUNDING_DINO_MODEL_TYPES, *INSTANCE_SEGMENTATION_MODEL_TYPES]
    hint = (
        " (it is a depth model: use load_depth_estimator)" if resolved.model_type in ("dpt", "depth_anything") else ""
    )
    raise ModelLoadError(
        f"detector model {resolved.name!r} is a {resolved.model_type!r} model "
        f"({', '.join(resolved.architectures) or 'no architectures listed'}), not a supported detector{hint}; "
        f"supported: {supported} and the AutoModelForObjectDetection models (detr, yolos, rt_detr, ...)"
    )


def load_hf_detector(model_name_or_path: str | os.PathLike, **kwargs: Any) -> HFDetector:
    """Load a Hugging Face detector by model id or local folder, choosing the backend from its config.

    Args:
        model_name_or_path: Hub model id (e.g. "google/owlv2-base-patch16-ensemble") or `save_pretrained` folder.
        **kwargs: `device`, `torch_dtype`, `score_threshold`, `batch_size`, `max_per_label`; `query_template` (open
            vocabulary); `text_threshold` (Grounding DINO). Options that do not apply to the chosen backend are
            ignored with a warning, so one set of options can serve several models.

    Raises:
        ModelLoadError: (a ValueError) the path is missing, holds no model, or a model that is not a detector.
    """
    resolved = resolve_model(model_name_or_path, "detector")
    backend = detector_class_for(resolved)
    ignored = []
    if not backend.open_vocabulary and "query_template" in kwargs:
        ignored.append(kwargs.pop("query_template"))
    if backend is not GroundingDinoDetector and "text_threshold" in kwargs:
        ignored.append(kwargs.pop("text_threshold"))
    if ignored:
        logger.warning(f"{resolved.name!r} is a {resolved.model_type!r} model: ignoring options {ignored}")
    return backend(resolved, **kwargs)


def _require_queries(queries: list[list[str] | None], name: str) -> list[list[str]]:
    if any(q is None for q in queries):
        raise ValueError(f"{name} is an open-vocabulary detector: pass queries, the nouns to look for")
    return queries  # type: ignore[return-value]


def _queried_images(
    queries: list[list[str] | None], name: str
) -> tuple[list[list[dict[str, Any]]], list[int], list[list[str]]]:
    """For an open-vocabulary batch: empty results per image, the indices of the images with queries, and each such
    image's distinct nouns."""
    results: list[list[dict[str, Any]]] = [[] for _ in queries]
    todo = [i for i, q in enumerate(_require_queries(queries, name)) if q]
    return results, todo, [_unique(queries[i]) for i in todo]


def _check_template(template: str) -> str:
    if not isinstance(template, str) or "{noun}" not in template:
        raise ValueError(f"query_template must be a string containing '{{noun}}', got {template!r}")
    return template


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _center_to_corners(boxes: Any) -> Any:
    import torch

    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _detections(boxes: Any, scores: Any, labels: list[str]) -> list[dict[str, Any]]:
    boxes = boxes.detach().float().cpu().tolist()
    scores = scores.detach().float().cpu().tolist()
    return [
        {"label": label, "score": float(score), "box": [float(v) for v in box]}
        for box, score, label in zip(boxes, scores, labels)
    ]


def _mask_box(mask: np.ndarray) -> list[float]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]
