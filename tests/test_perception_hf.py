"""Hugging Face detection and depth backends, end to end on tiny models built from configs.

Each architecture (OWL-ViT, OWLv2, Grounding DINO, DETR, Mask2Former, DPT, Depth Anything) is built from a tiny
config with random weights, saved with `save_pretrained` (safetensors) next to a processor built offline, and
loaded back by path through `load_detector` / `load_depth_estimator`: the code path a user with the Hub runs.
Random weights give arbitrary boxes, so these tests check formats, coordinate frames and batching, not accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusers_spatial.perception import (
    DETECTOR_PRESETS,
    ModelLoadError,
    load_depth_estimator,
    load_detector,
)
from diffusers_spatial.perception import base as perception_base
from diffusers_spatial.perception.hf_depth import HFDepthEstimator
from diffusers_spatial.perception.hf_detection import (
    GroundingDinoDetector,
    InstanceSegmentationDetector,
    ObjectDetector,
    OwlDetector,
)
from diffusers_spatial.utils import tiny_clip_tokenizer

LABELS = {0: "cat", 1: "dog", 2: "N/A", 3: "person"}  # DETR-style id2label with a hole

# ---------------------------------------------------------------------------------------------------------------
# Tiny models, saved like Hub checkpoints (used by test_perception_batching too).


def _owl_text_vision(tokenizer) -> dict:
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": tokenizer.model_max_length,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    return {"text_config": text, "vision_config": vision, "projection_dim": 16}


def make_tiny_owlvit(path, version: int = 1) -> str:
    """OWL-ViT (version 1) or OWLv2 (version 2): 32 px input, 16 patches, one-layer text and vision towers."""
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2Processor,
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTProcessor,
    )
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil
    from transformers.models.owlvit.image_processing_pil_owlvit import OwlViTImageProcessorPil

    torch.manual_seed(0)
    tokenizer = tiny_clip_tokenizer(model_max_length=32)
    size = {"height": 32, "width": 32}
    if version == 1:
        model = OwlViTForObjectDetection(OwlViTConfig(**_owl_text_vision(tokenizer)))
        processor = OwlViTProcessor(OwlViTImageProcessorPil(size=size, crop_size=size), tokenizer)
    else:
        model = Owlv2ForObjectDetection(Owlv2Config(**_owl_text_vision(tokenizer)))
        processor = Owlv2Processor(Owlv2ImageProcessorPil(size=size), tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def make_tiny_grounding_dino(path) -> str:
    """Grounding DINO with a one-layer BERT, a 4-stage Swin of width 8 and a 32-d transformer; 10 queries."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "photo", "of", "cat", "dog", "person", "red"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(path / "vocab.txt"), model_max_length=32)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            image_size=32,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=2,
            out_indices=[2, 3, 4],
        ),  # fmt: skip
        text_config=BertConfig(
            vocab_size=len(words),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        ),  # fmt: skip
        d_model=32,  # GroupNorm(32, d_model) in the input projections
        num_queries=10,
        encoder_layers=1,
        decoder_layers=2,  # the shared box head needs two decoder layers to tie
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_feature_levels=3,
        encoder_n_points=1,
        decoder_n_points=1,
        max_text_len=32,
    )
    GroundingDinoForObjectDetection(config).save_pretrained(path)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 32, "longest_edge": 48})
    GroundingDinoProcessor(image_processor, tokenizer).save_pretrained(path)
    return str(path)


def make_tiny_detr(path) -> str:
    """DETR with a tiny ResNet backbone (no timm), one encoder and decoder layer, 5 queries, 3 classes + a hole."""
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    torch.manual_seed(0)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1], out_features=["stage4"])
    config = DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=5,
        id2label=LABELS,
    )
    DetrForObjectDetection(config).save_pretrained(path)
    DetrImageProcessorPil(size={"shortest_edge": 32, "longest_edge": 48}).save_pretrained(path)
    return str(path)


def make_tiny_mask2former(path) -> str:
    """Mask2Former with a tiny Swin backbone, 32-d pixel decoder, 5 queries, 3 classes + a hole."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
    from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

    torch.manual_seed(0)
    backbone = SwinConfig(
        image_size=32, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    config = Mask2FormerConfig(
        backbone_config=backbone,
        feature_size=32,  # GroupNorm(32, ...) in the pixel decoder
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=16,
        dim_feedforward=16,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        num_queries=5,
        id2label=LABELS,
    )
    Mask2FormerForUniversalSegmentation(config).save_pretrained(path)
    Mask2FormerImageProcessorPil(size={"shortest_edge": 32, "longest_edge": 48}).save_pretrained(path)
    return str(path)


def make_tiny_dpt(path) -> str:
    """DPT (ViT backbone, 4 layers of width 16), 32 x 32 input (square, as dpt-large's processor)."""
    from transformers import DPTConfig, DPTForDepthEstimation
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    torch.manual_seed(0)
    config = DPTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        head_in_index=-1,
    )
    DPTForDepthEstimation(config).save_pretrained(path)
    DPTImageProcessorPil(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(path)
    return str(path)


def make_tiny_depth_anything(path, depth_estimation_type: str = "relative") -> str:
    """Depth Anything with a 2-layer DINOv2 backbone; its processor keeps the aspect ratio (multiples of 14)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    torch.manual_seed(0)
    backbone = Dinov2Config(
        image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, out_features=["stage1", "stage2"], reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        patch_size=14,
        neck_hidden_sizes=[8, 8],
        fusion_hidden_size=8,
        head_hidden_size=8,
        reassemble_factors=[4, 2],
        depth_estimation_type=depth_estimation_type,
        max_depth=20,
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(path)
    processor = DPTImageProcessorPil(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14)
    processor.save_pretrained(path)
    return str(path)


BUILDERS = {
    "owlvit": make_tiny_owlvit,
    "owlv2": lambda path: make_tiny_owlvit(path, version=2),
    "grounding-dino": make_tiny_grounding_dino,
    "detr": make_tiny_detr,
    "mask2former": make_tiny_mask2former,
    "dpt": make_tiny_dpt,
    "depth_anything": make_tiny_depth_anything,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """name -> folder of the saved tiny model, built on first use."""
    root = tmp_path_factory.mktemp("tiny_perception")
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            built[name] = BUILDERS[name](root / name)
        return built[name]

    return get


def _images():
    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8))
    tall = Image.fromarray(rng.integers(0, 255, (64, 36, 3), dtype=np.uint8))
    return [wide, tall]


def _check_detections(results, images, labels):
    assert len(results) == len(images)
    for detections in results:
        scores = [d["score"] for d in detections]
        assert scores == sorted(scores, reverse=True)
        for d in detections:
            assert {"label", "score", "box"} <= set(d)
            assert d["label"] in labels
            assert isinstance(d["score"], float) and 0.0 <= d["score"] <= 1.0
            assert len(d["box"]) == 4 and all(isinstance(v, float) for v in d["box"])
            x1, y1, x2, y2 = d["box"]
            assert x1 <= x2 and y1 <= y2


def _corners(pred_boxes: torch.Tensor) -> np.ndarray:
    cx, cy, w, h = pred_boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).numpy()


def _assert_same_detections(found, expected):
    assert [d["label"] for d in found] == [d["label"] for d in expected]
    np.testing.assert_allclose([d["score"] for d in found], [d["score"] for d in expected], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        np.reshape([d["box"] for d in found], (-1, 4)), np.reshape([d["box"] for d in expected], (-1, 4)), atol=1e-3
    )


def _same_boxes(found: list[list[float]], expected: np.ndarray) -> bool:
    order = lambda boxes: np.array(sorted(map(tuple, np.round(np.asarray(boxes, dtype=np.float64), 3))))  # noqa: E731
    return len(found) == len(expected) and np.allclose(order(found), order(expected), atol=2e-3)


# ---------------------------------------------------------------------------------------------------------------
# Open vocabulary


@pytest.mark.parametrize("version", [1, 2])
def test_owl_detects_queries_per_image_in_original_pixels(tiny, version):
    path = tiny("owlvit" if version == 1 else "owlv2")
    detector = load_detector(path, score_threshold=0.0, device="cpu")
    assert isinstance(detector, OwlDetector) and detector.labels is None and detector.name == path
    images = _images()
    queries = [["cat", "dog"], ["person"]]
    results = detector.detect(images, queries)
    _check_detections(results, images, {"cat", "dog", "person"})
    # Queries never leak across images of a batch (the processor pads every query list to the longest).
    assert {d["label"] for d in results[1]} == {"person"}
    assert {d["label"] for d in results[0]} <= {"cat", "dog"}

    # Coordinate frame: the model's normalised boxes times the image size (OWLv2 pads to a square: max side).
    inputs = detector.processor(text=[["a photo of a person"]], images=[images[1]], return_tensors="pt")
    with torch.no_grad():
        raw = detector.model(**inputs).pred_boxes[0]
    width, height = images[1].size
    scale = [width, height, width, height] if version == 1 else [max(width, height)] * 4
    assert _same_boxes([d["box"] for d in results[1]], _corners(raw) * scale)


def test_owl_threshold_template_and_batch_size(tiny):
    path = tiny("owlvit")
    images = _images()
    everything = load_detector(path, score_threshold=0.0).detect(images, ["cat"])
    cut = float(np.median([d["score"] for d in everything[0]]))
    strict = load_detector(path, score_threshold=cut, batch_size=1).detect(images, ["cat"])
    assert 0 < len(strict[0]) < len(everything[0])
    for all_found, kept in zip(everything, strict):
        _assert_same_detections(kept, [d for d in all_found if d["score"] > cut])
    templated = load_detector(path, score_threshold=0.0, query_template="{noun}").detect(images[:1], ["cat"])[0]
    assert {d["label"] for d in templated} == {"cat"}  # the label is the noun, not the query text
    assert [d["score"] for d in templated] != [d["score"] for d in everything[0]]  # the model read another text


def test_open_vocabulary_needs_queries(tiny):
    detector = load_detector(tiny("owlvit"))
    with pytest.raises(ValueError, match="open-vocabulary detector: pass queries"):
        detector.detect(_images())
    assert detector.detect(_images(), [[], []]) == [[], []]
    with pytest.raises(ValueError, match="2 query lists for 1 images|got 2 query lists for 1 images"):
        detector.detect(_images()[:1], [["cat"], ["dog"]])
    with pytest.raises(ValueError, match="query_template"):
        load_detector(tiny("owlvit"), query_template="a photo")


def test_grounding_dino_labels_each_box_with_a_query(tiny):
    path = tiny("grounding-dino")
    detector = load_detector(path, score_threshold=0.0, text_threshold=0.0)
    assert isinstance(detector, GroundingDinoDetector) and detector.labels is None
    images = _images()
    results = detector.detect(images, [["cat", "dog"], ["person", "red dog"]])
    _check_detections(results, images, {"cat", "dog", "person", "red dog"})
    assert {d["label"] for d in results[0]} <= {"cat", "dog"}
    assert {d["label"] for d in results[1]} <= {"person", "red dog"}
    assert all(len(r) == 10 for r in results)  # 10 queries, thresholds 0: every box is kept

    # Coordinate frame: normalised to each unpadded image (the batch pads the smaller one), scaled by its own size.
    captions = ["cat. dog.", "person. red dog."]
    inputs = detector.processor(images=images, text=captions, return_tensors="pt", padding=True)
    with torch.no_grad():
        raw = detector.model(**inputs).pred_boxes
    for row, image in enumerate(images):
        width, height = image.size
        assert _same_boxes([d["box"] for d in results[row]], _corners(raw[row]) * [width, height, width, height])

    phrase_spans = detector._phrase_spans(inputs["input_ids"][1].tolist())
    assert len(phrase_spans) == 2  # "person" | "red dog"
    stricter = load_detector(path, score_threshold=0.0, text_threshold=0.99).detect(images, [["cat"], ["dog"]])
    assert sum(map(len, stricter)) <= sum(map(len, detector.detect(images, [["cat"], ["dog"]])))


# ---------------------------------------------------------------------------------------------------------------
# Closed set


def test_detr_closed_set_labels_and_class_filter(tiny):
    path = tiny("detr")
    detector = load_detector(path, score_threshold=0.0)
    assert isinstance(detector, ObjectDetector)
    assert detector.labels == ("cat", "dog", "person")  # "N/A" holes are not classes
    images = _images()
    results = detector.detect(images)
    _check_detections(results, images, set(detector.labels))

    inputs = detector.processor(images=images[:1], return_tensors="pt")
    with torch.no_grad():
        outputs = detector.model(**inputs)
    keep = outputs.logits[0].softmax(-1)[:, :-1].argmax(-1) != 2  # the "N/A" class is dropped
    width, height = images[0].size
    expected = _corners(outputs.pred_boxes[0][keep]) * [width, height, width, height]
    assert _same_boxes([d["box"] for d in results[0]], expected)

    only_dogs = detector.detect(images, ["dog"])
    for found, everything in zip(only_dogs, results):
        _assert_same_detections(found, [d for d in everything if d["label"] == "dog"])
    with pytest.raises(ValueError, match=r"not among them: \['giraffe'\]"):
        detector.detect(images, ["giraffe"])


def test_mask2former_gives_masks_at_the_image_size(tiny):
    path = tiny("mask2former")
    detector = load_detector(path, score_threshold=0.0)
    assert isinstance(detector, InstanceSegmentationDetector)
    assert detector.labels == ("cat", "dog", "person")
    images = _images()
    results = detector.detect(images)
    _check_detections(results, images, set(detector.labels))
    assert any(results)
    for detections, image in zip(results, images):
        for d in detections:
            mask = d["mask"]
            assert mask.dtype == bool and mask.shape == (image.height, image.width) and mask.any()
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert d["box"] == [cols[0], rows[0], cols[-1] + 1.0, rows[-1] + 1.0]  # the mask's bounding box

    capped = load_detector(path, score_threshold=0.0, max_per_label=1).detect(images)
    for detections in capped:
        labels = [d["label"] for d in detections]
        assert len(labels) == len(set(labels))
    for found, everything in zip(detector.detect(images, ["cat"]), results):
        _assert_same_detections(found, [d for d in everything if d["label"] == "cat"])


# ---------------------------------------------------------------------------------------------------------------
# Depth


def test_dpt_depth_at_original_size(tiny):
    estimator = load_depth_estimator(tiny("dpt"), device="cpu")
    assert isinstance(estimator, HFDepthEstimator) and not estimator.metric
    images = _images()
    maps = estimator.estimate(images)
    for depth, image in zip(maps, images):
        assert depth.dtype == np.float32 and depth.shape == (image.height, image.width)
        assert np.isfinite(depth).all()
    half = estimator.estimate([Image.new("RGB", (48, 32), "gray").convert("L")])[0]  # any mode is converted
    assert half.shape == (32, 48)


def test_depth_anything_batches_mixed_sizes_like_single_images(tiny):
    estimator = load_depth_estimator(tiny("depth_anything"), batch_size=4)
    images = _images() + [_images()[0].resize((60, 36))]  # two images share an input size, one does not
    batched = estimator.estimate(images)
    for image, depth in zip(images, batched):
        alone = estimator.estimate([image])[0]
        assert depth.shape == (image.height, image.width)
        np.testing.assert_allclose(depth, alone, rtol=1e-4, atol=1e-5)


def test_metric_depth_anything_is_inverted(tiny, tmp_path):
    relative_path = tiny("depth_anything")
    metric_path = tmp_path / "metric"
    make_tiny_depth_anything(metric_path, depth_estimation_type="metric")
    relative, metric = load_depth_estimator(relative_path), load_depth_estimator(str(metric_path))
    assert metric.metric and not relative.metric
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (28, 28, 3), dtype=np.uint8))
    inputs = metric.processor(images=image, return_tensors="pt")
    with torch.no_grad():
        raw = metric.model(**inputs).predicted_depth[0].numpy()  # metres, larger = farther, 28 x 28
    np.testing.assert_allclose(metric.estimate([image])[0], 1.0 / np.maximum(raw, 1e-3), rtol=1e-4)


def test_torch_dtype_is_applied(tiny):
    estimator = load_depth_estimator(tiny("dpt"), torch_dtype="bfloat16")
    assert next(estimator.model.parameters()).dtype == torch.bfloat16
    depth = estimator.estimate(_images()[:1])[0]
    assert depth.dtype == np.float32 and depth.shape == (30, 50)
    with pytest.raises(ValueError, match="'int8' is not a floating-point torch dtype"):
        load_depth_estimator(tiny("dpt"), torch_dtype="int8")
    with pytest.raises(ValueError, match="device 'gpu0' is not a torch device"):
        load_detector(tiny("detr"), device="gpu0")


# ---------------------------------------------------------------------------------------------------------------
# Loading errors name the model


def test_missing_path_and_empty_folder(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError, match=f"detector model path '{missing}' does not exist"):
        load_detector(missing)
    with pytest.raises(ModelLoadError, match="depth model path './nope/model' does not exist"):
        load_depth_estimator("./nope/model")
    with pytest.raises(ModelLoadError, match=f"detector model folder '{tmp_path}' has no config.json"):
        load_detector(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_detector(tmp_path / "weights.bin")


def test_wrong_architecture_is_refused(tiny):
    with pytest.raises(ModelLoadError, match=r"'dpt' model .*not a supported detector \(it is a depth model"):
        load_detector(tiny("dpt"))
    with pytest.raises(ModelLoadError, match=r"'owlvit' model .*not a supported depth model \(it is a detector"):
        load_depth_estimator(tiny("owlvit"))
    with pytest.raises(ModelLoadError, match="OwlDetector does not run"):
        OwlDetector(tiny("detr"))


def test_weights_of_another_head_are_refused(tiny, tmp_path):
    """A folder with the right model type but the wrong head (here: a bare OWL-ViT without its box head)."""
    from transformers import OwlViTForObjectDetection, OwlViTModel

    source = tiny("owlvit")
    bare = tmp_path / "bare-owlvit"
    OwlViTModel(OwlViTForObjectDetection.from_pretrained(source).config).save_pretrained(bare)
    for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json"):
        (bare / name).write_text((Path(source) / name).read_text())
    with pytest.raises(ModelLoadError, match=rf"'{bare}' holds OwlViTModel weights .* missing"):
        load_detector(bare)


def test_only_safetensors_weights_are_read(tiny, tmp_path):
    from transformers import DetrForObjectDetection

    pickled = tmp_path / "pickled-detr"
    DetrForObjectDetection.from_pretrained(tiny("detr")).save_pretrained(pickled)
    for file in pickled.glob("*.safetensors"):
        torch.save({}, pickled / "pytorch_model.bin")
        file.unlink()
    (pickled / "preprocessor_config.json").write_text((Path(tiny("detr")) / "preprocessor_config.json").read_text())
    with pytest.raises(ModelLoadError, match=rf"cannot load the detector model '{pickled}'.*safetensors"):
        load_detector(pickled)


def test_unknown_config_is_reported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "not-a-model"}))
    with pytest.raises(ModelLoadError, match=f"cannot read the config of detector model '{tmp_path}'"):
        load_detector(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Presets and the factory


def test_presets_pass_their_settings(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "diffusers_spatial.perception.hf_detection.load_hf_detector", lambda name, **kw: calls.append((name, kw))
    )
    load_detector("visor")
    load_detector("grounding-dino", score_threshold=0.3, device="cuda")
    load_detector("geneval")
    assert calls == [
        ("google/owlvit-base-patch32", {"score_threshold": 0.1, "query_template": "a photo of a {noun}"}),
        (
            "IDEA-Research/grounding-dino-base",
            {"score_threshold": 0.3, "query_template": "{noun}", "text_threshold": 0.25, "device": "cuda"},
        ),
        ("facebook/mask2former-swin-small-coco-instance", {"score_threshold": 0.3, "max_per_label": 16}),
    ]
    assert set(DETECTOR_PRESETS) >= {"visor", "owlv2", "grounding-dino", "geneval"}


def test_factory_passes_built_backends_through(tiny):
    detector = load_detector(tiny("detr"))
    assert load_detector(detector) is detector
    with pytest.raises(ValueError, match="cannot be applied to an already built detector"):
        load_detector(detector, score_threshold=0.2)
    with pytest.raises(TypeError, match="must be a model name, path or Detector"):
        load_detector(42)
    embedded = load_detector("embedded", device="cpu", torch_dtype="float16")  # torch options do not apply
    assert embedded.labels[0] == "person"
    assert perception_base.per_image_queries(None, 2) == [None, None]
