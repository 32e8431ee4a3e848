"""Match the nouns of a prompt to the classes a closed-set detector can see.

A closed-set detector (the embedded COCO detector, DETR, Mask2Former) only knows its own class names. A prompt
says "a puppy to the left of a sofa"; the detector says "dog" and "couch". `match_noun` bridges the two with
plurals, synonyms and hypernyms for the COCO-80 classes (`NOUN_SYNONYMS`), and - just as important - says so
when there is no match: a noun the detector cannot see yields a `NounMatch` with `label=None` and a `reason`,
so the verdict on that image is *undetermined* with that reason instead of silently "object not found".

Open-vocabulary detectors (OWL-ViT, OWLv2, Grounding DINO; `labels=None`) see every noun: the noun itself is
the text query and the label of what they return.

Matching, in order (case and spacing ignored, plurals singularised with `diffusers_spatial.vocabulary`):

1. the noun is one of the labels ("dog", "Dogs" -> "dog"; "ski" -> "skis");
2. the noun names a COCO class, directly or through `NOUN_SYNONYMS` ("puppy" -> "dog"), and that class, or
   another name of the same class, is one of the labels (so "cup" also finds a detector's "Mug");
3. otherwise leading modifiers are dropped one word at a time ("red sports car" -> "sports car" -> "car"),
   stopping at the first known noun: "hot dog" is a known class, so it never falls back to "dog".

Examples:

```py
>>> from diffusers_spatial.perception.labels import match_noun, match_nouns
>>> from diffusers_spatial.vocabulary import COCO_CLASSES
>>> [match_noun(n, COCO_CLASSES) for n in ["puppies", "sofa", "lady", "wooden table", "castle"]]
['dog', 'couch', 'person', 'dining table', None]
>>> match_nouns(["kitten", "castle"], COCO_CLASSES, detector="embedded")["castle"].reason
"the detector 'embedded' cannot see 'castle': none of its 80 classes matches it"

```
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..vocabulary import COCO_CLASSES, MULTIWORD_NOUNS, singularize

__all__ = ["NOUN_SYNONYMS", "NounMatch", "class_names_for", "match_noun", "match_nouns"]

# Each COCO-80 class and the other nouns (singular, lower case) that prompts use for it: synonyms, common
# hyponyms (breeds, kinds) and the words T2I-CompBench maps to "person", comma-separated. A noun appears under
# one class only.
_CLASS_SYNONYMS: dict[str, str] = {
    "person": (
        "people, human, man, woman, lady, gentleman, guy, girl, boy, child, kid, baby, toddler, "
        "teenager, teen, adult, pedestrian, player, athlete, skier, surfer, skateboarder, snowboarder, "
        "astronaut, chef, cook, doctor, nurse, soldier, student, worker, farmer, cowboy, "
        "police officer, policeman, firefighter, businessman, businesswoman, tourist, dancer, musician"
    ),
    "bicycle": "bike, push bike, mountain bike, road bike, racing bike",
    "car": "automobile, sedan, suv, taxi, cab, jeep, hatchback, convertible, limousine",
    "motorcycle": "motorbike, moped, dirt bike, motor bike",
    "airplane": "plane, aeroplane, airliner, jet, jetliner, aircraft",
    "bus": "school bus, double decker bus, minibus",
    "train": "locomotive, tram, streetcar",
    "truck": "lorry, pickup, pickup truck, fire truck, firetruck",
    "boat": "ship, sailboat, yacht, canoe, kayak, ferry, rowboat, speedboat",
    "traffic light": "stoplight, stop light, traffic signal",
    "fire hydrant": "hydrant",
    "bird": (
        "parrot, pigeon, duck, goose, seagull, gull, sparrow, crow, eagle, owl, swan, chicken, hen, "
        "rooster, robin, penguin, flamingo, hummingbird"
    ),
    "cat": "kitten, kitty, tomcat, housecat",
    "dog": (
        "puppy, pup, doggy, doggie, doggo, hound, poodle, terrier, retriever, labrador, bulldog, "
        "beagle, dachshund, corgi, husky, german shepherd, chihuahua, pug, dalmatian"
    ),
    "horse": "pony, stallion, mare, foal",
    "sheep": "lamb, ewe",
    "cow": "cattle, bull, calf, ox",
    "bear": "polar bear, grizzly, grizzly bear, brown bear",
    "backpack": "rucksack, knapsack",
    "umbrella": "parasol",
    "handbag": "purse, hand bag, bag",
    "tie": "necktie",
    "suitcase": "luggage",
    "frisbee": "flying disc",
    "skis": "ski",
    "sports ball": "ball, football, soccer ball, basketball, baseball, tennis ball, volleyball, beach ball",
    "baseball glove": "mitt, baseball mitt",
    "tennis racket": "racket, racquet, tennis racquet",
    "wine glass": "wineglass",
    "cup": "mug, teacup, coffee cup, coffee mug",
    "sandwich": "hamburger, burger, cheeseburger",
    "hot dog": "hotdog",
    "donut": "doughnut",
    "cake": "cupcake, birthday cake",
    "chair": "armchair, office chair",
    "couch": "sofa, settee, loveseat",
    "potted plant": "plant, houseplant, house plant, pot plant",
    "dining table": "table, kitchen table, coffee table, dinner table",
    "tv": "television, tv set, television set, tv monitor, monitor, computer monitor",
    "laptop": "laptop computer, notebook computer",
    "mouse": "computer mouse",
    "remote": "remote control, tv remote",
    "keyboard": "computer keyboard",
    "cell phone": "phone, cellphone, smartphone, mobile phone, mobile, iphone",
    "microwave": "microwave oven",
    "oven": "stove",
    "refrigerator": "fridge",
    "scissors": "scissor",
    "teddy bear": "teddy",
    "hair drier": "hair dryer, hairdryer, blow dryer",
    "toothbrush": "tooth brush",
}

_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    coco_class: tuple(noun.strip() for noun in nouns.split(",")) for coco_class, nouns in _CLASS_SYNONYMS.items()
}

NOUN_SYNONYMS: dict[str, str] = {noun: coco_class for coco_class, nouns in _CLASS_NAMES.items() for noun in nouns}
"""Noun (singular, lower case) -> the COCO-80 class it denotes: "puppy" -> "dog", "sofa" -> "couch"."""

# Nouns that name something on their own: matching never strips them down to a shorter noun.
_KNOWN_NOUNS: frozenset[str] = frozenset(COCO_CLASSES) | frozenset(NOUN_SYNONYMS) | MULTIWORD_NOUNS


@dataclass(frozen=True)
class NounMatch:
    """How one prompt noun maps to a detector's classes.

    Args:
        noun: the prompt noun, as given.
        label: the detector label that stands for it, or None when the detector cannot see it.
        reason: why there is no label (None when there is one).
    """

    noun: str
    label: str | None
    reason: str | None = None

    @property
    def visible(self) -> bool:
        """Whether the detector can see this noun at all (if not, the verdict is undetermined, not "absent")."""
        return self.label is not None

    def to_dict(self) -> dict[str, str | None]:
        return {"noun": self.noun, "label": self.label, "reason": self.reason}


def _normalize(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def class_names_for(noun: str) -> tuple[str, ...]:
    """Every name of the COCO class a noun denotes (the class name first), or `(noun,)` when it names none.

    Examples:

    ```py
    >>> class_names_for("kittens")[:3]
    ('cat', 'kitten', 'kitty')

    ```
    """
    key = singularize(_normalize(noun))
    coco_class = key if key in COCO_CLASSES else NOUN_SYNONYMS.get(key)
    if coco_class is None:
        return (key,)
    return (coco_class, *_CLASS_NAMES.get(coco_class, ()))


@lru_cache(maxsize=16)
def _label_index(labels: tuple[str, ...]) -> dict[str, str]:
    """Normalised (and singularised) label -> the label as the detector spells it; first spelling wins.

    Cached per label set: a detector's labels are matched for every image's nouns. Callers must not mutate it.
    """
    index: dict[str, str] = {}
    for label in labels:
        key = _normalize(label)
        index.setdefault(key, label)
        index.setdefault(singularize(key), label)
    return index


def _lookup(key: str, index: dict[str, str]) -> str | None:
    if key in index:
        return index[key]
    for name in class_names_for(key):
        if name in index:
            return index[name]
    return None


def match_noun(noun: str, labels: Sequence[str] | None) -> str | None:
    """The detector label that stands for a prompt noun, or None if the detector cannot see it.

    Args:
        noun: a prompt noun ("puppy", "Teddy Bears", "red sports car").
        labels: the detector's class names, or None for an open-vocabulary detector (which sees every noun:
            the noun itself is returned).

    Returns:
        One of `labels` (spelt as the detector spells it), the noun itself when `labels` is None, or None.

    Raises:
        ValueError: if `noun` is empty.

    Examples:

    ```py
    >>> from diffusers_spatial.vocabulary import COCO_CLASSES
    >>> match_noun("motorbikes", COCO_CLASSES), match_noun("television", COCO_CLASSES)
    ('motorcycle', 'tv')
    >>> match_noun("hot dog", ["dog"]) is None  # a hot dog is not a dog
    True
    >>> match_noun("castle", None)  # open vocabulary
    'castle'

    ```
    """
    if not isinstance(noun, str) or not noun.strip():
        raise ValueError(f"noun must be a non-empty string, got {noun!r}")
    if labels is None:
        return noun
    index = _label_index(tuple(labels))
    words = singularize(_normalize(noun)).split()
    for start in range(len(words)):
        key = " ".join(words[start:])
        label = _lookup(key, index)
        if label is not None or key in _KNOWN_NOUNS:
            return label
    return None


def match_nouns(
    nouns: Iterable[str], labels: Sequence[str] | None, *, detector: str | None = None
) -> dict[str, NounMatch]:
    """`match_noun` for several nouns, with a reason for each noun the detector cannot see.

    Args:
        nouns: prompt nouns (duplicates are matched once).
        labels: the detector's class names, or None for open vocabulary.
        detector: the detector's name, used in the reasons.

    Returns:
        noun -> `NounMatch`, in the order the nouns were given.

    Examples:

    ```py
    >>> m = match_nouns(["girl", "bike"], ["person", "bicycle", "car"])
    >>> {noun: match.label for noun, match in m.items()}
    {'girl': 'person', 'bike': 'bicycle'}

    ```
    """
    matches: dict[str, NounMatch] = {}
    who = f"the detector {detector!r}" if detector else "the detector"
    for noun in nouns:
        if noun in matches:
            continue
        label = match_noun(noun, labels)
        reason = None
        if label is None:
            reason = f"{who} cannot see {noun!r}: none of its {len(labels)} classes matches it"
        matches[noun] = NounMatch(noun=noun, label=label, reason=reason)
    return matches
