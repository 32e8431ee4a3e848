"""`perception.images`: every odd input becomes an RGB PIL image, or an `ImageLoadError` naming it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from diffusers_spatial.perception.images import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    check_rgb_images,
    load_image,
    to_rgb_image,
)


def _photo(width: int = 96, height: int = 64) -> Image.Image:
    """A smooth colour gradient (compresses like a photo; JPEG artefacts stay small)."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2).astype(np.uint8))


def _save(image: Image.Image, path, **kwargs) -> str:
    image.save(path, **kwargs)
    return str(path)


# ---------------------------------------------------------------------------------------------------------------
# Files


def test_reads_jpeg_and_png_files(tmp_path):
    photo = _photo()
    for suffix in ("jpg", "png"):
        loaded = load_image(_save(photo, tmp_path / f"photo.{suffix}"))
        assert loaded.image.mode == "RGB" and loaded.image.size == (96, 64)
        assert loaded.original_size == (96, 64) and loaded.scale == 1.0 and not loaded.downscaled
        assert loaded.source == repr(str(tmp_path / f"photo.{suffix}"))
        assert np.abs(np.asarray(loaded.image, np.int16) - np.asarray(photo, np.int16)).mean() < 3
    assert load_image((tmp_path / "photo.png").read_bytes()).image.size == (96, 64)


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageLoadError, match=rf"cannot load image '{path}': not an image file") as info:
        load_image(path)
    assert info.value.source == repr(str(path)) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_reported(tmp_path, fmt):
    data = io.BytesIO()
    _photo(256, 256).save(data, format=fmt)
    path = tmp_path / f"truncated.{fmt.lower()}"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match=rf"cannot load image '{path}': corrupt or truncated image data"):
        load_image(path)


def test_missing_empty_and_directory_paths(tmp_path):
    with pytest.raises(ImageLoadError, match=rf"'{tmp_path / 'nope.png'}': no such file"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"'.*empty.png': the file is empty \(0 bytes\)"):
        load_image(str(tmp_path / "empty.png"))
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(ImageLoadError, match=r"<0 bytes>: no data"):
        load_image(b"")


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    path = _save(Image.fromarray(ramp), tmp_path / "depth16.png")
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(to_rgb_image(path))
    expected = np.round(ramp / 257.0).astype(np.uint8)
    assert rgb.shape == (32, 64, 3) and (rgb[..., 0] == expected).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert rgb.max() == 255 and rgb.min() == 0  # not clipped to white, as Image.convert("RGB") would do


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 10, 10, 255)  # opaque red
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[0, 2] = (0, 0, 0, 128)  # half transparent black -> mid grey
    rgb = np.asarray(to_rgb_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png")))
    assert tuple(rgb[0, 0]) == (200, 10, 10)
    assert tuple(rgb[0, 1]) == (255, 255, 255)
    assert all(abs(int(v) - 127) <= 1 for v in rgb[0, 2])


def test_exif_orientation_is_applied(tmp_path):
    photo = _photo(96, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(photo, tmp_path / "rotated.jpg", exif=exif)
    loaded = load_image(path)
    assert loaded.image.size == (64, 96) and loaded.original_size == (64, 96)
    # Also when the image is downscaled while decoding (draft mode reads the pre-rotation size).
    small = load_image(path, max_pixels=1500)
    assert small.original_size == (64, 96) and small.image.width < small.image.height


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = _save(_photo(200, 200), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow errors above twice this
    with pytest.raises(ImageLoadError, match=rf"'{path}': too many pixels to decode safely"):
        load_image(path)


# ---------------------------------------------------------------------------------------------------------------
# PIL modes


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "LA", "I", "I;16", "F", "RGBA", "YCbCr"])
def test_pil_modes_become_rgb(mode):
    source = _photo(12, 8)
    if mode == "I":
        image = Image.fromarray(np.asarray(source.convert("L"), np.int32) * 257)
    elif mode == "I;16":
        image = Image.fromarray(np.asarray(source.convert("L"), np.uint16) * 257)
    elif mode == "F":
        image = Image.fromarray(np.asarray(source.convert("L"), np.float32) / 255.0)
    else:
        image = source.convert(mode)
    assert image.mode == mode
    rgb = to_rgb_image(image)
    assert rgb.mode == "RGB" and rgb.size == (12, 8)
    if mode in ("L", "I", "I;16", "F", "LA"):
        gray = np.asarray(source.convert("L"), np.int16)
        assert np.abs(np.asarray(rgb, np.int16)[..., 0] - gray).max() <= 1


def test_palette_with_transparency():
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 1
    assert list(to_rgb_image(image).getdata()) == [(255, 0, 0), (255, 255, 255)]


def test_rgb_pil_image_is_not_copied():
    image = _photo()
    assert to_rgb_image(image) is image


# ---------------------------------------------------------------------------------------------------------------
# Arrays


@pytest.mark.parametrize(
    ("array", "pixel"),
    [
        (np.full((3, 5), 7, np.uint8), (7, 7, 7)),
        (np.full((3, 5, 1), 7, np.uint8), (7, 7, 7)),
        (np.full((3, 5, 3), (1, 2, 3), np.uint8), (1, 2, 3)),
        (np.full((3, 5, 4), (1, 2, 3, 255), np.uint8), (1, 2, 3)),
        (np.full((3, 5, 2), (9, 0), np.uint8), (255, 255, 255)),
        (np.full((3, 5), 65535, np.uint16), (255, 255, 255)),
        (np.full((3, 5, 3), 257 * 10, np.uint16), (10, 10, 10)),
        (np.full((3, 5), 0.5, np.float32), (128, 128, 128)),
        (np.full((3, 5, 3), 1.0, np.float64), (255, 255, 255)),
        (np.ones((3, 5), bool), (255, 255, 255)),
        (np.full((3, 5), 200, np.int64), (200, 200, 200)),
        (np.full((3, 5), 1000, np.int32), (4, 4, 4)),  # > 255: read as 16-bit
    ],
)
def test_arrays_of_every_layout_and_dtype(array, pixel):
    rgb = to_rgb_image(array)
    assert rgb.mode == "RGB" and rgb.size == (5, 3) and rgb.getpixel((0, 0)) == pixel


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((0, 5, 3), np.uint8), r"the image is empty \(5x0 pixels\)"),
        (np.zeros((4, 0), np.uint8), r"the image is empty \(0x4 pixels\)"),
        (np.zeros((3, 4, 5), np.uint8), r"unsupported array shape \(3, 4, 5\)"),
        (np.zeros((2, 3, 4, 3), np.uint8), r"unsupported array shape \(2, 3, 4, 3\)"),
        (np.full((2, 2), 255.0), r"float pixel values must lie in \[0, 1\], got \[255, 255\]"),
        (np.array([[0.5, np.nan]]), "the float array holds NaN or infinite values"),
        (np.full((2, 2), -3, np.int16), r"negative pixel values \(min -3"),
        (np.full((2, 2), 70000, np.int64), "integer pixel values up to 70000"),
        (np.zeros((2, 2), np.complex64), "unsupported dtype complex64"),
    ],
)
def test_bad_arrays_are_named(array, message):
    with pytest.raises(ImageLoadError, match=rf"cannot load image <array of shape .*>: {message}"):
        load_image(array)


def test_zero_size_pil_image_and_unsupported_types():
    with pytest.raises(ImageLoadError, match=r"<PIL image RGB 0x0>: the image is empty"):
        load_image(Image.new("RGB", (0, 0)))
    with pytest.raises(ImageLoadError, match=r"<list>: unsupported type list"):
        load_image([[0, 0], [0, 0]])
    with pytest.raises(ImageLoadError, match=r"cannot load image images\[3\]"):
        load_image(np.zeros((0, 1)), source="images[3]")
    with pytest.raises(ValueError, match="max_pixels must be a positive number"):
        load_image(_photo(), max_pixels=0)


# ---------------------------------------------------------------------------------------------------------------
# Huge images


def test_huge_array_is_downscaled_with_a_scale_back():
    huge = np.zeros((4500, 4000, 3), np.uint8)  # 18 MP > DEFAULT_MAX_PIXELS
    huge[3000:, :1000] = 255  # a white block in the lower left
    loaded = load_image(huge)
    width, height = loaded.image.size
    assert width * height <= DEFAULT_MAX_PIXELS and loaded.downscaled and loaded.original_size == (4000, 4500)
    assert abs(width / height - 4000 / 4500) < 1e-3 and 0.9 < loaded.scale < 1.0
    # The block's corners, found in the working image, map back to the original pixels.
    block = np.argwhere(np.asarray(loaded.image)[..., 0] > 127)
    box = [block[:, 1].min(), block[:, 0].min(), block[:, 1].max() + 1, block[:, 0].max() + 1]
    np.testing.assert_allclose(loaded.box_to_original(box), [0, 3000, 1000, 4500], atol=3)
    assert load_image(huge, max_pixels=None).image.size == (4000, 4500)


def test_huge_jpeg_is_decoded_at_reduced_size(tmp_path):
    path = _save(_photo(800, 600), tmp_path / "big.jpg", quality=90)
    loaded = load_image(path, max_pixels=20_000)
    assert loaded.original_size == (800, 600)
    assert loaded.image.width * loaded.image.height <= 20_000
    assert loaded.box_to_original([0, 0, loaded.image.width, loaded.image.height]) == [0, 0, 800, 600]
    # Same picture as a full decode followed by a resize.
    reference = np.asarray(_photo(800, 600).resize(loaded.image.size, Image.Resampling.BILINEAR), np.int16)
    assert np.abs(np.asarray(loaded.image, np.int16) - reference).mean() < 4


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 5000),
    height=st.integers(1, 5000),
    max_pixels=st.integers(1, 2_000_000),
)
def test_fitting_keeps_aspect_and_bound(width, height, max_pixels):
    from diffusers_spatial.perception.images import _fit_size

    w, h = _fit_size((width, height), max_pixels)
    if width * height <= max_pixels:
        assert (w, h) == (width, height)
    else:
        assert 1 <= w <= width and 1 <= h <= height
        assert w * h <= max_pixels or min(w, h) == 1
        # aspect ratio kept to within the rounding of one pixel on each side
        assert abs(w / h - width / height) <= width / height * (1 / h + 1 / w) + 1e-9 or min(w, h) == 1


def test_check_rgb_images_for_backends():
    gray = Image.new("L", (3, 2), 9)
    out = check_rgb_images([_photo(), gray])
    assert [im.mode for im in out] == ["RGB", "RGB"]
    with pytest.raises(TypeError, match=r"images\[1\] is a str"):
        check_rgb_images([_photo(), "a.png"])
    with pytest.raises(TypeError, match="single image"):
        check_rgb_images(_photo())
    with pytest.raises(ValueError, match=r"images\[0\] has zero size"):
        check_rgb_images([Image.new("RGB", (0, 3))])
