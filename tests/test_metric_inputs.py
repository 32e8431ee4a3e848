"""Pairing a folder of images with prompts: JSONL / CSV / text files, metadata files, file names; and bad input."""

import json

import pytest
from PIL import Image

from diffusers_spatial.metric import collect_items, list_images, prompt_from_file_name, read_prompts


def _images(folder, names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(path)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_list_images_is_recursive_natural_and_skips_other_files(tmp_path):
    _images(tmp_path, ["img_10.png", "img_2.jpg", "sub/img_1.webp"])
    _write(tmp_path / "notes.txt", "x")
    assert list_images(tmp_path) == ["img_2.jpg", "img_10.png", "sub/img_1.webp"]
    assert list_images(tmp_path, exclude=[tmp_path / "sub"]) == ["img_2.jpg", "img_10.png"]


@pytest.mark.parametrize(
    "name, prompt",
    [
        ("a_cat_to_the_left_of_a_dog_000003.png", "a cat to the left of a dog"),
        ("a bird on the left of a cat_000000.png", "a bird on the left of a cat"),  # T2I-CompBench
        ("a cup above a book (2).jpg", "a cup above a book"),
        ("a cup above a book.png", "a cup above a book"),
    ],
)
def test_prompt_from_file_name(name, prompt):
    assert prompt_from_file_name(name) == prompt


def test_read_prompts_formats(tmp_path):
    jsonl = _write(
        tmp_path / "p.jsonl",
        json.dumps({"prompt_id": "a", "prompt": "a cat above a dog", "images": ["x.png"]})
        + "\n\n"
        + json.dumps({"text": "a cup left of a bowl", "image": "y.png", "extra": 1})
        + "\n",
    )
    records = read_prompts(jsonl)
    assert [(r.prompt_id, r.prompt, r.images) for r in records] == [
        ("a", "a cat above a dog", ["x.png"]),
        ("1", "a cup left of a bowl", ["y.png"]),
    ]
    csv_file = _write(tmp_path / "p.csv", 'file_name,prompt\nx.png,a cat above a dog\ny.png,"a cup, left of a bowl"\n')
    assert [(r.prompt, r.images) for r in read_prompts(csv_file)] == [
        ("a cat above a dog", ["x.png"]),
        ("a cup, left of a bowl", ["y.png"]),
    ]
    txt = _write(tmp_path / "p.txt", "a cat above a dog\n\n  a cup left of a bowl  \n")
    assert [(r.prompt_id, r.prompt) for r in read_prompts(txt)] == [
        ("0", "a cat above a dog"),
        ("1", "a cup left of a bowl"),
    ]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.jsonl", '{"prompt": "a cat above a dog"}\n{"prompt": \n', r"bad.jsonl:2: not a JSON object"),
        ("bad.jsonl", '{"caption_x": "a"}\n', r"bad.jsonl:1: no prompt"),
        ("bad.jsonl", '["a cat above a dog"]\n', r"bad.jsonl:1: expected a JSON object"),
        ("bad.jsonl", '{"prompt": "a", "images": 3}\n', r"'images' must be a list"),
        ("bad.jsonl", '{"prompt": "a", "id": 1}\n{"prompt": "b", "id": 1}\n', r"prompt_id '1' appears more than once"),
        ("bad.csv", "file,caption_x\nx.png,a\n", r"has no prompt column"),
        ("empty.txt", "\n\n", r"holds no prompts"),
    ],
)
def test_read_prompts_errors_name_file_and_line(tmp_path, name, text, message):
    with pytest.raises(ValueError, match=message):
        read_prompts(_write(tmp_path / name, text))


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="prompts file"):
        read_prompts(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="images folder"):
        collect_items(tmp_path / "nope")
    with pytest.raises(ValueError, match="no images"):
        collect_items(tmp_path)


def test_prompts_from_file_names_group_repeated_prompts(tmp_path):
    _images(tmp_path, ["a cat above a dog_0.png", "a cat above a dog_1.png", "a cup left of a bowl_0.png"])
    items = collect_items(tmp_path)
    assert [(i.key, i.prompt_id) for i in items] == [
        ("a cat above a dog_0.png", "a cat above a dog"),
        ("a cat above a dog_1.png", "a cat above a dog"),
        ("a cup left of a bowl_0.png", "a cup left of a bowl"),
    ]
    assert items[0].image == str(tmp_path / "a cat above a dog_0.png")


def test_prompts_without_image_names_are_dealt_in_order(tmp_path):
    _images(tmp_path, [f"{i}.png" for i in range(6)])
    prompts = _write(tmp_path / "prompts.txt", "a cat above a dog\na cup left of a bowl\n")
    items = collect_items(tmp_path, prompts)
    assert [(i.key, i.prompt_id) for i in items] == [(f"{i}.png", str(i // 3)) for i in range(6)]
    with pytest.raises(ValueError, match=r"found 6 images .* but 2 prompts x 2 images per prompt = 4"):
        collect_items(tmp_path, prompts, images_per_prompt=2)
    _write(tmp_path / "three.txt", "a\nb\nc\nd\n")
    with pytest.raises(ValueError, match="not a whole number of images per prompt"):
        collect_items(tmp_path, tmp_path / "three.txt")
    with pytest.raises(ValueError, match="images_per_prompt must be a positive integer"):
        collect_items(tmp_path, prompts, images_per_prompt=0)


def test_named_images_missing_images_and_duplicates(tmp_path):
    _images(tmp_path, ["x.png"])
    prompts = _write(
        tmp_path / "p.jsonl",
        json.dumps({"prompt": "a cat above a dog", "images": ["x.png", "gone.png"]}) + "\n",
    )
    items = collect_items(tmp_path, prompts)
    assert [i.key for i in items] == ["x.png", "gone.png"]  # a missing file is scored as unreadable, not dropped
    _write(tmp_path / "dup.jsonl", '{"prompt": "a", "image": "x.png"}\n{"prompt": "b", "image": "x.png"}\n')
    with pytest.raises(ValueError, match="image 'x.png' is listed for prompt '0' and for prompt '1'"):
        collect_items(tmp_path, tmp_path / "dup.jsonl")
    _write(tmp_path / "mixed.jsonl", '{"prompt": "a", "image": "x.png"}\n{"prompt": "b"}\n')
    with pytest.raises(ValueError, match="some prompts name their images and some do not"):
        collect_items(tmp_path, tmp_path / "mixed.jsonl")


def test_generate_output_layout(tmp_path):
    # `diffusers-spatial generate` writes OUT/prompts.jsonl naming images/<id>_<k>.png; either folder works.
    _images(tmp_path, ["images/p0_0.png", "images/p0_1.png"])
    _write(
        tmp_path / "prompts.jsonl",
        json.dumps(
            {"prompt_id": "p0", "prompt": "a cat above a dog", "images": ["images/p0_0.png", "images/p0_1.png"]}
        )
        + "\n",
    )
    from_out = collect_items(tmp_path, tmp_path / "prompts.jsonl")
    from_images = collect_items(tmp_path / "images", tmp_path / "prompts.jsonl")
    assert [i.key for i in from_out] == ["images/p0_0.png", "images/p0_1.png"]
    assert [i.key for i in from_images] == ["p0_0.png", "p0_1.png"]
    assert [i.image for i in from_out] == [i.image for i in from_images]


def test_imagefolder_metadata_and_geneval_layout(tmp_path):
    folder = tmp_path / "imagefolder"
    _images(folder, ["a.png", "b.png", "ignored.png"])
    _write(
        folder / "metadata.jsonl",
        '{"file_name": "a.png", "text": "a cat above a dog"}\n{"file_name": "b.png", "prompt": "a cup left of a bowl"}\n',
    )
    assert [(i.key, i.prompt) for i in collect_items(folder)] == [
        ("a.png", "a cat above a dog"),
        ("b.png", "a cup left of a bowl"),
    ]
    geneval = tmp_path / "geneval"
    _images(geneval, ["00000/samples/0000.png", "00000/samples/0001.png", "00000/grid.png", "00001/samples/0000.png"])
    _write(geneval / "00000" / "metadata.jsonl", '{"prompt": "a photo of a cat left of a dog", "tag": "position"}\n')
    _write(geneval / "00001" / "metadata.jsonl", '{"prompt": "a photo of a cup above a bowl", "tag": "position"}\n')
    items = collect_items(geneval)
    assert [(i.key, i.prompt_id) for i in items] == [
        ("00000/samples/0000.png", "00000"),
        ("00000/samples/0001.png", "00000"),
        ("00001/samples/0000.png", "00001"),
    ]


def test_output_folder_inside_images_folder_is_skipped(tmp_path):
    _images(tmp_path, ["a cat above a dog_0.png", "eval/accuracy_per_relation.png"])
    assert [i.key for i in collect_items(tmp_path, exclude=[tmp_path / "eval"])] == ["a cat above a dog_0.png"]
