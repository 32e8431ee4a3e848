"""Tests for the relation grammar (diffusers_spatial.relations) and the noun vocabulary it uses."""

import doctest
import json
import pickle
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffusers_spatial import relations, vocabulary
from diffusers_spatial.relations import (
    CANONICAL_PHRASE,
    CONVERSE,
    RELATIONS,
    RELATIONS_2D,
    RELATIONS_3D,
    SURFACE_PHRASES,
    MultipleRelationsError,
    SpatialPrompt,
    UnparseablePromptError,
    canonical_phrase,
    converse,
    find_relation_phrases,
    head_noun,
    normalize_relation,
    parse_spatial_prompt,
    require_spatial_prompt,
)
from diffusers_spatial.vocabulary import COCO_CLASSES, MULTIWORD_NOUNS, singularize

# ----------------------------------------------------------------------------------------------------------------
# Vocabulary of relations
# ----------------------------------------------------------------------------------------------------------------


def test_relation_ids_and_converse_map():
    assert RELATIONS == ("left_of", "right_of", "above", "below", "in_front_of", "behind", "next_to")
    assert set(RELATIONS_2D) | set(RELATIONS_3D) | {"next_to"} == set(RELATIONS)
    assert set(CONVERSE) == set(RELATIONS) == set(CANONICAL_PHRASE)
    assert CONVERSE["left_of"] == "right_of" and CONVERSE["above"] == "below" and CONVERSE["behind"] == "in_front_of"
    assert CONVERSE["next_to"] == "next_to"
    for relation in RELATIONS:
        assert CONVERSE[CONVERSE[relation]] == relation  # an involution
        assert SURFACE_PHRASES[CANONICAL_PHRASE[relation]] == relation
        assert converse(relation) == CONVERSE[relation] and canonical_phrase(relation) == CANONICAL_PHRASE[relation]


def test_canonical_phrases():
    assert dict(CANONICAL_PHRASE) == {
        "left_of": "to the left of",
        "right_of": "to the right of",
        "above": "above",
        "below": "below",
        "in_front_of": "in front of",
        "behind": "behind",
        "next_to": "next to",
    }


@pytest.mark.parametrize(
    "phrase, relation",
    [
        ("to the left of", "left_of"),
        ("on the left of", "left_of"),
        ("on the left side of", "left_of"),
        ("left of", "left_of"),
        ("at the left of", "left_of"),
        ("to the right of", "right_of"),
        ("on the right of", "right_of"),
        ("on the right side of", "right_of"),
        ("right of", "right_of"),
        ("above", "above"),
        ("over", "above"),
        ("on top of", "above"),
        ("on the top of", "above"),
        ("atop", "above"),
        ("below", "below"),
        ("under", "below"),
        ("underneath", "below"),
        ("beneath", "below"),
        ("on the bottom of", "below"),
        ("in front of", "in_front_of"),
        ("behind", "behind"),
        ("hidden by", "behind"),
        ("next to", "next_to"),
        ("near", "next_to"),
        ("beside", "next_to"),
        ("on side of", "next_to"),
    ],
)
def test_surface_phrases(phrase, relation):
    assert SURFACE_PHRASES[phrase] == relation
    assert normalize_relation(phrase.upper()) == relation
    p = parse_spatial_prompt(f"a cat {phrase} a dog")
    assert (p.relation, p.phrase, p.subject, p.object) == (relation, phrase, "a cat", "a dog")


def test_surface_phrases_are_immutable_and_normalised():
    with pytest.raises(TypeError):
        SURFACE_PHRASES["sideways"] = "left_of"
    for phrase in SURFACE_PHRASES:
        assert phrase == " ".join(phrase.lower().split())


def test_no_phrase_is_a_word_prefix_of_another_relations_phrase():
    # The matcher relies on this: at one position at most one relation can match, and the longest phrase wins.
    for a, rel_a in SURFACE_PHRASES.items():
        for b, rel_b in SURFACE_PHRASES.items():
            if rel_a != rel_b:
                assert not (b + " ").startswith(a + " "), (a, b)


def test_normalize_relation():
    assert normalize_relation("left_of") == "left_of"
    assert normalize_relation("LEFT-OF") == "left_of"
    assert normalize_relation(" In  Front Of ") == "in_front_of"
    assert normalize_relation("hidden by") == "behind"
    with pytest.raises(ValueError, match="'sideways'"):
        normalize_relation("sideways")
    with pytest.raises(TypeError, match="int"):
        normalize_relation(3)
    with pytest.raises(ValueError, match="'up'"):
        converse("up")
    with pytest.raises(ValueError, match="'up'"):
        canonical_phrase("up")


# ----------------------------------------------------------------------------------------------------------------
# Phrase finding
# ----------------------------------------------------------------------------------------------------------------


def test_find_relation_phrases_longest_match_and_spans():
    text = "a cat on the left of a dog"
    assert find_relation_phrases(text) == [(6, 20, "left_of", "on the left of")]
    assert find_relation_phrases("a lamp on the left side of a bed")[0].phrase == "on the left side of"
    assert find_relation_phrases("a cup underneath a table")[0].phrase == "underneath"
    assert find_relation_phrases("a bird hidden behind a tree") == [(7, 20, "behind", "hidden behind")]


@pytest.mark.parametrize(
    "text",
    [
        "a drone hovering in overcast weather",  # "over" inside words
        "a thunderstorm over-the-top",  # hyphenated compound
        "a left-handed man, a nearby dog",  # "left" without "of", "near" inside "nearby"
        "a cat sleeping on a sofa",
        "",
        "   ",
    ],
)
def test_find_relation_phrases_word_boundaries(text):
    assert find_relation_phrases(text) == []
    assert parse_spatial_prompt(text) is None


def test_find_relation_phrases_case_and_spacing():
    (match,) = find_relation_phrases("A Cat  ON\tthe   LEFT of a dog")
    assert match.relation == "left_of" and match.phrase == "ON\tthe   LEFT of"


def test_find_relation_phrases_rejects_non_str():
    with pytest.raises(TypeError, match="bytes"):
        find_relation_phrases(b"a cat left of a dog")


# ----------------------------------------------------------------------------------------------------------------
# Parsing: golden cases from each benchmark's prompt style
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        # VISOR / SR2D
        ("a dog to the left of a bench", ("", "a dog", "left_of", "a bench", "", "to the left of", "dog", "bench")),
        ("an airplane below a cell phone", ("", "an airplane", "below", "a cell phone", "", "below", "airplane", "cell phone")),
        # T2I-CompBench 2D
        ("a balloon on the top of a giraffe", ("", "a balloon", "above", "a giraffe", "", "on the top of", "balloon", "giraffe")),
        ("a bird on side of a train", ("", "a bird", "next_to", "a train", "", "on side of", "bird", "train")),
        # GenEval position
        ("a photo of a bench left of a bear", ("a photo of ", "a bench", "left_of", "a bear", "", "left of", "bench", "bear")),
        ("a photo of a traffic light right of a fire hydrant", ("a photo of ", "a traffic light", "right_of", "a fire hydrant", "", "right of", "traffic light", "fire hydrant")),
        # T2I-CompBench 3D
        ("a car in front of a house", ("", "a car", "in_front_of", "a house", "", "in front of", "car", "house")),
        ("a bird hidden by a tree", ("", "a bird", "behind", "a tree", "", "hidden by", "bird", "tree")),
        # prefixes and suffixes
        ("a photo of a red cat to the left of a dog, in the snow", ("a photo of ", "a red cat", "left_of", "a dog", ", in the snow", "to the left of", "cat", "dog")),
        ("A realistic photo of two dogs above a bench at night.", ("A realistic photo of ", "two dogs", "above", "a bench", " at night.", "above", "dog", "bench")),
        ("an image of a teddy bear beside a vase on a sunny day", ("an image of ", "a teddy bear", "next_to", "a vase", " on a sunny day", "beside", "teddy bear", "vase")),
        ("Generate a picture of people behind a dining table", ("Generate a picture of ", "people", "behind", "a dining table", "", "behind", "person", "dining table")),
        ("In the snow, a cat left of a dog", ("In the snow, ", "a cat", "left_of", "a dog", "", "left of", "cat", "dog")),
        ("there are three sheep under a tree", ("there are ", "three sheep", "below", "a tree", "", "under", "sheep", "tree")),
        ("a painting of a cup of coffee next to a laptop", ("a painting of ", "a cup of coffee", "next_to", "a laptop", "", "next to", "cup", "laptop")),
        ("a group of people near a bunch of bananas", ("", "a group of people", "next_to", "a bunch of bananas", "", "near", "person", "banana")),
        ("a dog wearing a hat above two knives", ("", "a dog wearing a hat", "above", "two knives", "", "above", "dog", "knife")),
        ("a cat sitting to the left of a dog and a tree in the background", ("", "a cat sitting", "left_of", "a dog", " and a tree in the background", "to the left of", "cat", "dog")),
        ("a black and white cat beneath a chair", ("", "a black and white cat", "below", "a chair", "", "beneath", "cat", "chair")),
    ],
)  # fmt: skip
def test_parse_golden(text, expected):
    p = parse_spatial_prompt(text)
    assert p is not None
    got = (p.prefix, p.subject, p.relation, p.object, p.suffix, p.phrase, p.subject_noun, p.object_noun)
    assert got == expected
    assert p.render() == text and str(p) == text


def test_parse_copula_and_adverb_between_subject_and_phrase():
    p = parse_spatial_prompt("The cat is directly above the table.")
    assert (p.subject, p.before_phrase, p.phrase, p.object, p.suffix) == (
        "The cat",
        " is directly ",
        "above",
        "the table",
        ".",
    )
    assert p.render() == "The cat is directly above the table."
    assert p.swapped() == "the table below The cat."  # the copula is not carried over


def test_parse_odd_spacing_and_case_round_trips():
    text = "  A  Photo Of a Cat   ON the  left   OF a Dog  "
    p = parse_spatial_prompt(text)
    assert (p.prefix, p.subject, p.phrase, p.object, p.suffix) == (
        "  A  Photo Of ",
        "a Cat",
        "ON the  left   OF",
        "a Dog",
        "  ",
    )
    assert p.relation == "left_of" and (p.subject_noun, p.object_noun) == ("cat", "dog")
    assert p.render() == text


def test_parse_comma_before_phrase_and_newlines():
    p = parse_spatial_prompt("a cat, to the left of a dog")
    assert (p.subject, p.before_phrase, p.object) == ("a cat", ", ", "a dog")
    p = parse_spatial_prompt("a cat\nbehind\na dog")
    assert (p.subject, p.relation, p.object) == ("a cat", "behind", "a dog") and p.render() == "a cat\nbehind\na dog"


def test_swapped_golden():
    p = parse_spatial_prompt("a photo of a red cat to the left of a dog, in the snow")
    assert p.swapped() == "a photo of a dog to the right of a red cat, in the snow"
    assert p.converse_relation == "right_of"
    assert parse_spatial_prompt("a balloon on the top of a giraffe").swapped() == "a giraffe below a balloon"
    assert parse_spatial_prompt("a bird hidden by a tree").swapped() == "a tree in front of a bird"
    assert parse_spatial_prompt("a cat near a dog").swapped() == "a dog next to a cat"


# ----------------------------------------------------------------------------------------------------------------
# Parsing: what is not a spatial prompt
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, reason",
    [
        ("a cat on a sofa", "no relation phrase"),
        ("left of a dog", "no subject"),
        ("a photo of left of a dog", "no subject"),
        ("a cat to the left of", "no object"),
        ("a cat to the left of, in the snow", "no object"),
        ("the to the left of the", "no subject"),
        ("two above three", "no subject"),
    ],
)
def test_not_a_spatial_prompt(text, reason):
    assert parse_spatial_prompt(text) is None
    with pytest.raises(UnparseablePromptError, match=reason) as info:
        require_spatial_prompt(text)
    assert repr(text) in str(info.value) and info.value.text == text
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text, phrases",
    [
        ("a cat to the left of a dog above a tree", ["to the left of", "above"]),
        ("a cat left of a dog left of a bird", ["left of", "left of"]),
        ("a plane over a city under a cloud", ["over", "under"]),
        ("left of above", ["left of", "above"]),
    ],
)
def test_two_relations_raise(text, phrases):
    with pytest.raises(MultipleRelationsError) as info:
        parse_spatial_prompt(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert [m.phrase for m in err.matches] == phrases and err.text == text
    assert repr(text) in str(err) and all(repr(p) in str(err) for p in phrases)
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == str(err)
    with pytest.raises(MultipleRelationsError):
        require_spatial_prompt(text)


def test_overlapping_phrases_are_one_relation():
    assert parse_spatial_prompt("a cat on the left of a dog").phrase == "on the left of"
    assert parse_spatial_prompt("a cat on the left side of a dog").phrase == "on the left side of"
    assert parse_spatial_prompt("a cat hidden behind a dog").phrase == "hidden behind"


@pytest.mark.parametrize("value", [None, 3, b"a cat left of a dog", ["a cat left of a dog"]])
def test_parse_rejects_non_str(value):
    with pytest.raises(TypeError, match=type(value).__name__):
        parse_spatial_prompt(value)


# ----------------------------------------------------------------------------------------------------------------
# SpatialPrompt
# ----------------------------------------------------------------------------------------------------------------


def test_spatial_prompt_to_dict_from_dict_and_json():
    p = parse_spatial_prompt("a photo of two dogs left of a bench.")
    d = p.to_dict()
    assert d == {
        "text": "a photo of two dogs left of a bench.",
        "prefix": "a photo of ",
        "subject": "two dogs",
        "relation": "left_of",
        "object": "a bench",
        "suffix": ".",
        "phrase": "left of",
        "before_phrase": " ",
        "after_phrase": " ",
        "subject_noun": "dog",
        "object_noun": "bench",
    }
    assert json.loads(json.dumps(d)) == d
    assert SpatialPrompt.from_dict(d) == p
    assert pickle.loads(pickle.dumps(p)) == p
    with pytest.raises(ValueError, match="missing keys"):
        SpatialPrompt.from_dict({"subject": "a cat"})


def test_spatial_prompt_from_parts_and_validation():
    p = SpatialPrompt.from_parts("a cat", "left of", "a dog", prefix="a photo of ", suffix=".")
    assert p.render() == "a photo of a cat to the left of a dog." and p.relation == "left_of"
    assert parse_spatial_prompt(p.render()) == p
    with pytest.raises(ValueError, match="'sideways'"):
        SpatialPrompt.from_parts("a cat", "sideways", "a dog")
    with pytest.raises(ValueError, match="'above'"):
        SpatialPrompt("", "a cat", "left_of", "a dog", "", "above")  # phrase and relation disagree
    with pytest.raises(ValueError, match="'the'"):
        SpatialPrompt("", "the", "left_of", "a dog", "", "left of")
    with pytest.raises(TypeError, match="subject"):
        SpatialPrompt("", None, "left_of", "a dog", "", "left of")
    with pytest.raises(ValueError, match="'up'"):
        SpatialPrompt("", "a cat", "up", "a dog", "", "left of")


def test_spatial_prompt_is_frozen_and_hashable():
    p = parse_spatial_prompt("a cat above a dog")
    with pytest.raises(AttributeError):
        p.subject = "a bird"
    assert len({p, parse_spatial_prompt("a cat above a dog")}) == 1


# ----------------------------------------------------------------------------------------------------------------
# Head nouns and singularisation
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phrase, noun",
    [
        ("a red cat", "cat"),
        ("two dogs", "dog"),
        ("people", "person"),
        ("three women", "woman"),
        ("a cup of coffee", "cup"),
        ("a pair of scissors", "scissors"),
        ("two traffic lights", "traffic light"),
        ("some wine glasses", "wine glass"),
        ("a hot dog", "hot dog"),
        ("a dog with a hat", "dog"),
        ("a cat and a dog", "cat"),
        ("a caf\u00e9", "caf\u00e9"),
        ("the", None),
        ("two", None),
        ("", None),
    ],
)
def test_head_noun(phrase, noun):
    assert head_noun(phrase) == noun


@pytest.mark.parametrize(
    "plural, singular",
    [
        ("dogs", "dog"),
        ("people", "person"),
        ("men", "man"),
        ("women", "woman"),
        ("children", "child"),
        ("mice", "mouse"),
        ("knives", "knife"),
        ("geese", "goose"),
        ("sheep", "sheep"),
        ("skis", "ski"),
        ("benches", "bench"),
        ("boxes", "box"),
        ("puppies", "puppy"),
        ("ties", "tie"),
        ("cookies", "cookie"),
        ("horses", "horse"),
        ("glasses", "glass"),
        ("buses", "bus"),
        ("bus", "bus"),
        ("glass", "glass"),
        ("cactus", "cactus"),
        ("potatoes", "potato"),
        ("shoes", "shoe"),
        ("gloves", "glove"),
        ("wolves", "wolf"),
        ("scissors", "scissors"),
        ("Teddy Bears", "teddy bear"),
        ("traffic lights", "traffic light"),
        ("cat", "cat"),
    ],
)
def test_singularize(plural, singular):
    assert singularize(plural) == singular


def test_singularize_rejects_non_str():
    with pytest.raises(TypeError, match="int"):
        singularize(3)


def test_coco_vocabulary():
    assert len(COCO_CLASSES) == 80 == len(set(COCO_CLASSES))
    assert COCO_CLASSES[0] == "person" and COCO_CLASSES[9] == "traffic light" and COCO_CLASSES[-1] == "toothbrush"
    multi = {c for c in COCO_CLASSES if " " in c}
    assert multi <= MULTIWORD_NOUNS and len(multi) == 15
    # every COCO class is its own head noun, so a COCO prompt's nouns are class names (skis -> ski aside)
    for name in COCO_CLASSES:
        assert head_noun(f"a {name}") == singularize(name)


# ----------------------------------------------------------------------------------------------------------------
# Property tests
# ----------------------------------------------------------------------------------------------------------------

_NOUNS = [
    ("cat", "cats"),
    ("dog", "dogs"),
    ("bench", "benches"),
    ("person", "people"),
    ("knife", "knives"),
    ("traffic light", "traffic lights"),
    ("teddy bear", "teddy bears"),
    ("sheep", "sheep"),
    ("cup", "cups"),
    ("hair drier", "hair driers"),
    ("giraffe", "giraffes"),
    ("toothbrush", "toothbrushes"),
]
_PREFIXES = ["", "a photo of ", "A realistic photo of ", "an image of ", "Generate a picture of ", "In the snow, "]
_SUFFIXES = ["", ".", ", in the snow", " at night", " on a sunny day.", "  "]
_PHRASES = sorted(SURFACE_PHRASES)


@st.composite
def noun_phrases(draw):
    singular, plural = draw(st.sampled_from(_NOUNS))
    det, use_plural = draw(st.sampled_from([("a ", False), ("the ", False), ("two ", True), ("", True), ("", False)]))
    adjective = draw(st.sampled_from(["", "red ", "small ", "wooden "]))
    noun = plural if use_plural else singular
    if det == "a " and (adjective or noun)[0] in "aeiou":
        det = "an "
    text = det + adjective + noun
    if draw(st.booleans()):
        text = text.upper() if draw(st.booleans()) else text.title()
    return text, singular


@st.composite
def spaced_phrases(draw):
    phrase = draw(st.sampled_from(_PHRASES))
    words = [draw(st.sampled_from([w, w.upper(), w.title()])) for w in phrase.split()]
    return "".join(w + draw(st.sampled_from([" ", "  ", "\t"])) for w in words[:-1]) + words[-1], phrase


@st.composite
def spatial_texts(draw):
    (subject, subject_noun), (obj, object_noun) = draw(noun_phrases()), draw(noun_phrases())
    phrase, normal = draw(spaced_phrases())
    prefix, suffix = draw(st.sampled_from(_PREFIXES)), draw(st.sampled_from(_SUFFIXES))
    gap = draw(st.sampled_from([" ", "  "]))
    text = prefix + subject + gap + phrase + gap + obj + suffix
    return text, (prefix, subject, SURFACE_PHRASES[normal], obj, suffix, phrase, subject_noun, object_noun)


@settings(max_examples=300, deadline=None)
@given(spatial_texts())
def test_property_parse_reads_generated_prompts(case):
    text, expected = case
    p = parse_spatial_prompt(text)
    assert (p.prefix, p.subject, p.relation, p.object, p.suffix, p.phrase, p.subject_noun, p.object_noun) == expected
    assert p.render() == text


@settings(max_examples=300, deadline=None)
@given(spatial_texts())
def test_property_swapped_twice_restores_relation_and_nouns(case):
    text, _ = case
    p = parse_spatial_prompt(text)
    q = parse_spatial_prompt(p.swapped())
    assert (q.relation, q.subject_noun, q.object_noun) == (p.converse_relation, p.object_noun, p.subject_noun)
    assert (q.prefix, q.subject, q.object, q.suffix) == (p.prefix, p.object, p.subject, p.suffix)
    r = parse_spatial_prompt(q.swapped())
    assert (r.relation, r.subject_noun, r.object_noun) == (p.relation, p.subject_noun, p.object_noun)
    assert parse_spatial_prompt(r.swapped()).swapped() == r.render()  # on canonical text, two swaps are identity


@given(st.sampled_from(RELATIONS))
def test_property_converse_is_an_involution(relation):
    assert converse(converse(relation)) == relation
    assert (relation in RELATIONS_2D) == (converse(relation) in RELATIONS_2D)


_FUZZ_ALPHABET = st.sampled_from(
    list("abcdefghilnoprstuvwy ,.'-\t\n\u00a0\u017f\u212a") + _PHRASES[:12] + [" of ", " the "]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.lists(_FUZZ_ALPHABET, max_size=30).map("".join)))
def test_property_any_text_parses_exactly_or_is_reported(text):
    try:
        p = parse_spatial_prompt(text)
    except MultipleRelationsError as err:
        assert len(err.matches) >= 2
        return
    if p is None:
        with pytest.raises(UnparseablePromptError):
            require_spatial_prompt(text)
        return
    assert p.render() == text
    assert p.relation in RELATIONS and p.subject_noun and p.object_noun
    assert [m.relation for m in find_relation_phrases(text)] == [p.relation]
    assert SpatialPrompt.from_dict(p.to_dict()) == p


@pytest.mark.parametrize(
    "template",
    [
        "a {} to the left of a {}",  # VISOR / SR2D
        "a {} to the right of a {}",
        "a {} above a {}",
        "a {} below a {}",
        "a photo of a {} left of a {}",  # GenEval
        "a photo of a {} right of a {}",
        "a {} on the bottom of a {}",  # T2I-CompBench
        "a {} in front of a {}",
    ],
)
def test_every_coco_class_parses_in_benchmark_templates(template):
    for name in COCO_CLASSES:
        for subject, obj in ((name, "giraffe"), ("giraffe", name)):
            text = template.format(subject, obj)
            p = parse_spatial_prompt(text)
            assert p.render() == text
            assert (p.subject_noun, p.object_noun) == (singularize(subject), singularize(obj)), text


# ----------------------------------------------------------------------------------------------------------------
# Documentation examples
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [relations, vocabulary], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_docs_page_examples_run():
    page = Path(__file__).resolve().parents[1] / "docs" / "relations.md"
    blocks = re.findall(r"```py\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page}:block{i}", "exec"), {})


def test_public_api():
    for module in (relations, vocabulary):
        assert sorted(module.__all__) == sorted(set(module.__all__))
        for name in module.__all__:
            assert hasattr(module, name), name


def test_errors_about_huge_prompts_stay_short():
    from diffusers_spatial.relations import require_spatial_prompt

    for text in ("a cat left of a dog and " * 50_000, "x" * 1_000_000):  # 1.2 MB and 1 MB
        with pytest.raises(ValueError) as error:
            require_spatial_prompt(text)
        message = str(error.value)
        assert len(message) < 600 and f"({len(text)} characters)" in message
