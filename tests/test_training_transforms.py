"""Spatially safe flips and the PIL/numpy training transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from diffusers_spatial.relations import parse_spatial_prompt
from diffusers_spatial.training.transforms import (
    AugmentationPlan,
    TrainTransform,
    TransformConfig,
    augmentation_rng,
    flip_caption,
    image_to_tensor,
    plan_augmentation,
)


@pytest.mark.parametrize(
    "caption, flipped",
    [
        ("a dog to the left of a cat", "a dog to the right of a cat"),
        ("A photo of a Dog On The Right Of a cat, in the snow", "A photo of a Dog On The Left Of a cat, in the snow"),
        ("a bench left of a bear", "a bench right of a bear"),
        ("a cup to the far LEFT of a book", "a cup to the far RIGHT of a book"),
        ("a cup above a book", "a cup above a book"),
        ("a dog in front of a car", "a dog in front of a car"),
        ("a cat sleeping on a sofa", "a cat sleeping on a sofa"),  # no relation phrase: nothing to rewrite
    ],
)
def test_flip_caption_rewrites_left_and_right(caption, flipped):
    assert flip_caption(caption) == flipped


@pytest.mark.parametrize(
    "caption",
    [
        "a man raising his left hand",  # not a spatial prompt but mentions a side
        "a left shoe above a box",  # a side inside a noun phrase
        "a dog to the left of a cat, on the right side of the road",  # two relation phrases
        "a cup above a book, leftmost on the shelf",
    ],
)
def test_flip_caption_refuses_what_it_cannot_mirror(caption):
    assert flip_caption(caption) is None


NOUNS = st.sampled_from(["a dog", "two red cats", "the traffic light", "an old bench", "a cup of coffee"])
PHRASES = st.sampled_from(
    ["to the left of", "on the right of", "left of", "to the right side of", "on the far left of"]
)


@given(NOUNS, PHRASES, NOUNS, st.sampled_from(["", "a photo of "]), st.sampled_from(["", ", at night"]))
def test_flip_is_an_involution_that_mirrors_the_relation(subject, phrase, obj, prefix, suffix):
    caption = f"{prefix}{subject} {phrase} {obj}{suffix}"
    once = flip_caption(caption)
    assert once is not None and flip_caption(once) == caption
    before, after = parse_spatial_prompt(caption), parse_spatial_prompt(once)
    assert {before.relation, after.relation} == {"left_of", "right_of"}
    assert (after.subject, after.object, after.prefix, after.suffix) == (
        before.subject,
        before.object,
        before.prefix,
        before.suffix,
    )


def test_plans_are_a_pure_function_of_seed_epoch_and_row():
    config = TransformConfig(resolution=16, random_flip=True)
    captions = ["a dog to the left of a cat", "a dog left of a cat"]
    plans = [plan_augmentation(augmentation_rng(0, epoch, 3), captions, config) for epoch in range(40)]
    again = [plan_augmentation(augmentation_rng(0, epoch, 3), captions, config) for epoch in range(40)]
    assert plans == again
    assert {p.flip for p in plans} == {True, False} and {p.caption_index for p in plans} == {0, 1}
    assert plans != [plan_augmentation(augmentation_rng(1, epoch, 3), captions, config) for epoch in range(40)]


def test_no_flip_planned_for_an_unflippable_caption_or_when_disabled():
    on, off = TransformConfig(resolution=16, random_flip=True), TransformConfig(resolution=16, random_flip=False)
    for epoch in range(30):
        assert not plan_augmentation(augmentation_rng(0, epoch, 0), ["a man raising his left hand"], on).flip
        assert not plan_augmentation(augmentation_rng(0, epoch, 0), ["a dog left of a cat"], off).flip


def test_center_crop_resize_and_flip_mirror_the_pixels_and_the_caption():
    array = np.zeros((32, 64, 3), dtype=np.uint8)
    array[:, :16] = 255  # a white band on the far left
    transform = TrainTransform(TransformConfig(resolution=16, center_crop=True))
    captions = ["a dog to the left of a cat"]
    plain = transform(Image.fromarray(array), captions, AugmentationPlan(0, 0.5, 0.5, False))
    mirrored = transform(Image.fromarray(array), captions, AugmentationPlan(0, 0.5, 0.5, True))
    assert plain["pixel_values"].shape == (3, 16, 16)
    assert plain["original_size"] == (32, 64)
    # resized to 32x16, the center crop starts at x = 8 (the band, now 8 px wide, is outside); the flip mirrors it
    torch.testing.assert_close(mirrored["pixel_values"], plain["pixel_values"].flip(-1))
    assert mirrored["caption"] == "a dog to the right of a cat" and plain["caption"] == captions[0]
    assert plain["crop_top_left"] == (0, 8) and mirrored["crop_top_left"] == (0, 8)


def test_random_crop_offsets_and_mirrored_crop_coordinates():
    transform = TrainTransform(TransformConfig(resolution=16))
    image = Image.new("RGB", (64, 16))
    assert transform(image, ["x"], AugmentationPlan(0, 0.0, 0.0, False))["crop_top_left"] == (0, 0)
    assert transform(image, ["x"], AugmentationPlan(0, 1.0, 0.0, False))["crop_top_left"] == (0, 48)
    # flipping the leftmost window makes it the rightmost window of the mirrored image
    assert transform(image, ["a cup above a book"], AugmentationPlan(0, 0.0, 0.0, True))["crop_top_left"] == (0, 48)


def test_image_to_tensor_range_and_odd_modes():
    tensor = image_to_tensor(Image.new("L", (3, 2), 255))
    assert tensor.shape == (3, 2, 3) and torch.all(tensor == 1.0)
    assert torch.all(image_to_tensor(Image.new("RGBA", (2, 2), (0, 0, 0, 0))) == -1.0)


@pytest.mark.parametrize("resolution", [0, 12, 7, "512"])
def test_transform_config_rejects_bad_resolutions(resolution):
    with pytest.raises(ValueError, match="resolution"):
        TransformConfig(resolution=resolution)


def test_interpolation_mode_picks_the_resize_filter():
    checker = np.indices((24, 24)).sum(0) % 2 * 255  # every pixel black or white
    image = Image.fromarray(np.repeat(checker[..., None], 3, -1).astype(np.uint8))
    plan = AugmentationPlan(0, 0.5, 0.5, False)

    def values(mode):
        pixels = TrainTransform(TransformConfig(resolution=16, interpolation=mode))(image, ["x"], plan)["pixel_values"]
        return set(pixels.unique().tolist())

    assert values("nearest") == {-1.0, 1.0}  # nearest keeps the two colours
    assert len(values("lanczos")) > 2  # a filter mixes them
    with pytest.raises(ValueError, match="interpolation must be one of"):
        TransformConfig(interpolation="cubic")
