"""`perception.labels`: prompt nouns -> a closed-set detector's classes, and honest "cannot see" reasons."""

from __future__ import annotations

import pytest

from diffusers_spatial.perception.labels import NOUN_SYNONYMS, NounMatch, class_names_for, match_noun, match_nouns
from diffusers_spatial.vocabulary import COCO_CLASSES


@pytest.mark.parametrize(
    ("noun", "label"),
    [
        ("puppy", "dog"),
        ("kitten", "cat"),
        ("sofa", "couch"),
        ("bike", "bicycle"),
        ("lady", "person"),
        ("man", "person"),
        ("woman", "person"),
        ("girl", "person"),
        ("boy", "person"),
        ("child", "person"),
        ("motorbike", "motorcycle"),
        ("tv", "tv"),
        ("television", "tv"),
        ("table", "dining table"),
        ("plant", "potted plant"),
        ("phone", "cell phone"),
        ("fridge", "refrigerator"),
        ("hair dryer", "hair drier"),
        # plurals and irregular plurals
        ("puppies", "dog"),
        ("Bikes", "bicycle"),
        ("women", "person"),
        ("children", "person"),
        ("people", "person"),
        ("ski", "skis"),
        ("skis", "skis"),
        ("knives", "knife"),
        ("mice", "mouse"),
        ("teddy bears", "teddy bear"),
        ("wine glasses", "wine glass"),
        # modifiers are dropped down to the first known noun
        ("red sports car", "car"),
        ("wooden table", "dining table"),
        ("polar bear", "bear"),
        ("big  fluffy   Dog", "dog"),
        ("german shepherd", "dog"),
    ],
)
def test_coco_synonyms_and_plurals(noun, label):
    assert match_noun(noun, COCO_CLASSES) == label


def test_every_coco_class_matches_itself():
    assert [match_noun(name, COCO_CLASSES) for name in COCO_CLASSES] == list(COCO_CLASSES)


def test_a_noun_never_falls_back_to_a_wrong_class():
    """Remove a noun's class from the labels: the noun becomes unseen, never another class ("hot dog" -> "dog")."""
    for noun, coco_class in NOUN_SYNONYMS.items():
        others = [name for name in COCO_CLASSES if name != coco_class]
        assert match_noun(noun, others) is None, noun
    for name in COCO_CLASSES:
        assert match_noun(name, [other for other in COCO_CLASSES if other != name]) is None, name
    assert match_noun("hot dog", ["dog"]) is None
    assert match_noun("teddy bear", ["bear"]) is None


def test_other_label_sets_use_every_name_of_the_class():
    open_images = ["Person", "Dog", "Mug", "Table", "Car"]
    assert match_noun("cup", open_images) == "Mug"
    assert match_noun("girl", open_images) == "Person"
    assert match_noun("dining table", open_images) == "Table"
    assert match_noun("puppies", open_images) == "Dog"
    assert match_noun("cat", open_images) is None


def test_open_vocabulary_sees_every_noun():
    assert match_noun("castle", None) == "castle"
    assert match_nouns(["castle", "dragon"], None) == {
        "castle": NounMatch("castle", "castle"),
        "dragon": NounMatch("dragon", "dragon"),
    }


def test_unseen_nouns_carry_a_reason():
    matches = match_nouns(["kitten", "castle", "kitten"], COCO_CLASSES, detector="embedded")
    assert list(matches) == ["kitten", "castle"]
    assert matches["kitten"].visible and matches["kitten"].reason is None
    castle = matches["castle"]
    assert not castle.visible and castle.label is None
    assert castle.reason == "the detector 'embedded' cannot see 'castle': none of its 80 classes matches it"
    assert castle.to_dict() == {"noun": "castle", "label": None, "reason": castle.reason}


def test_class_names_and_bad_nouns():
    assert class_names_for("sofas")[:2] == ("couch", "sofa")
    assert class_names_for("castle") == ("castle",)
    for bad in ("", "   ", None):
        with pytest.raises(ValueError, match="noun must be a non-empty string"):
            match_noun(bad, COCO_CLASSES)


def test_synonym_table_is_consistent():
    assert set(NOUN_SYNONYMS.values()) <= set(COCO_CLASSES)
    assert not set(NOUN_SYNONYMS) & set(COCO_CLASSES)
    assert all(noun == noun.lower().strip() and noun for noun in NOUN_SYNONYMS)
