"""Real photos that can be had offline, for tests, the dataset sample and demos; plus crops and collages of them.

No photo is committed to this repository. They come from two sources installed on the machine:

| source | photos | install |
| --- | --- | --- |
| scikit-image's data module (shipped in its wheel; licences in skimage/data/README.txt) | `astronaut`, `camera` (grayscale), `cat` (chelsea), `coffee`, `rocket`, `motorcycle_left`, `motorcycle_right` (+ ground-truth disparity) | `pip install scikit-image` |
| Debian's `darknet` package (`/usr/share/darknet/data/`) | `dog`, `person`, `horses`, `giraffe`, `eagle`, `kite`, `scream` | `apt-get install darknet` |

Set `DIFFUSERS_SPATIAL_DARKNET_DATA` to a folder holding the darknet photos (`dog.jpg`, ...) to use them from
elsewhere. `PHOTO_OBJECTS` gives hand-checked boxes of the main objects in each photo, so `crop_object` cuts real
object crops and `make_collage` pastes them at known positions: real pixels with ground-truth boxes, to test
left / right / above / below end to end.

Examples:

```py
>>> from diffusers_spatial.photos import crop_object, make_collage
>>> person, cup = crop_object("astronaut", "person", height=200), crop_object("coffee", "cup", height=100)
>>> image, boxes = make_collage([("person", person), ("cup", cup)], [(10, 20), (300, 60)], (480, 240))
>>> [(b["label"], b["box"]) for b in boxes]
[('person', [10, 20, 155, 220]), ('cup', [300, 60, 402, 160])]

```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "DARKNET_PHOTOS",
    "PHOTO_OBJECTS",
    "SKIMAGE_PHOTOS",
    "PhotoUnavailableError",
    "available_photos",
    "crop",
    "crop_object",
    "darknet_data_dir",
    "load_photo",
    "make_collage",
    "photo_path",
    "stereo_motorcycle",
]

DARKNET_PHOTOS: tuple[str, ...] = ("dog", "person", "horses", "giraffe", "eagle", "kite", "scream")
"""Photos of Debian's `darknet` package, by name (the file is `<name>.jpg`)."""

SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut",
    "camera": "camera",
    "cat": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
    "motorcycle_left": "motorcycle_left",
    "motorcycle_right": "motorcycle_right",
}
"""Photos of scikit-image's data module: our name -> `skimage.data` function (motorcycles via `stereo_motorcycle`)."""

PHOTO_OBJECTS: dict[str, dict[str, tuple[int, int, int, int]]] = {
    "dog": {"dog": (128, 215, 315, 542), "bicycle": (115, 125, 568, 422), "truck": (468, 78, 690, 168)},
    "person": {"dog": (66, 260, 202, 348), "person": (185, 100, 277, 377), "horse": (398, 136, 604, 344)},
    "horses": {"horse": (432, 209, 601, 346)},
    "giraffe": {"giraffe": (162, 25, 452, 443), "zebra": (247, 204, 423, 445)},
    "eagle": {"bird": (130, 84, 615, 444)},
    "astronaut": {"person": (0, 0, 370, 512)},
    "cat": {"cat": (0, 0, 451, 300)},
    "coffee": {"cup": (165, 20, 412, 262)},
    "motorcycle_left": {"motorcycle": (115, 56, 675, 449)},
}
"""Hand-checked boxes (x1, y1, x2, y2 in the photo's pixels) of one instance per COCO class in each photo."""

_DARKNET_ENV = "DIFFUSERS_SPATIAL_DARKNET_DATA"
_DARKNET_DEFAULT = "/usr/share/darknet/data"


class PhotoUnavailableError(FileNotFoundError):
    """A photo's source is not installed on this machine; the message says how to install it."""


def darknet_data_dir() -> Path:
    """Folder of the darknet photos: `$DIFFUSERS_SPATIAL_DARKNET_DATA` or Debian's `/usr/share/darknet/data`."""
    return Path(os.environ.get(_DARKNET_ENV) or _DARKNET_DEFAULT)


def _check_name(name: str) -> None:
    if name not in DARKNET_PHOTOS and name not in SKIMAGE_PHOTOS:
        known = ", ".join(sorted((*DARKNET_PHOTOS, *SKIMAGE_PHOTOS)))
        raise KeyError(f"Unknown photo {name!r}; known photos: {known}")


def photo_path(name: str) -> Path:
    """Path of a darknet photo file (scikit-image photos are loaded through `load_photo`).

    Raises:
        PhotoUnavailableError: the darknet photos are not installed.
    """
    if name not in DARKNET_PHOTOS:
        _check_name(name)
        raise KeyError(f"Photo {name!r} comes from scikit-image, which has no file path API: use load_photo({name!r})")
    path = darknet_data_dir() / f"{name}.jpg"
    if not path.is_file():
        raise PhotoUnavailableError(
            f"Photo {name!r} needs Debian's darknet package photos: {path} not found. Install them with "
            f"`apt-get install darknet`, or point {_DARKNET_ENV} at a folder holding {name}.jpg."
        )
    return path


def _skimage_data():
    try:
        import skimage.data
    except ImportError as error:
        raise PhotoUnavailableError(
            "scikit-image photos need scikit-image: `pip install scikit-image` "
            "(or `pip install diffusers-spatial[test]`)"
        ) from error
    return skimage.data


def stereo_motorcycle() -> tuple[Image.Image, Image.Image, np.ndarray]:
    """scikit-image's Middlebury stereo pair and its ground-truth disparity map (in pixels, for the left view).

    Disparity is proportional to inverse depth (larger = nearer), so it is a real depth map in the format the
    perception layer uses; pixels without ground truth are NaN.

    Returns:
        (left RGB image, right RGB image, H x W float32 disparity).
    """
    left, right, disparity = _skimage_data().stereo_motorcycle()
    disparity = np.asarray(disparity, dtype=np.float32).copy()
    disparity[~np.isfinite(disparity)] = np.nan
    return Image.fromarray(left).convert("RGB"), Image.fromarray(right).convert("RGB"), disparity


def load_photo(name: str) -> Image.Image:
    """A real photo by name (see the module table), as an RGB `PIL.Image.Image`.

    Raises:
        KeyError: unknown name.
        PhotoUnavailableError: its source is not installed (the message says how to install it).
    """
    _check_name(name)
    if name in DARKNET_PHOTOS:
        with Image.open(photo_path(name)) as image:
            return image.convert("RGB")
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    array = getattr(_skimage_data(), SKIMAGE_PHOTOS[name])()
    return Image.fromarray(array).convert("RGB")


def available_photos() -> list[str]:
    """Names of the photos whose source is installed on this machine."""
    names = []
    for name in (*DARKNET_PHOTOS, *SKIMAGE_PHOTOS):
        try:
            photo_path(name) if name in DARKNET_PHOTOS else _skimage_data()
        except PhotoUnavailableError:
            continue
        names.append(name)
    return names


def crop(image: Image.Image, box: Sequence[float], margin: float = 0.0) -> Image.Image:
    """Crop `box` (x1, y1, x2, y2 in pixels), grown by `margin` times its size on each side, clipped to the image.

    Raises:
        ValueError: the box is malformed or does not overlap the image.
    """
    if len(box) != 4 or not all(np.isfinite(v) for v in box):
        raise ValueError(f"box must be 4 finite numbers (x1, y1, x2, y2), got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {box!r} is empty or inverted (need x2 > x1 and y2 > y1)")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    left, top = max(0, round(x1 - dx)), max(0, round(y1 - dy))
    right, bottom = min(image.width, round(x2 + dx)), min(image.height, round(y2 + dy))
    if right <= left or bottom <= top:
        raise ValueError(f"box {box!r} does not overlap the {image.width}x{image.height} image")
    return image.crop((left, top, right, bottom))


def crop_object(
    photo: str,
    label: str,
    margin: float = 0.0,
    height: int | None = None,
    mask_others: bool = False,
    fill: tuple[int, int, int] = (124, 124, 124),
) -> Image.Image:
    """The hand-boxed `label` object of a photo (`PHOTO_OBJECTS`), optionally resized to `height` pixels.

    Args:
        photo: photo name.
        label: COCO class of the boxed object.
        margin: grow the box by this fraction of its size on each side.
        height: resize the crop to this height (aspect ratio kept).
        mask_others: paint the photo's other boxed objects in `fill` first, so that the crop shows no second
            labelled object (e.g. the dog's head inside the bicycle's box in `dog`); what of the object itself they
            cover is painted too.
        fill: RGB colour used by `mask_others`.

    Examples:

    ```py
    >>> crop_object("coffee", "cup").size
    (247, 242)

    ```
    """
    if photo not in PHOTO_OBJECTS or label not in PHOTO_OBJECTS[photo]:
        boxed = {name: sorted(objects) for name, objects in PHOTO_OBJECTS.items()}
        raise KeyError(f"No boxed {label!r} in photo {photo!r}; boxed objects: {boxed}")
    image = load_photo(photo)
    if mask_others:
        draw = ImageDraw.Draw(image)
        for other, box in PHOTO_OBJECTS[photo].items():
            if other != label:
                draw.rectangle(box, fill=tuple(fill))
    image = crop(image, PHOTO_OBJECTS[photo][label], margin=margin)
    if height is not None:
        if height < 1:
            raise ValueError(f"height must be a positive number of pixels, got {height!r}")
        image = image.resize((max(1, round(image.width * height / image.height)), height), Image.BICUBIC)
    return image


def make_collage(
    crops: Sequence[tuple[str, Image.Image]],
    positions: Sequence[tuple[int, int]],
    size: tuple[int, int],
    background: tuple[int, int, int] = (124, 124, 124),
) -> tuple[Image.Image, list[dict]]:
    """Paste labelled crops at known top-left positions on a plain background.

    Args:
        crops: (label, image) pairs, pasted in order (a later crop covers an earlier one where they overlap).
        positions: the (x, y) top-left corner of each crop, in pixels.
        size: (width, height) of the collage.
        background: RGB colour of the background.

    Returns:
        The RGB collage and its ground truth: one `{"label", "score": 1.0, "box": [x1, y1, x2, y2]}` per crop
        (the full pasted rectangle, occluded parts included).

    Raises:
        ValueError: counts differ, or a crop does not fit inside the collage.
    """
    if len(crops) != len(positions):
        raise ValueError(f"Got {len(crops)} crops but {len(positions)} positions")
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive (width, height), got {size!r}")
    canvas = Image.new("RGB", (width, height), tuple(background))
    truth = []
    for i, ((label, piece), (x, y)) in enumerate(zip(crops, positions)):
        if x < 0 or y < 0 or x + piece.width > width or y + piece.height > height:
            raise ValueError(
                f"crop {i} ({label!r}, {piece.width}x{piece.height}) at {(x, y)} does not fit in the {width}x{height} "
                "collage"
            )
        canvas.paste(piece.convert("RGB"), (int(x), int(y)))
        truth.append(
            {"label": label, "score": 1.0, "box": [int(x), int(y), int(x) + piece.width, int(y) + piece.height]}
        )
    return canvas, truth
