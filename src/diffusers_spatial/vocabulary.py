"""Object vocabulary shared by the grammar and perception: COCO-80 class names and noun singularisation.

`COCO_CLASSES` lists the 80 COCO detection classes in the contiguous order COCO-trained detectors (DETR,
YOLO, torchvision, the embedded ONNX detector) emit them, spelt as in the COCO annotations ("skis",
"hair drier", "tv"). `MULTIWORD_NOUNS` are the compound nouns a head-noun finder must keep whole
("traffic light" is a traffic light, not a light). `singularize` turns plural nouns into singular ones with
the irregular plurals prompts actually use.

Examples:

```py
>>> from diffusers_spatial.vocabulary import COCO_CLASSES, singularize
>>> COCO_CLASSES[:3]
('person', 'bicycle', 'car')
>>> [singularize(n) for n in ["dogs", "people", "knives", "traffic lights", "sheep", "benches"]]
['dog', 'person', 'knife', 'traffic light', 'sheep', 'bench']

```
"""

from __future__ import annotations

__all__ = [
    "COCO_CLASSES",
    "COCO_CLASS_TO_INDEX",
    "MULTIWORD_NOUNS",
    "singularize",
]

COCO_CLASSES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)
"""The 80 COCO detection classes in detector (contiguous id) order."""

COCO_CLASS_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(COCO_CLASSES)}
"""Class name -> contiguous index in `COCO_CLASSES`."""

MULTIWORD_NOUNS: frozenset[str] = frozenset(
    [name for name in COCO_CLASSES if " " in name]
    # Common spellings of the same objects, so a head-noun finder keeps them whole too.
    + ["hair dryer", "stop light", "fire truck", "ice cream", "coffee table", "tennis ball"]
)
"""Compound nouns kept whole by head-noun extraction (all multi-word COCO classes plus common variants)."""

# Plural -> singular for the forms the suffix rules below get wrong.
_IRREGULAR_PLURALS: dict[str, str] = {
    "people": "person",
    "persons": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
    "oxen": "ox",
    "dice": "die",
    "knives": "knife",
    "wives": "wife",
    "lives": "life",
    "wolves": "wolf",
    "leaves": "leaf",
    "loaves": "loaf",
    "shelves": "shelf",
    "calves": "calf",
    "halves": "half",
    "scarves": "scarf",
    "thieves": "thief",
    "elves": "elf",
    "selves": "self",
    "hooves": "hoof",
    "skis": "ski",
    "taxis": "taxi",
    "kiwis": "kiwi",
    "bikinis": "bikini",
    "broccolis": "broccoli",
    "buses": "bus",
    "octopuses": "octopus",
    "octopi": "octopus",
    "cacti": "cactus",
    "cactuses": "cactus",
    "fungi": "fungus",
    "viruses": "virus",
    "walruses": "walrus",
    "platypuses": "platypus",
    "hippopotamuses": "hippopotamus",
    "hippopotami": "hippopotamus",
    "cookies": "cookie",
    "movies": "movie",
    "zombies": "zombie",
    "brownies": "brownie",
    "selfies": "selfie",
    "smoothies": "smoothie",
    "hoodies": "hoodie",
    "pixies": "pixie",
    "goalies": "goalie",
    "potatoes": "potato",
    "tomatoes": "tomato",
    "heroes": "hero",
    "mangoes": "mango",
    "volcanoes": "volcano",
    "mosquitoes": "mosquito",
    "buffaloes": "buffalo",
    "tornadoes": "tornado",
    "torpedoes": "torpedo",
    "dominoes": "domino",
    "echoes": "echo",
    "flamingoes": "flamingo",
    "headaches": "headache",
    "mustaches": "mustache",
    "moustaches": "moustache",
    "avalanches": "avalanche",
    "niches": "niche",
    "indices": "index",
    "vertices": "vertex",
    "matrices": "matrix",
}

# Nouns whose plural equals the singular, and singular nouns that end in "s".
_INVARIANT_NOUNS: frozenset[str] = frozenset(
    [
        "sheep",
        "deer",
        "fish",
        "moose",
        "bison",
        "aircraft",
        "spacecraft",
        "salmon",
        "trout",
        "cod",
        "swine",
        "series",
        "species",
        "news",
        "scissors",
        "pants",
        "jeans",
        "shorts",
        "trousers",
        "binoculars",
        "pliers",
        "tongs",
        "tweezers",
        "headphones",
        "earphones",
        "clothes",
        "tennis",
        "iris",
        "axis",
        "chassis",
        "oasis",
        "ibis",
        "gas",
        "lens",
        "canvas",
        "atlas",
        "chaos",
        "hummus",
        "asparagus",
        "octopus",
        "cactus",
        "bus",
        "walrus",
        "platypus",
        "hippopotamus",
        "campus",
        "circus",
        "bonus",
        "status",
        "virus",
        "christmas",
        "physics",
        "mathematics",
        "sunglasses",
        "goggles",
    ]
)


def _singularize_word(word: str) -> str:
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if word in _INVARIANT_NOUNS or len(word) <= 2 or not word.endswith("s") or not word.isalpha():
        return word
    if word.endswith(("ss", "us", "is", "ous")):
        return word  # glass, cactus, tennis, famous: already singular
    if word.endswith("ies"):
        # puppies -> puppy, but ties / pies -> tie / pie
        return word[:-1] if len(word) <= 4 else word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]  # glasses, dishes, benches, boxes, buzzes
    # Everything else drops the "s": dogs, shoes / toes (the -o singulars such as potatoes are irregular),
    # gloves / stoves (the -f singulars such as knives are irregular), horses, vases, toys.
    return word[:-1]


def singularize(noun: str) -> str:
    """Return the singular form of an English noun (or compound noun), lower-cased.

    Only the last word of a compound is inflected ("traffic lights" -> "traffic light", "wine glasses" ->
    "wine glass"). Irregular plurals common in image prompts are handled (people, men, women, children,
    mice, geese, knives, leaves, wolves, skis, cacti, ...), nouns whose plural is the singular are kept
    (sheep, deer, fish, scissors), and singular nouns ending in "s" are left alone (glass, bus, cactus).

    Args:
        noun: a noun or compound noun, e.g. "dogs" or "Teddy Bears". Surrounding whitespace is ignored and
            inner whitespace runs become single spaces.

    Returns:
        The lower-cased singular form.

    Raises:
        TypeError: if `noun` is not a string.

    Examples:

    ```py
    >>> singularize("puppies"), singularize("Children"), singularize("teddy bears"), singularize("bus")
    ('puppy', 'child', 'teddy bear', 'bus')

    ```
    """
    if not isinstance(noun, str):
        raise TypeError(f"singularize expects a str noun, got {type(noun).__name__}: {noun!r}")
    words = noun.lower().split()
    if not words:
        return ""
    words[-1] = _singularize_word(words[-1])
    return " ".join(words)
