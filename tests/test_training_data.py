"""Loading the training data and rejecting broken data before training, with every problem named."""

from __future__ import annotations

import json

import datasets
import pytest
from test_training_helpers import make_spatial_imagefolder

from diffusers_spatial.training.data import (
    DatasetValidationError,
    find_dataset_problems,
    load_training_dataset,
    validate_training_dataset,
)


@pytest.fixture
def folder(tmp_path):
    return make_spatial_imagefolder(tmp_path / "data", n=5)


def load(folder, tmp_path):
    return load_training_dataset(train_data_dir=folder, cache_dir=str(tmp_path / "cache"))


def test_imagefolder_loads_with_the_spatial_columns(folder, tmp_path):
    dataset = load(folder, tmp_path)
    assert len(dataset) == 5
    assert {"image", "prompt", "subject", "relation", "object", "boxes"} <= set(dataset.column_names)
    assert find_dataset_problems(dataset, progress=False) == []
    validate_training_dataset(dataset)  # no error


def test_dataset_name_reads_a_local_parquet_folder(folder, tmp_path):
    # The Hub layout: parquet shards with embedded image bytes.
    dataset = load(folder, tmp_path)
    parquet = tmp_path / "hub_copy" / "data"
    parquet.mkdir(parents=True)
    dataset.to_parquet(str(parquet / "train-00000-of-00001.parquet"))
    loaded = load_training_dataset(str(tmp_path / "hub_copy"), cache_dir=str(tmp_path / "cache2"))
    assert len(loaded) == 5 and loaded[0]["prompt"] == dataset[0]["prompt"]


def test_missing_columns_are_named_with_the_existing_ones(folder, tmp_path):
    dataset = load(folder, tmp_path)
    problems = find_dataset_problems(dataset, image_column="img", caption_column="text", progress=False)
    assert [p.kind for p in problems] == ["missing_column", "missing_column"]
    assert "--image_column 'img' is not a column" in str(problems[0])
    assert "--caption_column 'text' is not a column" in str(problems[1]) and "prompt" in str(problems[1])


def test_unreadable_images_and_empty_captions_are_named_by_row_and_file(folder, tmp_path):
    (folder / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "003.png").write_bytes(b"")
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    rows[0]["prompt"] = ""
    rows[4]["prompt"] = "  \n "
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load(folder, tmp_path)
    with pytest.raises(DatasetValidationError) as error:
        validate_training_dataset(dataset, source="my-data")
    message = str(error.value)
    assert "4 problem(s) with the training data in my-data; nothing was trained" in message
    assert "row 0: empty caption in column 'prompt': ''" in message
    assert "row 1, file" in message and "001.png" in message and "unreadable image" in message
    assert "003.png" in message and "row 4: empty caption" in message
    assert [p.row for p in error.value.problems] == [0, 1, 3, 4]


def test_image_check_can_be_skipped_but_not_the_captions(tmp_path):
    rows = datasets.Dataset.from_dict({"image": [str(tmp_path / "nope.png")], "prompt": [None]})
    problems = find_dataset_problems(rows, check_images=False, progress=False)
    assert [p.kind for p in problems] == ["empty_caption"]
    problems = find_dataset_problems(rows, progress=False)
    assert {p.kind for p in problems} == {"empty_caption", "unreadable_image"}
    assert any(p.file == str(tmp_path / "nope.png") for p in problems)


def test_caption_lists_and_empty_datasets():
    images = [None, None]
    rows = datasets.Dataset.from_dict({"image": images, "prompt": [["a dog left of a cat", "a cat"], []]})
    problems = find_dataset_problems(rows, check_images=False, progress=False)
    assert [(p.row, p.kind) for p in problems] == [(1, "empty_caption")]
    empty = datasets.Dataset.from_dict({"image": [], "prompt": []})
    assert [p.kind for p in find_dataset_problems(empty, progress=False)] == ["empty_dataset"]


def test_load_errors_name_the_source(tmp_path):
    with pytest.raises(ValueError, match="Need either --dataset_name or --train_data_dir"):
        load_training_dataset()
    with pytest.raises(ValueError, match="is not a directory"):
        load_training_dataset(train_data_dir=tmp_path / "missing")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "metadata.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="metadata.jsonl' is empty"):  # datasets: IndexError
        load_training_dataset(train_data_dir=tmp_path / "folder")
    (tmp_path / "folder" / "metadata.jsonl").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="metadata.jsonl' is not UTF-8 text"):
        load_training_dataset(train_data_dir=tmp_path / "folder")
    with pytest.raises(ValueError, match="looks like a local path but does not exist"):
        load_training_dataset("./missing-dataset")
