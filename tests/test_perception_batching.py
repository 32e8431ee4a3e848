"""`Perception`: many images (real photos, paths, arrays, broken files) in batches, with per-image errors.

Real photos come from scikit-image's data module (a test dependency): the astronaut (a person), the coffee cup,
the motorcycle. The embedded detector runs on them for real; Hugging Face backends are the tiny models of
test_perception_hf.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_perception_hf import make_tiny_dpt, make_tiny_owlvit

from diffusers_spatial.geometry.boxes import paired_iou
from diffusers_spatial.perception import ModelLoadError, Perception, load_detector, score_results
from diffusers_spatial.photos import crop_object, load_photo, make_collage
from diffusers_spatial.vocabulary import COCO_CLASSES


@pytest.fixture(scope="module")
def astronaut():
    return load_photo("astronaut")  # 512 x 512, one person


@pytest.fixture(scope="module")
def tiny_dpt(tmp_path_factory):
    return make_tiny_dpt(tmp_path_factory.mktemp("dpt") / "dpt")


@pytest.fixture(scope="module")
def tiny_owl(tmp_path_factory):
    return make_tiny_owlvit(tmp_path_factory.mktemp("owl") / "owl")


def _boxes(result, label):
    return [d["box"] for d in result.detections if d["label"] == label]


def test_a_bad_image_never_kills_the_batch(tmp_path, astronaut):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff" + b"garbage" * 50)
    astronaut_png = tmp_path / "astronaut.png"
    astronaut.save(astronaut_png)
    coffee16 = (np.asarray(load_photo("coffee"), np.uint16) * 257).astype(np.uint16)  # 16-bit RGB array
    rgba = load_photo("motorcycle_left").convert("RGBA")
    images = [astronaut_png, corrupt, np.zeros((0, 8, 3), np.uint8), coffee16, rgba, b"not an image"]
    prompts = ["an astronaut to the left of a cup", None, None, "a cup above a table", "a motorbike below a sky", None]

    results = Perception(batch_size=2, progress=False).run(images, prompts)

    assert len(results) == len(images)
    assert [r.ok for r in results] == [True, False, False, True, True, False]
    assert results[1].error == f"cannot load image '{corrupt}': not an image file, or a format Pillow cannot read"
    assert "the image is empty (8x0 pixels)" in results[2].error and results[2].image_size is None
    assert "<12 bytes>" in results[5].error
    assert results[0].source == repr(str(astronaut_png)) and results[0].image_size == (512, 512)
    assert _boxes(results[0], "person") and results[0].detector == "centernet_mobilenetv3_coco"
    assert results[3].image_size == (600, 400) and _boxes(results[3], "cup")
    assert results[4].image_size == (741, 500) and _boxes(results[4], "motorcycle")
    # Noun matching against the embedded detector's COCO classes.
    assert (results[0].subject_label, results[0].object_label) == ("person", "cup")
    labels = {noun: m.label for r in results for noun, m in r.noun_labels.items()}
    assert labels["cup"] == "cup" and labels["table"] == "dining table" and labels["motorbike"] == "motorcycle"
    assert labels["sky"] is None and "cannot see 'sky'" in results[4].undetermined_reason
    for result in results:
        assert result.depth is None and result.depth_source == "none" and result.depth_confidence == "low"


def test_results_do_not_depend_on_batch_size(astronaut):
    images = [astronaut, load_photo("coffee"), load_photo("motorcycle_left")]
    one_by_one = Perception(batch_size=1, progress=False).run(images)
    batched = Perception(batch_size=3, progress=False).run(images)
    for single, batch in zip(one_by_one, batched):
        assert [d["label"] for d in single.detections] == [d["label"] for d in batch.detections]
        np.testing.assert_allclose(
            [d["box"] for d in single.detections], [d["box"] for d in batch.detections], atol=0.5
        )


def test_downscaled_images_report_boxes_in_original_pixels(astronaut):
    full = Perception(progress=False, max_pixels=None).run([astronaut])[0]
    small = Perception(progress=False, max_pixels=160 * 160).run([astronaut])[0]
    assert small.scale == pytest.approx(160 / 512) and full.scale == 1.0
    assert small.image_size == full.image_size == (512, 512)
    iou = paired_iou(np.array(_boxes(full, "person")[:1]), np.array(_boxes(small, "person")[:1]))
    assert iou[0] > 0.9  # the same person, in the same (original) pixel frame


def test_depth_model_gives_depth_at_the_original_size(tiny_dpt, astronaut):
    perception = Perception(depth=tiny_dpt, progress=False, max_pixels=200 * 200, device="cpu")
    assert perception.depth_name == tiny_dpt  # known before loading
    wide = Image.fromarray(np.asarray(astronaut)[:300])  # 512 x 300
    results = perception.run([astronaut, wide, "missing.png"])
    for result, size in zip(results[:2], [(512, 512), (512, 300)]):
        assert result.depth.shape == (size[1], size[0]) and result.depth.dtype == np.float32
        assert result.depth_source == tiny_dpt and result.depth_confidence == "high"
        assert np.isfinite(result.depth).all()
    assert results[2].depth is None and "no such file" in results[2].error


def test_open_vocabulary_queries_come_from_prompts(tiny_owl, astronaut):
    perception = Perception(detector=tiny_owl, progress=False, detector_kwargs={"score_threshold": 0.0})
    results = perception.run([astronaut, astronaut], ["a red cat on the left of two dogs", None])
    assert perception.detector.labels is None
    assert {d["label"] for d in results[0].detections} <= {"cat", "dog"} and results[0].detections
    assert results[0].subject_label == "cat" and results[0].object_label == "dog"
    assert {d["label"] for d in results[1].detections} <= set(COCO_CLASSES)  # no prompt: the default queries
    custom = Perception(
        detector=tiny_owl, progress=False, default_queries=["kite"], detector_kwargs={"score_threshold": 0}
    )
    assert {d["label"] for d in custom.run([astronaut])[0].detections} == {"kite"}


class _FailsOnNarrowImages:
    """A real detector (the embedded one) that, like a model hitting a bad input, raises on some images."""

    def __init__(self):
        self.inner = load_detector("embedded")
        self.name, self.labels = "flaky", self.inner.labels

    def detect(self, images, queries=None):
        if any(image.width < 20 for image in images):
            raise RuntimeError("kernel failed on a narrow image")
        return self.inner.detect(images, queries)


class _DepthFailsOnNarrowImages:
    name = "flaky-depth"

    def estimate(self, images):
        if any(image.width < 20 for image in images):
            raise RuntimeError("depth kernel failed")
        return [np.ones((image.height, image.width), np.float32) for image in images]


def test_a_model_failure_is_isolated_to_its_image(astronaut):
    narrow = np.full((64, 10, 3), 128, np.uint8)
    images = [astronaut, narrow, astronaut]
    results = Perception(detector=_FailsOnNarrowImages(), batch_size=3, progress=False).run(images)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == "the detector failed on this image: RuntimeError: kernel failed on a narrow image"
    assert _boxes(results[0], "person") == _boxes(results[2], "person") != []

    results = Perception(depth=_DepthFailsOnNarrowImages(), batch_size=3, progress=False).run(images)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == "the depth model failed on this image: RuntimeError: depth kernel failed"
    assert results[0].depth_source == "flaky-depth" and results[0].depth.shape == (512, 512)


class _AlwaysFails:
    name, labels = "broken", ("person",)

    def detect(self, images, queries=None):
        raise OSError("weights file is corrupt")


def test_a_broken_model_stops_the_run_instead_of_failing_every_image(astronaut):
    with pytest.raises(RuntimeError, match="the detector fails on every image of a batch of 2: OSError: weights"):
        Perception(detector=_AlwaysFails(), batch_size=2, progress=False).run([astronaut, astronaut])
    # One image alone cannot tell a broken model from a bad image: it is reported on that image.
    (result,) = Perception(detector=_AlwaysFails(), progress=False).run([astronaut])
    assert result.error == "the detector failed on this image: OSError: weights file is corrupt"


def test_score_results_on_a_collage_of_real_crops():
    person = crop_object("astronaut", "person", height=300)
    motorcycle = crop_object("motorcycle_left", "motorcycle", height=220)
    collage, _ = make_collage([("person", person), ("motorcycle", motorcycle)], [(400, 100), (10, 150)], (640, 480))
    prompts = [
        "a motorbike to the left of an astronaut",  # synonyms: motorcycle, person
        "a woman to the left of a motorbike",
        "a castle to the left of a motorcycle",  # the embedded detector cannot see castles
        "a person to the left of a bike",  # the image cannot be read
    ]
    results = Perception(progress=False).run([collage, collage, collage, b"broken"], prompts)
    scores = score_results(results)
    assert [s.correct for s in scores] == [True, False, None, None]
    assert scores[0].details["subject_label"] == "motorcycle" and scores[0].details["object_label"] == "person"
    assert scores[2].details["reason"].startswith("the detector 'centernet_mobilenetv3_coco' cannot see 'castle'")
    assert scores[3].details["reason"].startswith("cannot load image <6 bytes>")
    assert all(s.details["depth_confidence"] == "low" and s.details["depth_source"] == "none" for s in scores)
    assert [s.correct for s in score_results(results[:2], protocol="visor")] == [True, False]
    with pytest.raises(ValueError, match=r"cannot be scored: 0 \(no prompt given\)"):
        score_results(Perception(progress=False).run([collage]))


def test_prompts_that_are_not_spatial(astronaut):
    results = Perception(progress=False).run(
        [astronaut] * 3, ["a photo of an astronaut", "a cat left of a dog above a tree", "a cat left of a castle"]
    )
    assert results[0].prompt is None and "is not a spatial prompt" in results[0].prompt_error
    assert "contains 2 relation phrases" in results[1].prompt_error
    assert results[0].undetermined_reason == results[0].prompt_error
    assert results[2].subject_label == "cat" and results[2].object_label is None
    assert results[2].undetermined_reason == (
        "the detector 'centernet_mobilenetv3_coco' cannot see 'castle': none of its 80 classes matches it"
    )
    assert all(r.ok and r.detections for r in results)  # the image is still searched


def test_prompt_broadcast_and_length_check(astronaut):
    perception = Perception(progress=False)
    results = perception.run([astronaut, astronaut], "a person to the left of a dog")
    assert [r.subject_label for r in results] == ["person", "person"]
    with pytest.raises(ValueError, match="got 1 prompts for 2 images"):
        perception.run([astronaut, astronaut], ["a dog left of a cat"])
    with pytest.raises(TypeError, match="images must be a sequence"):
        perception.run("photo.png")
    with pytest.raises(TypeError, match="wrap a single image in a list"):
        perception.run(np.zeros((8, 8, 3), np.uint8))
    stacked = perception.run(np.stack([np.asarray(astronaut)] * 2), "a person to the left of a dog")
    assert [r.image_size for r in stacked] == [(512, 512), (512, 512)] and stacked[0].detections


def test_models_load_lazily_and_errors_name_them(tmp_path):
    missing = str(tmp_path / "no-model")
    perception = Perception(detector=missing, progress=False)  # nothing loaded yet
    assert perception.detector_name == missing and perception.depth_name == "none"
    with pytest.raises(ModelLoadError, match=f"detector model path '{missing}' does not exist"):
        perception.run([np.zeros((4, 4), np.uint8)])
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            Perception(batch_size=bad)
    with pytest.raises(ValueError, match="default_queries"):
        Perception(default_queries="dog")


def test_results_serialise_and_progress_is_shown(astronaut, capsys):
    results = Perception(progress=True).run([astronaut, "missing.png"], ["a person left of a sofa", None])
    assert "perception" in capsys.readouterr().err  # the tqdm bar
    summary = json.loads(json.dumps([r.to_dict() for r in results]))
    assert summary[0]["noun_labels"]["sofa"] == {"noun": "sofa", "label": "couch", "reason": None}
    assert summary[0]["depth_confidence"] == "low" and summary[0]["image_size"] == [512, 512]
    assert summary[1]["error"] and summary[1]["undetermined_reason"] == summary[1]["error"]
