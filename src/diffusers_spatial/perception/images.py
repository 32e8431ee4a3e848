"""Turn whatever a user hands us (paths, bytes, PIL images, numpy arrays) into RGB `PIL.Image.Image`s.

Every detector and depth backend takes RGB PIL images; this module is the one place that reads files and odd
pixel formats, so that a bad file is reported once, with its name, instead of crashing a model mid-batch.

What is accepted:

- paths (`str` / `os.PathLike`) and raw `bytes` of any format Pillow reads; the EXIF orientation of a file is
  applied, so boxes refer to the image as it is displayed;
- `PIL.Image.Image` in any mode: grayscale (`L`, `1`), palette (`P`), `RGBA` / `LA` (composited over white,
  so fully transparent pixels do not show whatever colour they happen to store), `CMYK`, 16-bit (`I;16`) and
  32-bit (`I`, `F`) images;
- numpy arrays `H x W`, `H x W x 1`, `H x W x 2` (gray + alpha), `H x W x 3`, `H x W x 4`, of dtype `uint8`,
  `uint16` (full 16-bit range), `bool`, other integer types holding 0..255, or floats in [0, 1].

Huge images are downscaled to at most `DEFAULT_MAX_PIXELS` pixels (16.8 MP, 4096 x 4096) before they reach a
model: detectors and depth models work at about 1 megapixel anyway, and their processors would otherwise
build multi-gigabyte float arrays. `load_image` returns the scale so boxes map back to the original pixels;
JPEGs are decoded directly at a reduced size (Pillow's `draft`), which also saves the full-size decode.
Images beyond Pillow's decompression-bomb limit (about 179 MP) are refused.

Examples:

```py
>>> import numpy as np
>>> from diffusers_spatial.perception.images import load_image, to_rgb_image
>>> to_rgb_image(np.zeros((4, 6), dtype=np.uint16)).size  # 16-bit grayscale array -> RGB
(6, 4)
>>> loaded = load_image(np.zeros((6000, 8000, 3), dtype=np.uint8))  # 48 MP: downscaled
>>> loaded.image.size, loaded.original_size
((4729, 3547), (8000, 6000))
>>> [round(v) for v in loaded.box_to_original([0, 0, 4729, 3547])]
[0, 0, 8000, 6000]

```
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageInput",
    "ImageLoadError",
    "LoadedImage",
    "check_pil_images",
    "check_rgb_images",
    "describe_image_input",
    "load_image",
    "to_rgb_image",
]

DEFAULT_MAX_PIXELS: int = 4096 * 4096
"""Images with more pixels than this are downscaled (aspect ratio kept) before they reach a model."""

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray
"""Anything `load_image` accepts."""

_WHITE = (255, 255, 255)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageLoadError(ValueError):
    """An image could not be read or converted; the message names the image (its file, or what it was).

    Attributes:
        source: the file name, or a short description of the in-memory image (e.g. "array of shape (0, 4)").
        reason: what is wrong with it.
    """

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"cannot load image {source}: {reason}")

    def __reduce__(self):
        return type(self), (self.source, self.reason)


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image ready for a model, plus how it maps back to the image it came from.

    Args:
        image: the RGB image a model sees (the original, or a downscaled copy when it was huge).
        original_size: `(width, height)` of the original image (after EXIF orientation).
        source: where it came from (file name, or a description), for messages.
    """

    image: Image.Image
    original_size: tuple[int, int]
    source: str

    @property
    def scale(self) -> float:
        """Working width / original width: 1.0 unless the image was downscaled."""
        return self.image.width / self.original_size[0]

    @property
    def downscaled(self) -> bool:
        return self.image.size != self.original_size

    def box_to_original(self, box: Any) -> list[float]:
        """Map an `[x1, y1, x2, y2]` box in the working image's pixels to the original image's pixels."""
        sx = self.original_size[0] / self.image.width
        sy = self.original_size[1] / self.image.height
        x1, y1, x2, y2 = (float(v) for v in box)
        return [x1 * sx, y1 * sy, x2 * sx, y2 * sy]


def describe_image_input(image: Any) -> str:
    """A short, human-readable name for an image input, used in error messages."""
    if isinstance(image, (str, os.PathLike)):
        return repr(os.fspath(image))
    if isinstance(image, (bytes, bytearray)):
        return f"<{len(image)} bytes>"
    if isinstance(image, Image.Image):
        filename = getattr(image, "filename", "")
        return repr(filename) if filename else f"<PIL image {image.mode} {image.width}x{image.height}>"
    if isinstance(image, np.ndarray):
        return f"<array of shape {tuple(image.shape)}, dtype {image.dtype}>"
    return f"<{type(image).__name__}>"


def load_image(
    image: ImageInput, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, source: str | None = None
) -> LoadedImage:
    """Read an image (path, bytes, PIL image or numpy array) as RGB, downscaling it if it is huge.

    Args:
        image: the image; see the module docstring for the accepted types, modes and dtypes.
        max_pixels: images with more pixels are downscaled (aspect ratio kept) to at most this many; None keeps
            every image at full size.
        source: the name used in error messages and in `LoadedImage.source` (default: the file name, or a
            description of the object).

    Returns:
        A `LoadedImage` with the RGB image, the original size and the mapping back to it.

    Raises:
        ImageLoadError: (a ValueError) the file is missing, not an image, truncated or corrupt, empty
            (zero width or height), too large for Pillow, or the array has an unsupported shape / dtype / range.
            The message names the image.

    Examples:

    ```py
    >>> from PIL import Image
    >>> load_image(Image.new("RGBA", (3, 2))).image.getpixel((0, 0))  # transparent -> white
    (255, 255, 255)

    ```
    """
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive number of pixels or None, got {max_pixels!r}")
    source = source if source is not None else describe_image_input(image)
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        rgb, original_size = _read_file(image, source, max_pixels)
    elif isinstance(image, Image.Image):
        _check_not_empty(image.size, source)
        try:
            image.load()
        except Exception as e:  # a lazily opened file can still be truncated
            raise ImageLoadError(source, f"corrupt or truncated image data ({e})") from e
        rgb, original_size = _pil_to_rgb(image, source), image.size
    elif isinstance(image, np.ndarray):
        rgb = _array_to_rgb(image, source)
        original_size = rgb.size
    else:
        raise ImageLoadError(
            source, f"unsupported type {type(image).__name__}; pass a path, bytes, a PIL image or a numpy array"
        )
    return LoadedImage(image=_fit(rgb, max_pixels), original_size=original_size, source=source)


def to_rgb_image(image: ImageInput, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """`load_image(...).image`: the RGB PIL image alone (use `load_image` when boxes must map back).

    Examples:

    ```py
    >>> import numpy as np
    >>> to_rgb_image(np.full((2, 2), 0.5)).getpixel((0, 0))  # float grayscale in [0, 1]
    (128, 128, 128)

    ```
    """
    return load_image(image, max_pixels=max_pixels).image


def check_pil_images(images: Sequence[Any]) -> list[Image.Image]:
    """Check that `images` is a sequence of non-empty PIL images (of any mode); return it as a list.

    Raises:
        TypeError: a single image instead of a sequence, or an item that is not a PIL image (the message gives its
            index and points to `load_image`).
        ValueError: an image has zero width or height.
    """
    if isinstance(images, Image.Image):
        raise TypeError("images must be a sequence of PIL images, got a single image: wrap it in a list")
    images = list(images)
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise TypeError(
                f"images[{i}] is a {type(image).__name__}, expected a PIL.Image.Image "
                "(diffusers_spatial.perception.images.load_image converts paths and arrays)"
            )
        if image.width < 1 or image.height < 1:
            raise ValueError(f"images[{i}] has zero size {image.size}")
    return images


def check_rgb_images(images: Sequence[Any]) -> list[Image.Image]:
    """What a backend's `detect` / `estimate` accepts: a sequence of non-empty PIL images, converted to RGB.

    Raises:
        TypeError: an item is not a PIL image (the message gives its index and points to `load_image`).
        ValueError: an image has zero width or height.
    """
    images = check_pil_images(images)
    return [image if image.mode == "RGB" else _pil_to_rgb(image, f"images[{i}]") for i, image in enumerate(images)]


def _read_file(image: str | os.PathLike | bytes, source: str, max_pixels: int | None) -> tuple[Image.Image, tuple]:
    if isinstance(image, (bytes, bytearray)):
        if not image:
            raise ImageLoadError(source, "no data (0 bytes)")
        fp: Any = io.BytesIO(image)
    else:
        path = os.fspath(image)
        if not os.path.exists(path):
            raise ImageLoadError(source, "no such file")
        if os.path.isdir(path):
            raise ImageLoadError(source, "is a directory, not an image file")
        if os.path.getsize(path) == 0:
            raise ImageLoadError(source, "the file is empty (0 bytes)")
        fp = path
    try:
        with Image.open(fp) as opened:
            _check_not_empty(opened.size, source)
            original_size = _oriented_size(opened)
            if max_pixels is not None and opened.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale straight away when the image will be downscaled anyway.
                opened.draft("RGB", _fit_size(opened.size, max_pixels))
            opened.load()
            oriented = ImageOps.exif_transpose(opened)
            rgb = _pil_to_rgb(oriented, source)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageLoadError(source, f"too many pixels to decode safely ({e})") from e
    except Image.UnidentifiedImageError as e:
        raise ImageLoadError(source, "not an image file, or a format Pillow cannot read") from e
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, EOFError... for broken data
        raise ImageLoadError(source, f"corrupt or truncated image data ({type(e).__name__}: {e})") from e
    return rgb, original_size


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """The size after EXIF orientation, read before any draft-mode decode shrinks the image."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # unreadable EXIF: exif_transpose will ignore it too
        orientation = 1
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _check_not_empty(size: tuple[int, int], source: str) -> None:
    if size[0] <= 0 or size[1] <= 0:
        raise ImageLoadError(source, f"the image is empty ({size[0]}x{size[1]} pixels)")


def _pil_to_rgb(image: Image.Image, source: str) -> Image.Image:
    _check_not_empty(image.size, source)
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_MODES or image.mode == "F":
        return _array_to_rgb(np.asarray(image), source)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        return _composite_on_white(image.convert("RGBA"))
    try:
        return image.convert("RGB")
    except Exception as e:
        raise ImageLoadError(source, f"cannot convert mode {image.mode!r} to RGB ({e})") from e


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _array_to_rgb(array: np.ndarray, source: str) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ImageLoadError(
            source, f"unsupported array shape {tuple(array.shape)}; expected H x W or H x W x C with C in 1, 2, 3, 4"
        )
    _check_not_empty((array.shape[1], array.shape[0]), source)
    pixels = _to_uint8(array, source)
    if pixels.ndim == 2:
        return Image.fromarray(pixels, mode="L").convert("RGB")
    channels = pixels.shape[2]
    if channels == 3:
        return Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
    if channels == 2:
        gray, alpha = pixels[:, :, 0], pixels[:, :, 1]
        pixels = np.stack([gray, gray, gray, alpha], axis=2)
    return _composite_on_white(Image.fromarray(np.ascontiguousarray(pixels), mode="RGBA"))


def _to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    """Rescale an integer / bool / float pixel array to uint8 without guessing silently."""
    dtype = array.dtype
    if dtype == np.uint8:
        return array
    if dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if dtype == np.uint16 or (dtype.kind in "iu" and array.size and array.min() >= 0 and array.max() > 255):
        if dtype != np.uint16 and array.max() > 65535:
            raise ImageLoadError(
                source, f"integer pixel values up to {array.max()} (dtype {dtype}); expected 0..255 or 0..65535"
            )
        # 16-bit: 65535 -> 255 (the same mapping as 8-bit = 16-bit / 257).
        return np.round(array.astype(np.float32) / 257.0).astype(np.uint8)
    if dtype.kind in "iu":
        if array.size and array.min() < 0:
            raise ImageLoadError(source, f"negative pixel values (min {array.min()}, dtype {dtype})")
        return array.astype(np.uint8)
    if dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ImageLoadError(source, "the float array holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ImageLoadError(
                source, f"float pixel values must lie in [0, 1], got [{low:g}, {high:g}] (divide 0..255 data by 255)"
            )
        return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageLoadError(source, f"unsupported dtype {dtype}")


def _fit_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    width, height = size
    if width * height <= max_pixels:
        return width, height
    factor = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * factor)), max(1, math.floor(height * factor))


def _fit(image: Image.Image, max_pixels: int | None) -> Image.Image:
    if max_pixels is None:
        return image
    target = _fit_size(image.size, max_pixels)
    if target == image.size:
        return image
    # reducing_gap: a box-filter pre-reduction, then bilinear; fast on huge images and alias-free.
    return image.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
