"""The embedded detectors end to end on real photos, real-crop collages, and bad input; plus `photos`.

Photos come from scikit-image (a test dependency) and Debian's `darknet` package (`apt-get install darknet`);
tests that need the darknet photos skip, saying so, when that package is absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from diffusers_spatial.geometry.boxes import paired_iou
from diffusers_spatial.perception.embedded import (
    DEFAULT_EMBEDDED_MODEL,
    EMBEDDED_MODELS,
    EmbeddedDetector,
    EmbeddedDetectorConfig,
    nms,
)
from diffusers_spatial.photos import (
    DARKNET_PHOTOS,
    PHOTO_OBJECTS,
    PhotoUnavailableError,
    available_photos,
    crop,
    crop_object,
    load_photo,
    make_collage,
    photo_path,
    stereo_motorcycle,
)
from diffusers_spatial.vocabulary import COCO_CLASSES

requires_darknet = pytest.mark.skipif(
    "dog" not in available_photos(),
    reason="Debian's darknet photos are not installed (`apt-get install darknet` installs them)",
)

# CenterNet scores true objects 0.3-0.8; the tests use a little margin below the default 0.3 where an object is weak.
THRESHOLD = 0.25
SSD = "ssd_mobilenetv2_oidv4"


@pytest.fixture(scope="module")
def detector():
    return EmbeddedDetector(score_threshold=THRESHOLD)


@pytest.fixture(scope="module")
def ssd():
    return EmbeddedDetector(model=SSD)


def iou(a, b) -> float:
    return float(paired_iou(np.array([a], dtype=float), np.array([b], dtype=float))[0])


def best_match(detections: list[dict], label: str, box) -> dict | None:
    """The detection of `label` overlapping `box` most, if its IoU is at least 0.5."""
    candidates = [(iou(d["box"], box), d) for d in detections if d["label"] == label]
    overlap, match = max(candidates, key=lambda c: c[0], default=(0.0, None))
    return match if overlap >= 0.5 else None


def center(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def identity_onnx(input_name: str = "x", output_name: str = "y") -> bytes:
    """A valid one-node ONNX model (Identity on a float[1]), protobuf-encoded by hand: `onnx` is no dependency."""

    def varint(n: int) -> bytes:
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out

    def num(field: int, value: int) -> bytes:
        return varint(field << 3) + varint(value)

    def sub(field: int, payload: bytes) -> bytes:
        return varint(field << 3 | 2) + varint(len(payload)) + payload

    tensor_type = sub(1, num(1, 1) + sub(2, sub(1, num(1, 1))))  # float tensor of shape [1]

    def value(name: str) -> bytes:
        return sub(1, name.encode()) + sub(2, tensor_type)

    node = sub(1, input_name.encode()) + sub(2, output_name.encode()) + sub(4, b"Identity")
    graph = sub(1, node) + sub(2, b"g") + sub(11, value(input_name)) + sub(12, value(output_name))
    return num(1, 7) + sub(7, graph) + sub(8, num(2, 13))


# ---------------------------------------------------------------------------------------------------------------
# The bundled model
# ---------------------------------------------------------------------------------------------------------------


def test_names_and_labels():
    detector = EmbeddedDetector()
    assert detector.name == DEFAULT_EMBEDDED_MODEL == "centernet_mobilenetv3_coco"
    assert detector.labels == COCO_CLASSES and len(detector.labels) == 80
    ssd = EmbeddedDetector(model=SSD)
    assert ssd.name == SSD and len(ssd.labels) == 23 and {"person", "dog", "cat", "coffee cup"} <= set(ssd.labels)
    assert (detector.score_threshold, ssd.score_threshold) == (0.3, 0.5)
    assert EmbeddedDetector(model=SSD, score_threshold=0.7).score_threshold == 0.7


@pytest.mark.parametrize("model", sorted(EMBEDDED_MODELS))
def test_asset_checksums_and_notice_agree(model):
    spec = EMBEDDED_MODELS[model]
    assets = resources.files("diffusers_spatial") / "assets"
    data = (assets / spec.file).read_bytes()
    assert hashlib.sha256(data).hexdigest() == spec.sha256
    assert len(data) < 11_000_000  # fp16 storage keeps the wheel small
    notice = (assets / "NOTICE").read_text(encoding="utf-8")
    section = notice.split(f"==== {spec.file} ====")[1].split("\n==== ")[0]
    assert f"onnx:    {spec.file}  sha256 {spec.sha256}" in section and spec.converter in section
    package, licence = {
        "centernet_mobilenetv3_coco": ("@vladmandic/human@3.3.6", "MIT License"),
        SSD: ("@mediapipe/objectron@0.4.1675468480", "Apache License"),
    }[model]
    assert package in section and licence in section


def test_session_is_lazy_and_survives_pickling():
    detector = EmbeddedDetector(num_threads=1)
    assert detector._session is None
    blank = Image.new("RGB", (80, 60), (124, 124, 124))
    assert detector.detect([blank]) == [[]]
    assert detector._session is not None
    clone = pickle.loads(pickle.dumps(detector))
    assert clone._session is None and clone.config == detector.config
    assert clone.detect([blank]) == [[]]


# ---------------------------------------------------------------------------------------------------------------
# Real photos
# ---------------------------------------------------------------------------------------------------------------


@requires_darknet
def test_dog_photo_dog_lower_left_bicycle_centre_truck_upper_right(detector):
    image = load_photo("dog")
    width, height = image.size
    detections = detector.detect([image])[0]
    found = {label: best_match(detections, label, box) for label, box in PHOTO_OBJECTS["dog"].items()}
    assert all(found.values()), f"missing {[k for k, v in found.items() if v is None]} in {detections}"
    dog, bicycle, truck = (center(found[k]["box"]) for k in ("dog", "bicycle", "truck"))
    assert dog[0] < width / 2 and dog[1] > height / 2
    assert abs(bicycle[0] - width / 2) < width / 6 and abs(bicycle[1] - height / 2) < height / 6
    assert truck[0] > width / 2 and truck[1] < height / 3
    assert found["dog"]["score"] >= 0.35 and found["bicycle"]["score"] >= 0.4


@requires_darknet
def test_person_photo_dog_person_horse_left_to_right(detector):
    detections = detector.detect([load_photo("person")])[0]
    found = {label: best_match(detections, label, box) for label, box in PHOTO_OBJECTS["person"].items()}
    assert all(found.values()), f"missing {[k for k, v in found.items() if v is None]} in {detections}"
    xs = [center(found[label]["box"])[0] for label in ("dog", "person", "horse")]
    assert xs == sorted(xs)


@pytest.mark.parametrize(
    "photo, label", [("astronaut", "person"), ("coffee", "cup"), ("motorcycle_left", "motorcycle")]
)
def test_scikit_image_photos(detector, photo, label):
    detections = detector.detect([load_photo(photo)])[0]
    assert best_match(detections, label, PHOTO_OBJECTS[photo][label]) is not None, detections


def test_boxes_are_in_original_pixels_and_clipped(detector):
    photo = load_photo("motorcycle_left")
    stretched = photo.resize((photo.width * 2, photo.height // 2), Image.BILINEAR)
    out_photo, out_stretched = detector.detect([photo, stretched])
    motorcycle = best_match(out_photo, "motorcycle", PHOTO_OBJECTS["motorcycle_left"]["motorcycle"])
    x1, y1, x2, y2 = PHOTO_OBJECTS["motorcycle_left"]["motorcycle"]
    assert best_match(out_stretched, "motorcycle", (2 * x1, y1 / 2, 2 * x2, y2 / 2)) is not None
    assert motorcycle is not None
    # The cat fills the photo; the raw model output reaches past its left edge, the detections do not.
    cat = load_photo("cat")
    raw = detector.session.run(["detections"], {"images": detector.preprocess([cat])})[0][0]
    assert raw[raw[:, 4] >= THRESHOLD, 0].min() < 0
    for image, detections in [(photo, out_photo), (stretched, out_stretched), (cat, detector.detect([cat])[0])]:
        for d in detections:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
            assert d["score"] >= THRESHOLD and d["label"] in COCO_CLASSES


def test_batch_gives_the_same_detections_as_one_at_a_time():
    images = [load_photo(name) for name in ("astronaut", "coffee", "motorcycle_left")]
    single = EmbeddedDetector(score_threshold=THRESHOLD, batch_size=1).detect(images)
    batched = EmbeddedDetector(score_threshold=THRESHOLD, batch_size=3).detect(images)
    assert [[d["label"] for d in ds] for ds in single] == [[d["label"] for d in ds] for ds in batched]
    for ds_single, ds_batched in zip(single, batched):
        for a, b in zip(ds_single, ds_batched):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
            assert a["box"] == pytest.approx(b["box"], abs=1e-2)


def test_nms_removes_duplicates_and_score_threshold_filters(detector):
    photo = load_photo("cat")
    raw = detector.session.run(["detections"], {"images": detector.preprocess([photo])})[0][0]
    # The raw output repeats a near-identical box for one class; per-class NMS keeps one of them.
    detections = detector.detect([photo])[0]
    labels = [d["label"] for d in detections]
    assert len(labels) == len(set(labels)) < int((raw[:, 4] >= THRESHOLD).sum())
    strict = detector.detect([photo], score_threshold=0.45)[0]
    assert all(d["score"] >= 0.45 for d in strict) and len(strict) < len(detections)
    agnostic = EmbeddedDetector(score_threshold=THRESHOLD, class_agnostic_nms=True).detect([photo])[0]
    assert len(agnostic) == 1  # every box covers the whole cat: one label survives


def test_queries_keep_only_the_named_classes(detector):
    images = [load_photo("coffee"), load_photo("astronaut")]
    everything = detector.detect(images)
    cups = detector.detect(images, queries=["cup"])
    per_image = detector.detect(images, queries=[["dining table"], ["person"]])
    assert cups == [[d for d in ds if d["label"] == "cup"] for ds in everything] and cups[0]
    assert per_image == [[d for d in everything[0] if d["label"] == "dining table"], everything[1]]


def test_ssd_sees_the_cat_and_runs_one_image_at_a_time(ssd):
    cat = ssd.detect([load_photo("cat")])[0]
    assert cat[0]["label"] == "cat" and cat[0]["score"] >= 0.7  # CenterNet takes this cat for a dog
    assert iou(cat[0]["box"], PHOTO_OBJECTS["cat"]["cat"]) >= 0.8
    # The SSD graph has a fixed batch of 1: a larger batch_size runs image by image, with the same results.
    images = [load_photo(name) for name in ("cat", "astronaut", "coffee")]
    assert EmbeddedDetector(model=SSD, batch_size=3).detect(images) == ssd.detect(images)
    found = [
        best_match(ds, label, PHOTO_OBJECTS[photo][cocolabel])
        for ds, (photo, label, cocolabel) in zip(
            ssd.detect(images),
            [("cat", "cat", "cat"), ("astronaut", "person", "person"), ("coffee", "coffee cup", "cup")],
        )
    ]
    assert all(found), found
    with pytest.raises(ValueError, match=r"detects only its 23 classes; not among them: \['horse'\]"):
        ssd.detect(images[:1], queries=["horse"])


@requires_darknet
def test_ssd_on_the_dog_photo(ssd):
    detections = ssd.detect([load_photo("dog")])[0]
    boxes = PHOTO_OBJECTS["dog"]
    for label, box in [("dog", boxes["dog"]), ("bicycle", boxes["bicycle"]), ("car", boxes["truck"])]:
        assert best_match(detections, label, box) is not None, (label, detections)


# ---------------------------------------------------------------------------------------------------------------
# Collages of real crops at known positions, and the relation verdict
# ---------------------------------------------------------------------------------------------------------------

# prompt: ((photo, label, resize height or "masked") of subject and object, their top-left positions, collage size)
COLLAGES = {
    "a dog to the left of a person": (
        [("dog", "dog", None), ("person", "person", None)],
        [(40, 100), (400, 80)],
        (640, 480),
    ),
    # The bicycle's box in `dog` holds the dog's head: masked, or the collage would show a second dog up there.
    "a bicycle above a dog": (
        [("dog", "bicycle", "masked"), ("dog", "dog", None)],
        [(90, 10), (220, 380)],
        (640, 720),
    ),
    "a person to the left of a horse": (
        [("person", "person", None), ("person", "horse", None)],
        [(60, 100), (300, 150)],
        (640, 480),
    ),
    "a person above a motorcycle": (
        [("astronaut", "person", 240), ("motorcycle_left", "motorcycle", 240)],
        [(220, 5), (100, 260)],
        (640, 510),
    ),
    "a person to the right of a motorcycle": (
        [("astronaut", "person", 300), ("motorcycle_left", "motorcycle", 220)],
        [(400, 100), (10, 150)],
        (640, 480),
    ),
    "a cat to the left of a person": (
        [("cat", "cat", 200), ("astronaut", "person", 300)],
        [(10, 100), (400, 60)],
        (640, 420),
    ),
}
# (prompt, model): every collage with CenterNet; those of classes the SSD knows with the SSD too.
COLLAGE_CASES = [(prompt, DEFAULT_EMBEDDED_MODEL) for prompt in COLLAGES] + [
    ("a dog to the left of a person", SSD),
    ("a cat to the left of a person", SSD),
]


def build_collage(prompt: str):
    pieces, positions, collage_size = COLLAGES[prompt]
    crops = [
        (label, crop_object(photo, label, mask_others=size == "masked", height=None if size == "masked" else size))
        for photo, label, size in pieces
    ]
    return make_collage(crops, positions, collage_size)


def collage_cases():
    for prompt, model in COLLAGE_CASES:
        darknet = any(photo in DARKNET_PHOTOS for photo, _, _ in COLLAGES[prompt][0])
        yield pytest.param(prompt, model, marks=[requires_darknet] if darknet else [], id=f"{model}-{prompt}")


@pytest.fixture(scope="module")
def detectors(detector, ssd):
    return {DEFAULT_EMBEDDED_MODEL: detector, SSD: ssd}


@pytest.mark.parametrize("prompt, model", collage_cases())
def test_collage_objects_found_at_their_positions(detectors, prompt, model):
    image, truth = build_collage(prompt)
    detections = detectors[model].detect([image])[0]
    for expected in truth:
        match = best_match(detections, expected["label"], expected["box"])
        assert match is not None, f"{expected} not found in {detections}"
        assert iou(match["box"], expected["box"]) >= 0.75


@pytest.mark.parametrize("prompt, model", collage_cases())
def test_collage_relation_verdict_with_esplora(detectors, prompt, model):
    try:
        from diffusers_spatial.geometry import score_image
    except ImportError as error:  # the geometry layer is developed alongside; only this check depends on it
        pytest.skip(f"diffusers_spatial.geometry.score_image is not importable: {error}")
    from diffusers_spatial.relations import parse_spatial_prompt

    image, _ = build_collage(prompt)
    detections = detectors[model].detect([image])[0]
    spatial = parse_spatial_prompt(prompt)
    right = score_image(spatial, detections, protocol="esplora", image_size=image.size)
    # Subject and object exchanged, relation kept: the same image must now be judged wrong.
    exchanged = dataclasses.replace(spatial, subject=spatial.object, object=spatial.subject)
    wrong = score_image(exchanged, detections, protocol="esplora", image_size=image.size)
    assert right.objects_found and right.correct is True, right
    assert wrong.correct is False, wrong


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------


def test_other_image_modes_are_converted(detector):
    photo = load_photo("motorcycle_left")
    box = PHOTO_OBJECTS["motorcycle_left"]["motorcycle"]
    gray16 = Image.fromarray((np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    for image in (photo.convert("L"), photo.convert("RGBA"), photo.convert("P"), gray16):
        detections = detector.detect([image])[0]
        assert detections is not None and all(d["label"] in COCO_CLASSES for d in detections)
    assert best_match(detector.detect([photo.convert("L")])[0], "motorcycle", box) is not None


def test_bad_images_raise_clear_errors(detector):
    with pytest.raises(TypeError, match=r"images\[1\] is a ndarray"):
        detector.detect([Image.new("RGB", (8, 8)), np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"images\[0\] has zero size \(0, 5\)"):
        detector.detect([Image.new("RGB", (0, 5))])
    assert detector.detect([]) == []
    tiny = detector.detect([Image.new("RGB", (1, 1), "white")])
    assert tiny == [[]] or all(0 <= d["box"][0] <= 1 for d in tiny[0])


def test_bad_queries_and_options_raise_clear_errors(detector):
    image = Image.new("RGB", (32, 32))
    with pytest.raises(ValueError, match=r"not among them: \['castle'\]"):
        detector.detect([image], queries=["dog", "castle"])
    with pytest.raises(ValueError, match="got 2 query lists for 1 images"):
        detector.detect([image], queries=[["dog"], ["cat"]])
    with pytest.raises(TypeError, match="got the string 'dog'"):
        detector.detect([image], queries="dog")
    with pytest.raises(ValueError, match=r"score_threshold must be in \[0, 1\], got 1.5"):
        detector.detect([image], score_threshold=1.5)
    for field, value in [("score_threshold", -0.1), ("nms_iou", 0), ("batch_size", 0), ("num_threads", -1)]:
        with pytest.raises(ValueError, match=f"{field} must be .* got {value}"):
            EmbeddedDetectorConfig(**{field: value})


def test_missing_or_foreign_model_files_raise_clear_errors(tmp_path, monkeypatch):
    image = Image.new("RGB", (32, 32))
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        EmbeddedDetector(model_path=str(missing)).detect([image])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="garbage.onnx.* is not a valid ONNX model"):
        EmbeddedDetector(model_path=str(garbage)).detect([image])
    with pytest.raises(ValueError, match="nms_iou must be in"):
        EmbeddedDetector(nms_iou=2.0)

    spec = EMBEDDED_MODELS[DEFAULT_EMBEDDED_MODEL]
    monkeypatch.setitem(EMBEDDED_MODELS, DEFAULT_EMBEDDED_MODEL, dataclasses.replace(spec, sha256="0" * 64))
    with pytest.raises(RuntimeError, match=f"corrupt or was replaced: sha256 {spec.sha256}"):
        EmbeddedDetector().detect([image])
    monkeypatch.setitem(EMBEDDED_MODELS, DEFAULT_EMBEDDED_MODEL, dataclasses.replace(spec, file="missing_model.onnx"))
    with pytest.raises(FileNotFoundError, match="missing_model.onnx is missing: the package was installed without"):
        EmbeddedDetector().detect([image])
    with pytest.raises(ValueError, match=r"Unknown embedded model 'yolo'; available: \['centernet_mobilenetv3_coco'"):
        EmbeddedDetector(model="yolo")
    foreign = tmp_path / "identity.onnx"
    foreign.write_bytes(identity_onnx())
    with pytest.raises(ValueError, match=r"identity.onnx.* is not an embedded-detector model: it has inputs \['x'\]"):
        EmbeddedDetector(model_path=str(foreign)).detect([image])


# ---------------------------------------------------------------------------------------------------------------
# NMS properties
# ---------------------------------------------------------------------------------------------------------------

_coord = st.floats(0, 100, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    boxes=st.lists(st.tuples(_coord, _coord, st.floats(1, 60), st.floats(1, 60)), min_size=1, max_size=25),
    threshold=st.floats(0.1, 0.9),
    data=st.data(),
)
def test_nms_properties(boxes, threshold, data):
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes])
    scores = np.array(data.draw(st.lists(st.floats(0, 1), min_size=len(boxes), max_size=len(boxes))))
    keep = nms(boxes, scores, threshold)
    assert list(scores[keep]) == sorted(scores[keep], reverse=True)
    for i, a in enumerate(keep):  # kept boxes never overlap each other beyond the threshold
        for b in keep[i + 1 :]:
            assert iou(boxes[a], boxes[b]) <= threshold + 1e-12
    for dropped in set(range(len(boxes))) - set(keep.tolist()):  # each dropped box is covered by a better kept one
        assert any(iou(boxes[k], boxes[dropped]) > threshold and scores[k] >= scores[dropped] for k in keep)


# ---------------------------------------------------------------------------------------------------------------
# photos: sources, crops, collages, stereo depth
# ---------------------------------------------------------------------------------------------------------------


def test_missing_darknet_photos_name_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSERS_SPATIAL_DARKNET_DATA", str(tmp_path))
    with pytest.raises(PhotoUnavailableError, match=r"apt-get install darknet.*DIFFUSERS_SPATIAL_DARKNET_DATA"):
        load_photo("dog")
    assert "dog" not in available_photos() and "astronaut" in available_photos()
    with pytest.raises(KeyError, match="Unknown photo 'unicorn'"):
        load_photo("unicorn")
    with pytest.raises(KeyError, match="no file path API"):
        photo_path("astronaut")


def test_make_collage_ground_truth_and_errors():
    red, blue = Image.new("RGB", (30, 20), "red"), Image.new("RGB", (10, 40), "blue")
    image, truth = make_collage([("a", red), ("b", blue)], [(5, 6), (50, 0)], (64, 48), background=(1, 2, 3))
    assert image.size == (64, 48) and image.getpixel((0, 0)) == (1, 2, 3)
    assert image.getpixel((5, 6)) == (255, 0, 0) and image.getpixel((59, 39)) == (0, 0, 255)
    assert truth == [
        {"label": "a", "score": 1.0, "box": [5, 6, 35, 26]},
        {"label": "b", "score": 1.0, "box": [50, 0, 60, 40]},
    ]
    with pytest.raises(ValueError, match=r"crop 1 \('b', 10x40\) at \(50, 10\) does not fit in the 64x48 collage"):
        make_collage([("a", red), ("b", blue)], [(5, 6), (50, 10)], (64, 48))
    with pytest.raises(ValueError, match="Got 2 crops but 1 positions"):
        make_collage([("a", red), ("b", blue)], [(5, 6)], (64, 48))


def test_crop_helpers():
    photo = load_photo("coffee")
    assert crop(photo, (165, 20, 412, 262)).size == (247, 242)
    assert crop(photo, (0, 0, 100, 100), margin=0.5).size == (150, 150)  # clipped at the top-left corner
    assert crop_object("coffee", "cup", height=121).size == (124, 121)  # 247 * 121 / 242 = 123.5
    with pytest.raises(ValueError, match="empty or inverted"):
        crop(photo, (10, 10, 5, 20))
    with pytest.raises(ValueError, match="does not overlap"):
        crop(photo, (700, 10, 800, 20))
    with pytest.raises(KeyError, match="No boxed 'dog' in photo 'coffee'"):
        crop_object("coffee", "dog")


def test_stereo_motorcycle_disparity_is_a_real_depth_map():
    left, right, disparity = stereo_motorcycle()
    assert left.size == right.size == (disparity.shape[1], disparity.shape[0])
    assert disparity.dtype == np.float32 and np.isnan(disparity).any() and np.nanmin(disparity) > 0
    # Disparity is inverse depth: the motorcycle is nearer than the shelves at the back of the garage.
    x1, y1, x2, y2 = PHOTO_OBJECTS["motorcycle_left"]["motorcycle"]
    motorcycle = np.nanmedian(disparity[y1:y2, x1:x2])
    background = np.nanmedian(disparity[: y1 // 2 + 1, :])
    assert motorcycle > 1.2 * background
