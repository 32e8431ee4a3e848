"""Unit tests of the curation stages, readers and writer (no detector: detections are given)."""

import io
import json
import tarfile
from collections import Counter

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from diffusers_spatial.data import CurationConfig, Record, ShardReader, discover_shards, write_webdataset_shard
from diffusers_spatial.data.language import looks_english
from diffusers_spatial.data.records import count_skipped
from diffusers_spatial.data.schema import SKIP_REASONS, SPATIAL_FEATURES
from diffusers_spatial.data.stages import (
    balance_stage,
    caption_stage,
    quality_stage,
    synthesis_stage,
    to_rows,
    verify_stage,
)
from diffusers_spatial.data.synthesis import explicit_prompt, order_flip, synthesize_prompt
from diffusers_spatial.data.writer import ShardWriter, atomic_write_json, completed_shards, manifest_dir
from diffusers_spatial.relations import CONVERSE, parse_spatial_prompt


def _jpeg(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def _det(label, box, score=0.8):
    return {"label": label, "score": score, "box": [float(v) for v in box]}


# A dog clearly left of a cat, in a 400 x 200 image.
DOG_LEFT_OF_CAT = [_det("dog", (10, 50, 110, 150)), _det("cat", (250, 60, 350, 160), 0.7)]


def _perceived(key, caption, detections, *, depth=None, size=(400, 200)):
    """A record as perception_stage leaves it (labels of the caption's nouns resolved to themselves)."""
    spatial = parse_spatial_prompt(caption) if caption else None
    labels = {spatial.subject_noun: spatial.subject_noun, spatial.object_noun: spatial.object_noun} if spatial else {}
    return Record(
        key,
        caption=caption,
        image_bytes=_jpeg(),
        image_name=f"{key}.jpg",
        url=f"https://example.com/{key}.jpg",
        spatial=spatial,
        detections=detections,
        image_size=size,
        depth=depth,
        depth_source="ground_truth" if depth is not None else None,
        extra={"noun_labels": labels},
    )


# -- caption filter ----------------------------------------------------------------------------------------------


def test_caption_stage_reasons_and_passthrough():
    config = CurationConfig()
    batch = [
        Record("s/0", caption="a photo of a dog  to the left of\na cat"),
        Record("s/1", caption=None),
        Record("s/2", caption="123 !!"),
        Record("s/3", caption="un chien à gauche d'un chat"),
        Record("s/4", caption="a dog left of a cat above a bench"),
        Record("s/5", caption="a dog and a cat"),
        Record("s/6", caption="a dog left of a cat", skip="missing_image"),
    ]
    out = caption_stage(batch, config)
    assert [r.skip for r in out] == [
        None,
        "empty_caption",
        "empty_caption",
        "non_english",
        "several_relations",
        None,
        "missing_image",
    ]
    assert out[0].spatial.relation == "left_of" and out[0].spatial.render() == "a photo of a dog to the left of a cat"
    assert out[5].spatial is None  # kept for synthesis
    assert out[6] is batch[6]  # skipped records ride along untouched
    assert batch[0].spatial is None  # inputs are not mutated
    no_synthesis = caption_stage(batch, CurationConfig(synthesize=False))
    assert no_synthesis[5].skip == "no_relation"
    keep_all = caption_stage(batch, CurationConfig(require_english=False))
    assert keep_all[3].skip != "non_english"


@pytest.mark.parametrize(
    "text, english",
    [
        ("a cat sitting to the left of a sofa", True),
        ("Le Mans 24h race car", True),
        ("Café de Flore in Paris", True),
        ("un perro a la izquierda de un gato", False),
        ("ein Hund links von einer Katze", False),
        ("een hond links van een kat", False),
        ("猫在狗的左边", False),
        ("кошка слева от собаки", False),
        ("", False),
    ],
)
def test_looks_english(text, english):
    assert looks_english(text) is english


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_caption_stage_never_raises_and_keeps_length(text):
    out = caption_stage([Record("k", caption=text)], CurationConfig())
    assert len(out) == 1
    assert out[0].skip is None or out[0].skip in SKIP_REASONS


# -- verification and synthesis -------------------------------------------------------------------------------


def test_verify_keeps_true_captions_and_routes_false_ones_to_synthesis():
    config = CurationConfig()
    batch = [
        _perceived("s/0", "a photo of a dog to the left of a cat", DOG_LEFT_OF_CAT),
        _perceived("s/1", "a dog to the right of a cat", DOG_LEFT_OF_CAT),
        _perceived("s/2", "a dog to the left of a horse", DOG_LEFT_OF_CAT),
        _perceived("s/3", "a dog in front of a cat", DOG_LEFT_OF_CAT),
        _perceived(
            "s/4", "a dog to the left of a cat", [_det("dog", (10, 10, 100, 100)), _det("cat", (50, 10, 140, 100))]
        ),
    ]
    out = verify_stage(batch, config)
    assert out[0].prompt is batch[0].spatial and out[0].prompt_origin == "caption" and out[0].score.correct
    assert out[1].skip is None and out[1].prompt is None and out[1].extra["misstated"]
    assert out[2].skip == "objects_not_found"
    assert out[3].skip == "no_depth_for_3d"
    assert out[4].skip == "undetermined"  # overlapping boxes: the layout does not show the relation
    strict = verify_stage(batch, CurationConfig(synthesize=False))
    assert strict[1].skip == "relation_false"


def test_verify_reports_nouns_the_detector_cannot_see():
    record = _perceived("s/0", "a castle to the left of a cat", DOG_LEFT_OF_CAT)
    record.extra["noun_labels"]["castle"] = None
    assert verify_stage([record], CurationConfig())[0].skip == "unseen_noun"


def test_synthesis_rewrites_a_misstated_caption_in_its_own_words():
    config = CurationConfig()
    batch = verify_stage(
        [_perceived("s/1", "a photo of a dog to the right of a cat, at dawn", DOG_LEFT_OF_CAT)], config
    )
    (record,) = synthesis_stage(batch, config)
    assert record.prompt.render() == "a photo of a dog to the left of a cat, at dawn"
    assert record.prompt_origin == "synthesized" and record.score.correct is True
    assert record.caption == "a photo of a dog to the right of a cat, at dawn"


def test_synthesis_writes_a_template_prompt_with_a_balanced_order():
    # Keys whose coin flips differ give the two orders of the same fact.
    keys = [f"s/{i}" for i in range(32)]
    flips = {order_flip(k) for k in keys}
    assert flips == {True, False}
    prompts = set()
    for key in keys:
        prompt, score, labels = synthesize_prompt(DOG_LEFT_OF_CAT, key=key, image_size=(400, 200))
        assert score.correct is True
        prompts.add(prompt.render())
        assert labels == (prompt.subject_noun, prompt.object_noun)
    assert prompts == {"a dog to the left of a cat", "a cat to the right of a dog"}


def test_synthesis_uses_3d_only_with_real_depth():
    # The cat overlaps the dog in the picture (no planar relation holds) and is nearer in the depth map.
    detections = [_det("dog", (100, 40, 260, 180)), _det("cat", (150, 60, 300, 190))]
    depth = np.full((200, 400), 0.1, dtype=np.float32)
    depth[40:180, 100:260] = 0.3
    depth[60:190, 150:300] = 0.9
    assert synthesize_prompt(detections, key="k", image_size=(400, 200)) is None
    prompt, score, _ = synthesize_prompt(detections, key="k", image_size=(400, 200), depth=depth)
    assert prompt.relation in ("in_front_of", "behind") and score.correct
    expected = {"cat": "in_front_of", "dog": "behind"}[prompt.subject_noun]
    assert prompt.relation == expected


def test_synthesis_without_a_pair_is_counted():
    config = CurationConfig()
    batch = [_perceived("s/0", "a lonely dog", [_det("dog", (10, 10, 100, 100))])]
    assert synthesis_stage(batch, config)[0].skip == "no_verified_pair"


def test_explicit_prompt_round_trips_through_the_parser():
    for subject, relation, obj in [
        ("car", "left_of", "tree"),
        ("apple", "above", "oven"),
        ("skis", "below", "person"),
    ]:
        prompt = explicit_prompt(subject, relation, obj)
        parsed = parse_spatial_prompt(prompt.render())
        assert (parsed.relation, parsed.object_noun) == (relation, obj)
        assert CONVERSE[parsed.relation] == prompt.converse_relation


# -- quality and balance ----------------------------------------------------------------------------------------


def _verified(key, detections, caption="a dog to the left of a cat", size=(400, 200)):
    return verify_stage([_perceived(key, caption, detections, size=size)], CurationConfig())[0]


def test_quality_filters_confidence_and_box_size():
    config = CurationConfig(min_confidence=0.5, min_box_fraction=0.01)
    ok = _verified("s/0", DOG_LEFT_OF_CAT)
    weak = _verified("s/1", [DOG_LEFT_OF_CAT[0], _det("cat", (250, 60, 350, 160), 0.4)])
    tiny = _verified("s/2", [_det("dog", (10, 50, 110, 150)), _det("cat", (300, 100, 305, 104))])
    assert [r.skip for r in quality_stage([ok, weak, tiny], config)] == [None, "low_confidence", "small_box"]


def test_balance_caps_each_unordered_pair_and_threads_its_state():
    records = [_verified(f"s/{i}", DOG_LEFT_OF_CAT) for i in range(3)]
    records.append(_verified("s/3", DOG_LEFT_OF_CAT, caption="a cat to the right of a dog"))
    first, counts = balance_stage(records[:2], Counter(), 2)
    second, counts2 = balance_stage(records[2:], counts, 2)
    assert [r.skip for r in first + second] == [None, None, "pair_overrepresented", "pair_overrepresented"]
    assert counts == Counter({("cat", "dog"): 2}) and counts2 == counts  # the input counter is not modified
    unlimited, _ = balance_stage(records, Counter(), None)
    assert count_skipped(unlimited) == Counter()


def test_rows_match_the_features():
    record = _verified("s/0", DOG_LEFT_OF_CAT + [_det("bird", (0, 0, 5, 5), 0.1)])
    depth = np.linspace(0, 1, 400 * 200, dtype=np.float32).reshape(200, 400)
    from dataclasses import replace

    (row,) = to_rows([replace(record, depth=depth, depth_source="ground_truth")], CurationConfig())
    assert set(row) == set(SPATIAL_FEATURES)
    assert (row["subject"], row["relation"], row["object"]) == ("dog", "left_of", "cat")
    assert [b["label"] for b in row["boxes"]] == ["dog", "cat"]  # below min_confidence is not written
    assert (
        row["depth_stats"]["source"] == "ground_truth" and row["depth_stats"]["subject"] < row["depth_stats"]["object"]
    )
    assert row["verification_score"] > 1.0  # esplora's normalised offset: the boxes are clearly apart
    assert row["origin"] == "https://example.com/s/0.jpg" and row["license"] == "unknown"
    SPATIAL_FEATURES.encode_example(row)


# -- readers ------------------------------------------------------------------------------------------------------


def _shard_rows(n, start=0):
    return [
        {"caption": f"a dog to the left of a cat {i}", "image": _jpeg((i * 20 % 255, 0, 0)), "url": f"u{i}"}
        for i in range(start, start + n)
    ]


def test_webdataset_reader_joins_parquet_and_counts_failed_downloads(tmp_path):
    rows = _shard_rows(3)
    rows.insert(1, {"caption": "a broken one", "image": None, "url": "https://example.invalid/x.jpg"})
    depth = np.ones((48, 64), np.float32)
    rows[0]["depth"] = depth
    write_webdataset_shard(tmp_path, "00000", rows)
    (spec,) = discover_shards(tmp_path)
    records = list(ShardReader(spec))
    assert [r.key for r in records] == ["00000/000000000", "00000/000000002", "00000/000000003", "00000/000000001"]
    assert [r.skip for r in records] == [None, None, None, "missing_image"]
    assert records[0].caption == "a dog to the left of a cat 0" and records[0].url == "u0"
    assert records[0].depth_source == "ground_truth" and np.array_equal(records[0].depth, depth)
    assert records[3].url == "https://example.invalid/x.jpg"


def test_truncated_tar_keeps_rows_before_the_cut_and_counts_the_rest(tmp_path):
    write_webdataset_shard(tmp_path, "00000", _shard_rows(6))
    tar = tmp_path / "00000.tar"
    tar.write_bytes(tar.read_bytes()[: int(tar.stat().st_size * 0.5)])
    reader = ShardReader(discover_shards(tmp_path)[0])
    records = list(reader)
    assert len(records) == 6  # every declared row, once
    reasons = [r.skip for r in records]
    assert reasons.count(None) >= 1 and reasons.count("truncated_tar") >= 1
    assert set(reasons) <= {None, "truncated_tar"}
    assert reader.issues == ["truncated_tar"]


def test_corrupt_parquet_falls_back_to_the_tar_and_is_counted(tmp_path):
    write_webdataset_shard(tmp_path, "00000", _shard_rows(2))
    parquet = tmp_path / "00000.parquet"
    parquet.write_bytes(parquet.read_bytes()[:40])
    reader = ShardReader(discover_shards(tmp_path)[0])
    records = list(reader)
    assert [r.caption for r in records] == ["a dog to the left of a cat 0", "a dog to the left of a cat 1"]
    assert reader.issues == ["corrupt_parquet"]


def test_parquet_without_key_column_is_not_joined(tmp_path):
    write_webdataset_shard(tmp_path, "00000", _shard_rows(2))
    table = pq.read_table(tmp_path / "00000.parquet").drop_columns(["key"])
    pq.write_table(table, tmp_path / "00000.parquet")
    records = list(ShardReader(discover_shards(tmp_path)[0]))
    assert [r.skip for r in records] == [None, None]  # no row counted twice as "missing"
    assert records[0].caption == "a dog to the left of a cat 0"


def test_missing_tar_and_empty_shard(tmp_path):
    write_webdataset_shard(tmp_path, "a", _shard_rows(2))
    (tmp_path / "a.tar").unlink()
    write_webdataset_shard(tmp_path, "b", [])
    (tmp_path / "c.tar").write_bytes(b"")  # a zero-byte tar, no parquet
    readers = [ShardReader(spec) for spec in discover_shards(tmp_path)]
    results = {reader.name: ([r.skip for r in reader], reader.issues) for reader in readers}
    assert results["a"] == (["missing_image", "missing_image"], ["missing_tar"])
    assert results["b"] == ([], ["empty_shard"])
    assert results["c"][0] == [] and "empty_shard" in results["c"][1]


def test_folder_reader_with_metadata_sidecars_and_missing_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.jpg").write_bytes(_jpeg())
    (tmp_path / "sub" / "b.png").write_bytes(_jpeg())
    (tmp_path / "sub" / "b.txt").write_text("a cat above a dog")
    np.save(tmp_path / "sub" / "b.depth.npy", np.zeros((48, 64), np.float32))
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps({"file_name": "a.jpg", "text": "a dog left of a cat", "license": "CC0"})
        + "\nnot json\n"
        + json.dumps({"file_name": "gone.jpg", "caption": "a bird"})
        + "\n"
    )
    specs = discover_shards(tmp_path, shard_size=2)
    assert [s.name for s in specs] == ["folder-00000", "folder-00001"]
    records = [r for spec in specs for r in ShardReader(spec)]
    by_key = {r.key.split("/", 1)[1]: r for r in records}
    assert by_key["a.jpg"].caption == "a dog left of a cat" and by_key["a.jpg"].license == "CC0"
    assert by_key["gone.jpg"].skip == "missing_image"
    assert by_key["sub/b.png"].caption == "a cat above a dog" and by_key["sub/b.png"].depth.shape == (48, 64)


def test_non_string_metadata_fields_are_unknown_not_a_crash(tmp_path):
    import pyarrow as pa

    write_webdataset_shard(tmp_path, "00000", _shard_rows(3))
    table = pq.read_table(tmp_path / "00000.parquet").drop_columns(["caption", "url", "LICENSE"])
    table = table.append_column("caption", pa.array([7, 8, 9]))  # numbers and lists where text belongs
    table = table.append_column("url", pa.array([[1], [2], [3]])).append_column("LICENSE", pa.array([1.5, 2.5, None]))
    pq.write_table(table, tmp_path / "00000.parquet")
    records = list(ShardReader(discover_shards(tmp_path)[0]))
    assert [r.skip for r in records] == [None, None, None]
    assert records[0].caption == "a dog to the left of a cat 0"  # the tar's own .txt, not the number
    assert [r.url for r in records] == ["u0", "u1", "u2"] and all(r.license is None for r in records)


def test_tar_json_with_a_list_url_and_a_repeated_key(tmp_path):
    write_webdataset_shard(tmp_path, "00000", _shard_rows(2))
    (tmp_path / "00000.parquet").unlink()
    tar_path = tmp_path / "00000.tar"
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:
        for member, data in members + members[:3]:  # the first sample again, after the second
            if member.name.endswith(".json"):
                data = json.dumps({"url": ["a", "list"], "license": 5}).encode()
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    records = list(ShardReader(discover_shards(tmp_path)[0]))
    kept = [r for r in records if r.skip is None]
    assert [r.key for r in kept] == ["00000/000000000", "00000/000000001"]  # one row per key
    assert [r.skip for r in records if r.skip] == ["duplicate_key"]
    assert all(r.url is None and r.license is None for r in kept)


def test_metadata_file_names_outside_the_folder_are_never_read(tmp_path):
    inside, outside = tmp_path / "in", tmp_path / "outside"
    inside.mkdir(), outside.mkdir()
    (outside / "secret.jpg").write_bytes(_jpeg())
    (inside / "a.jpg").write_bytes(_jpeg())
    lines = [{"file_name": "a.jpg", "text": "a dog left of a cat"}]
    lines += [
        {"file_name": n, "text": "a cat above a dog"} for n in ("../outside/secret.jpg", str(outside / "secret.jpg"))
    ]
    (inside / "metadata.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    records = [r for spec in discover_shards(inside) for r in ShardReader(spec)]
    by_name = {r.key.split("/", 1)[1]: r for r in records}
    assert by_name["a.jpg"].skip is None
    outside_records = [r for r in records if r.key.split("/", 1)[1] != "a.jpg"]
    assert len(outside_records) == 2 and all(
        r.skip == "outside_input" and r.image_bytes is None for r in outside_records
    )


def test_discover_shards_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover_shards(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="holds no"):
        discover_shards(tmp_path)


# -- writer ---------------------------------------------------------------------------------------------------------


def _row(key, relation="left_of", source="natural"):
    return {
        "image": {"bytes": _jpeg(), "path": f"{key}.jpg"},
        "prompt": "a dog to the left of a cat",
        "subject": "dog",
        "relation": relation,
        "object": "cat",
        "boxes": DOG_LEFT_OF_CAT,
        "depth_stats": None,
        "verification_score": 1.5,
        "source": source,
        "origin": "u",
        "license": "CC0",
        "key": key,
        "caption": None,
        "prompt_origin": "caption",
    }


def test_shard_writer_is_atomic_and_typed(tmp_path):
    writer = ShardWriter(tmp_path, "00007")
    writer.write([_row("a"), _row("b", relation="behind")])
    writer.write([_row("c", source="synthetic")])
    assert not list((tmp_path / "data").glob("*/*.parquet"))  # nothing visible before commit
    files = writer.commit()
    assert files == [
        {"path": "data/natural-2d/00007.parquet", "rows": 1},
        {"path": "data/natural-3d/00007.parquet", "rows": 1},
        {"path": "data/synthetic-2d/00007.parquet", "rows": 1},
    ]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    table = pq.read_table(tmp_path / files[0]["path"])
    assert datasets.Features.from_arrow_schema(table.schema) == SPATIAL_FEATURES

    aborted = ShardWriter(tmp_path, "00008")
    aborted.write([_row("d")])
    aborted.abort()
    assert not list(tmp_path.rglob("*00008*"))


def test_completed_shards_needs_the_entry_and_its_files(tmp_path):
    writer = ShardWriter(tmp_path, "s1")
    writer.write([_row("a")])
    files = writer.commit()
    assert completed_shards(tmp_path) == set()
    atomic_write_json(manifest_dir(tmp_path) / "s1.json", {"shard": "s1", "files": files})
    assert completed_shards(tmp_path) == {"s1"}
    (tmp_path / files[0]["path"]).unlink()
    assert completed_shards(tmp_path) == set()  # redone on resume


def test_shard_names_are_checked(tmp_path):
    with pytest.raises(ValueError, match="'../x'"):
        ShardWriter(tmp_path, "../x")


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="min_confidence must be a number in \\[0, 1\\], got 1.5"):
        CurationConfig(min_confidence=1.5)
    with pytest.raises(ValueError, match="max_rows_per_pair"):
        CurationConfig(max_rows_per_pair=0)
    with pytest.raises(ValueError, match="unknown CurationConfig fields \\['colour'\\]"):
        CurationConfig.from_dict({"colour": 1})
    assert CurationConfig.from_dict(CurationConfig(depth="dpt").to_dict()) == CurationConfig(depth="dpt")


def test_tar_written_for_tests_is_img2dataset_shaped(tmp_path):
    write_webdataset_shard(tmp_path, "00000", _shard_rows(1))
    with tarfile.open(tmp_path / "00000.tar") as tar:
        assert tar.getnames() == ["000000000.jpg", "000000000.txt", "000000000.json"]
    meta = pq.read_table(tmp_path / "00000.parquet").to_pylist()[0]
    assert meta["status"] == "success" and meta["key"] == "000000000"
