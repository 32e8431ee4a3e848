"""The spatial world: scenes, captions, the exact perception, the tokenizer and the world datasets."""

import json
from collections import Counter

import datasets
import numpy as np
import pytest
from PIL import Image

from diffusers_spatial.geometry import score_image
from diffusers_spatial.perception import Perception, load_depth_estimator, load_detector
from diffusers_spatial.relations import CONVERSE, RELATIONS_2D, RELATIONS_3D
from diffusers_spatial.world import (
    LAION_LIKE,
    VERIFIED,
    CaptionRegime,
    WorldConfig,
    WorldDepthEstimator,
    WorldDetector,
    reading_order,
    render_scene,
    sample_scene,
    world_prompt,
    world_sample,
)
from diffusers_spatial.world.dataset import write_world_dataset
from diffusers_spatial.world.tokenizer import world_tokenizer, world_words

WORLD_6 = WorldConfig(relations=RELATIONS_2D + RELATIONS_3D)


def _centre_offset(scene):
    (sx, sy), (ox, oy) = scene.subject.center, scene.object.center
    return ox - sx, oy - sy  # > 0: subject left of / above object


# --------------------------------------------------------------------------------------------------------------
# Config and scenes


def test_config_round_trips_through_json(tmp_path):
    config = WorldConfig(resolution=48, relations=("left_of", "behind"))
    config.save(tmp_path)
    assert WorldConfig.load(tmp_path) == config
    assert WorldConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"resolution": 8}, "resolution"),
        ({"shapes": ("circle", "hexagon")}, "unknown shapes"),
        ({"colors": (("red", (255, 0, 0)),)}, "at least two"),
        ({"relations": ("next_to",)}, "relations"),
        ({"max_radius": 0.01}, "max_radius"),
        ({"first_span": (0.5, 0.7)}, "must lie before"),
        ({"across_span": (0.8, 0.2)}, "across_span"),
        ({"background": (0, 0, 300)}, "background"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WorldConfig(**kwargs)


def test_loading_a_damaged_config_names_the_file(tmp_path):
    (tmp_path / "world_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="world_config.json"):
        WorldConfig.load(tmp_path)
    (tmp_path / "world_config.json").write_text('{"colour": 1}')
    with pytest.raises(ValueError, match="unknown world config keys"):
        WorldConfig.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no world config"):
        WorldConfig.load(tmp_path / "missing")


@pytest.mark.parametrize("relation", RELATIONS_2D + RELATIONS_3D)
def test_scenes_make_their_relation_true(relation):
    rng = np.random.default_rng(7)
    for _ in range(50):
        scene = sample_scene(WORLD_6, rng, relation=relation)
        subject, obj = scene.subject, scene.object
        assert subject.color != obj.color and subject.shape != obj.shape
        dx, dy = _centre_offset(scene)
        if relation in ("left_of", "right_of"):
            assert (
                (dx if relation == "left_of" else -dx) >= WORLD_6.min_separation * WORLD_6.resolution - 2 > 2 * abs(dy)
            )
        elif relation in ("above", "below"):
            assert (
                (dy if relation == "above" else -dy) >= WORLD_6.min_separation * WORLD_6.resolution - 2 > 2 * abs(dx)
            )
        else:  # the nearer object is drawn larger, lower and last
            near, far = (subject, obj) if relation == "in_front_of" else (obj, subject)
            assert near.radius >= 1.4 * far.radius
            assert near.center[1] + near.radius > far.center[1] + far.radius
            assert scene.drawing_order[-1] is near
        image = render_scene(scene, WORLD_6)
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8


def test_scene_sampling_is_seeded_and_checks_its_arguments():
    a = sample_scene(WorldConfig(), np.random.default_rng(3))
    assert a == sample_scene(WorldConfig(), np.random.default_rng(3))
    with pytest.raises(ValueError, match="not drawn in this world"):
        sample_scene(WorldConfig(), np.random.default_rng(0), relation="behind")
    with pytest.raises(ValueError, match="differ in colour and in shape"):
        sample_scene(WorldConfig(), np.random.default_rng(0), objects=(("red", "circle"), ("red", "square")))


# --------------------------------------------------------------------------------------------------------------
# Captions


def test_laion_like_captions_have_the_regime_statistics():
    config = WorldConfig()
    captions = [world_sample(config, LAION_LIKE, 0, i).caption for i in range(3000)]
    samples = [world_sample(config, LAION_LIKE, 0, i) for i in range(3000)]
    relational = [c for c in captions if c.relation is not None]
    assert abs(len(relational) / len(captions) - LAION_LIKE.p_relation_caption) < 0.03
    assert abs(sum(not c.true for c in relational) / len(relational) - LAION_LIKE.p_mirror_error) < 0.04
    in_reading_order = [reading_order(s.scene).subject is s.caption.first for s in samples]
    assert abs(np.mean(in_reading_order) - LAION_LIKE.p_reading_order) < 0.03
    for sample in samples[:300]:  # a caption's claim is true exactly when its relation holds in the scene
        c = sample.caption
        if c.relation is not None:
            fact = sample.scene if sample.scene.subject is c.first else sample.scene.converse()
            assert c.true == (fact.relation == c.relation)


def test_verified_captions_are_true_and_balanced():
    config = WorldConfig()
    samples = [world_sample(config, VERIFIED, 5, i) for i in range(800)]
    assert all(s.caption.true and s.caption.relation is not None for s in samples)
    assert set(Counter(s.scene.relation for s in samples).values()) == {200}  # any run of indices is balanced
    assert all(150 < n < 250 for n in Counter(s.caption.relation for s in samples).values())
    reading = np.mean([reading_order(s.scene).subject is s.caption.first for s in samples])
    assert 0.45 < reading < 0.55
    assert all(s.caption.text == s.caption.prompt() for s in samples)


def test_samples_are_pure_functions_of_their_index():
    a, b = world_sample(WorldConfig(), LAION_LIKE, 1, 42), world_sample(WorldConfig(), LAION_LIKE, 1, 42)
    assert a.caption == b.caption and np.array_equal(a.image, b.image)
    assert world_sample(WorldConfig(), LAION_LIKE, 2, 42).caption != a.caption or not np.array_equal(
        world_sample(WorldConfig(), LAION_LIKE, 2, 42).image, a.image
    )


def test_held_out_pairs_are_never_drawn():
    held_out = {frozenset(("red circle", "blue square")), frozenset(("green triangle", "yellow circle"))}
    pairs = set()
    for index in range(2000):
        scene = world_sample(WorldConfig(), VERIFIED, 0, index, exclude_pairs=held_out).scene
        pairs.add(frozenset((scene.subject.name, scene.object.name)))
    assert len(pairs) == 34 and not pairs & held_out
    all_pairs = {frozenset(p) for p in pairs | held_out}
    with pytest.raises(ValueError, match="no object pair"):
        world_sample(WorldConfig(), VERIFIED, 0, 0, exclude_pairs=all_pairs)


def test_caption_regime_is_validated():
    with pytest.raises(ValueError, match="p_mirror_error"):
        CaptionRegime("x", p_relation_caption=0.5, p_reading_order=0.5, p_mirror_error=1.5)


# --------------------------------------------------------------------------------------------------------------
# Perception: exact on rendered ground truth


@pytest.mark.parametrize("relations", [RELATIONS_2D, RELATIONS_3D])
def test_perception_recovers_every_rendered_object_exactly(relations):
    config = WorldConfig(relations=relations)
    detector, depth = WorldDetector(config), WorldDepthEstimator(config)
    count = 200 if relations == RELATIONS_2D else 60
    for index in range(count):
        sample = world_sample(config, VERIFIED, 11, index)
        found = detector.detect([sample.image])[0]
        truth = {b["label"]: b["box"] for b in sample.boxes(config.resolution)}
        assert {d["label"]: d["box"] for d in found} == truth, (index, sample.caption.text)
        assert {d["color"] for d in found} == {o.color for o in sample.scene.objects}
        depth_map = depth.estimate([sample.image])[0]
        protocols = ("esplora",) if relations == RELATIONS_3D else ("esplora", "visor", "geneval")
        for protocol in protocols:
            verdict = score_image(sample.caption.text, found, protocol=protocol, depth=depth_map)
            assert verdict.correct is True, (index, protocol, sample.caption.text, verdict.details)
            # ... and the mirrored statement is judged false
            mirrored = world_prompt(
                sample.caption.first.name, CONVERSE[sample.caption.relation], sample.caption.second.name
            )
            assert score_image(mirrored, found, protocol=protocol, depth=depth_map).correct is False


def test_perception_scales_with_the_image_and_sees_nothing_in_a_blank_image():
    config = WorldConfig()
    sample = world_sample(config, VERIFIED, 0, 1)
    big = Image.fromarray(sample.image).resize((64, 64), Image.NEAREST)
    found = WorldDetector(config).detect([big])[0]
    truth = {b["label"]: [2 * v for v in b["box"]] for b in sample.boxes(config.resolution)}
    assert {d["label"]: d["box"] for d in found} == truth
    assert WorldDetector(config).detect([Image.new("RGB", (32, 32), (245, 245, 245))]) == [[]]
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert WorldDetector(config).detect([noise]) == [[]]  # scattered pixels are no object


def test_perception_rejects_what_is_not_an_rgb_image():
    with pytest.raises(ValueError, match="RGB image"):
        WorldDetector().detect([np.zeros((32, 32), dtype=np.uint8)])
    with pytest.raises(ValueError, match="score_threshold"):
        WorldDetector(score_threshold=float("nan"))
    with pytest.raises(TypeError, match="WorldConfig"):
        WorldDetector(config={"resolution": 32})


def test_world_backends_are_built_by_name_and_run_in_perception():
    assert isinstance(load_detector("world"), WorldDetector)
    assert isinstance(load_depth_estimator("world", device="cpu"), WorldDepthEstimator)
    sample = world_sample(WorldConfig(), VERIFIED, 0, 2)
    result = Perception(detector="world", depth="world", progress=False).run(
        [Image.fromarray(sample.image)], [sample.caption.text]
    )[0]
    assert result.error is None and result.undetermined_reason is None
    assert result.subject_label == sample.caption.first.shape
    assert result.depth.shape == (32, 32)


# --------------------------------------------------------------------------------------------------------------
# Tokenizer


def test_tokenizer_makes_every_world_word_one_token(tmp_path):
    tokenizer = world_tokenizer()
    for word in world_words(WorldConfig()):
        assert len(tokenizer.tokenize(word)) == 1, word
    ids = tokenizer("a red circle to the left of a blue square", padding="max_length").input_ids
    assert len(ids) == tokenizer.model_max_length and ids[0] == tokenizer.bos_token_id
    assert tokenizer.eos_token_id == len(tokenizer) - 1  # pooled at end-of-text, as CLIP
    assert tokenizer.tokenize("zebra")  # anything else still tokenizes, letter by letter
    tokenizer.save_pretrained(tmp_path)
    from transformers import CLIPTokenizer

    assert (
        CLIPTokenizer.from_pretrained(tmp_path)("a green triangle").input_ids
        == tokenizer("a green triangle").input_ids
    )


# --------------------------------------------------------------------------------------------------------------
# Datasets


def test_world_dataset_is_a_spatial_dataset_folder(tmp_path):
    stats = write_world_dataset(tmp_path / "ds", num_rows=10, shard_size=4, progress=False)
    assert stats["rows_out"] == 10
    ds = datasets.load_dataset(str(tmp_path / "ds"), split="train")
    assert len(ds) == 10 and len(set(ds["key"])) == 10
    row = ds[0]
    assert row["image"].size == (32, 32) and row["source"] == "synthetic" and row["license"] == "CC0-1.0"
    assert row["relation"] in RELATIONS_2D and row["subject"] in ("circle", "square", "triangle")
    assert row["boxes"][0]["label"] == row["subject"]
    readme = (tmp_path / "ds" / "README.md").read_text()
    assert "synthetic spatial world" in readme and (tmp_path / "ds" / "world_config.json").exists()


def test_world_dataset_resumes_and_refuses_other_settings(tmp_path):
    out = tmp_path / "ds"
    write_world_dataset(out, num_rows=8, shard_size=4, progress=False)
    first = sorted(p.read_bytes() for p in out.glob("data/*/*.parquet"))
    (
        out / ".curation" / "manifest" / "world-00001.json"
    ).unlink()  # as if killed before the second shard's manifest entry
    write_world_dataset(out, num_rows=8, shard_size=4, progress=False)
    assert sorted(p.read_bytes() for p in out.glob("data/*/*.parquet")) == first
    with pytest.raises(ValueError, match="other settings"):
        write_world_dataset(out, num_rows=8, shard_size=4, seed=1, progress=False)
    held_out = [frozenset(("red circle", "blue square"))]
    with pytest.raises(ValueError, match="other settings"):
        write_world_dataset(out, num_rows=8, shard_size=4, exclude_pairs=held_out, progress=False)
    with pytest.raises(ValueError, match="not true relations"):
        write_world_dataset(tmp_path / "laion", num_rows=4, regime=LAION_LIKE, progress=False)


def test_world_dataset_writes_3d_rows_with_depth(tmp_path):
    write_world_dataset(tmp_path / "ds", num_rows=4, config=WorldConfig(relations=RELATIONS_3D), progress=False)
    ds = datasets.load_dataset(str(tmp_path / "ds"), split="train")
    for row in ds:
        stats = row["depth_stats"]
        nearer = stats["subject"] > stats["object"]
        assert nearer == (row["relation"] == "in_front_of")


def test_the_evaluate_metric_judges_the_world_with_its_perception():
    import evaluate

    from diffusers_spatial.metric import module_path

    metric = evaluate.load(module_path())
    samples = [world_sample(WorldConfig(), VERIFIED, 3, i) for i in range(8)]
    results = metric.compute(
        predictions=[Image.fromarray(s.image) for s in samples],
        references=[s.caption.text for s in samples],
        detector="world",
    )
    assert results["esplora_accuracy"] == 1.0 and results["visor_uncond"] == 100.0
    report = results["report"]
    assert report["settings"]["detector"] == "world"
    assert report["summary"]["esplora"]["accuracy"] == 1.0 and report["summary"]["visor"]["VISOR_uncond"] == 100.0


def test_colour_reading_is_exact_on_ground_truth_and_splits_axis_from_direction():
    from types import SimpleNamespace

    from diffusers_spatial.relations import CONVERSE
    from diffusers_spatial.world.evaluation import colour_verdict

    config = WorldConfig()
    for index in range(200):
        sample = world_sample(config, VERIFIED, 4, index)
        c = sample.caption
        true = SimpleNamespace(subject=c.first.name, relation=c.relation, object=c.second.name)
        mirrored = SimpleNamespace(subject=c.first.name, relation=CONVERSE[c.relation], object=c.second.name)
        assert colour_verdict(sample.image, true, config) == (True, True, True), (index, c.text)
        assert colour_verdict(sample.image, mirrored, config) == (True, False, True), (index, c.text)
    blank = np.full((32, 32, 3), 245, np.uint8)
    assert colour_verdict(blank, true, config) == (False, False, False)
