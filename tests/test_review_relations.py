"""External review of `diffusers_spatial.relations`: the parser called as issue 2 names it, on unseen prompts."""

import json

import pytest

from diffusers_spatial.relations import (
    CANONICAL_PHRASE,
    CONVERSE,
    MultipleRelationsError,
    SpatialPrompt,
    converse,
    parse_spatial_prompt,
)

# text -> (prefix, subject, relation, object, suffix, subject_noun, object_noun, swapped)
CASES = {
    "a photo of two red cats to the right of a bench, at night": (
        "a photo of ",
        "two red cats",
        "right_of",
        "a bench",
        ", at night",
        "cat",
        "bench",
        "a photo of a bench to the left of two red cats, at night",
    ),
    "A Cat  On The Left Of  a dog.": (
        "",
        "A Cat",
        "left_of",
        "a dog",
        ".",
        "cat",
        "dog",
        "a dog to the right of A Cat.",
    ),
    "a dog is under a table": ("", "a dog", "below", "a table", "", "dog", "table", "a table above a dog"),
    "a horse behind a fence": (
        "",
        "a horse",
        "behind",
        "a fence",
        "",
        "horse",
        "fence",
        "a fence in front of a horse",
    ),
    "a car in front of a house": ("", "a car", "in_front_of", "a house", "", "car", "house", "a house behind a car"),
    "a lamp on top of a desk": ("", "a lamp", "above", "a desk", "", "lamp", "desk", "a desk below a lamp"),
    "a kite above people": ("", "a kite", "above", "people", "", "kite", "person", "people below a kite"),
    "a cat hidden by a dog": ("", "a cat", "behind", "a dog", "", "cat", "dog", "a dog in front of a cat"),
    "a cup of coffee to the left of a laptop": (
        "",
        "a cup of coffee",
        "left_of",
        "a laptop",
        "",
        "cup",
        "laptop",
        "a laptop to the right of a cup of coffee",
    ),
    "a man in front of a woman in the park": (
        "",
        "a man",
        "in_front_of",
        "a woman",
        " in the park",
        "man",
        "woman",
        "a woman behind a man in the park",
    ),
    "a teddy bear above a wine glass": (
        "",
        "a teddy bear",
        "above",
        "a wine glass",
        "",
        "teddy bear",
        "wine glass",
        "a wine glass below a teddy bear",
    ),
    "scissors to the left of glasses": (
        "",
        "scissors",
        "left_of",
        "glasses",
        "",
        "scissors",
        "glass",
        "glasses to the right of scissors",
    ),
    "a cat next to a dog": ("", "a cat", "next_to", "a dog", "", "cat", "dog", "a dog next to a cat"),
}


@pytest.mark.parametrize("text", list(CASES))
def test_parse_render_swap(text):
    prefix, subject, relation, obj, suffix, subject_noun, object_noun, swapped = CASES[text]
    p = parse_spatial_prompt(text)
    assert isinstance(p, SpatialPrompt)
    assert (p.prefix, p.subject, p.relation, p.object, p.suffix) == (prefix, subject, relation, obj, suffix)
    assert (p.subject_noun, p.object_noun) == (subject_noun, object_noun)
    assert p.render() == text
    assert p.swapped() == swapped
    # the issue's formula, literally
    assert swapped == prefix + obj + " " + CANONICAL_PHRASE[converse(relation)] + " " + subject + suffix


@pytest.mark.parametrize("text", list(CASES))
def test_swapping_twice_gives_the_written_parts_back(text):
    p = parse_spatial_prompt(text)
    q = parse_spatial_prompt(p.swapped())
    assert (q.prefix, q.subject, q.relation, q.object, q.suffix) == (
        p.prefix,
        p.object,
        CONVERSE[p.relation],
        p.subject,
        p.suffix,
    )
    r = parse_spatial_prompt(q.swapped())
    assert (r.subject, r.relation, r.object) == (p.subject, p.relation, p.object)


def test_canonical_phrases_and_converse_of_the_issue():
    expected = {
        "left_of": "to the left of",
        "right_of": "to the right of",
        "above": "above",
        "below": "below",
        "in_front_of": "in front of",
        "behind": "behind",
    }
    assert {r: CANONICAL_PHRASE[r] for r in expected} == expected
    assert CONVERSE["left_of"] == "right_of" and CONVERSE["above"] == "below" and CONVERSE["behind"] == "in_front_of"
    assert CONVERSE["next_to"] == "next_to"
    for relation, other in CONVERSE.items():
        assert CONVERSE[other] == relation


@pytest.mark.parametrize("text", ["", "   ", "a cat", "left of a dog", "a cat to the left of", "a left-handed man"])
def test_no_relation_or_no_noun_phrase_is_none(text):
    assert parse_spatial_prompt(text) is None


@pytest.mark.parametrize("text", ["a cat to the left of a dog above a tree", "a cat left of a dog left of a bird"])
def test_two_relations_raise(text):
    with pytest.raises(MultipleRelationsError, match="2 relation phrases") as info:
        parse_spatial_prompt(text)
    assert isinstance(info.value, ValueError)
    assert len(info.value.matches) == 2


@pytest.mark.parametrize("bad", [None, 3, b"a cat left of a dog"])
def test_non_string_is_a_type_error(bad):
    with pytest.raises(TypeError, match="must be a str"):
        parse_spatial_prompt(bad)


def test_to_dict_is_json():
    p = parse_spatial_prompt("a photo of a red cat to the left of a dog, in the snow")
    data = json.loads(json.dumps(p.to_dict()))
    assert SpatialPrompt.from_dict(data) == p
