"""The relation grammar: relation ids, their surface phrases, and the spatial-prompt parser.

A spatial prompt names a subject, one spatial relation and an object, optionally framed by a prefix ("a photo
of ") and followed by a suffix (", in the snow"). `parse_spatial_prompt` reads such a prompt into a
`SpatialPrompt` without losing a character (`render()` gives the text back exactly), so the rest of the library
can rewrite, swap or score prompts and still point at the user's own words.

Relation ids: `left_of, right_of, above, below, in_front_of, behind, next_to`. `next_to` is symmetric (its own
converse) and exists for T2I-CompBench compatibility ("next to", "near", "on side of").

Examples:

```py
>>> from diffusers_spatial.relations import parse_spatial_prompt
>>> p = parse_spatial_prompt("a photo of a red cat to the left of a dog, in the snow")
>>> p.prefix, p.subject, p.phrase, p.object, p.suffix
('a photo of ', 'a red cat', 'to the left of', 'a dog', ', in the snow')
>>> p.relation, p.subject_noun, p.object_noun
('left_of', 'cat', 'dog')
>>> p.swapped()
'a photo of a dog to the right of a red cat, in the snow'
>>> p.render() == "a photo of a red cat to the left of a dog, in the snow"
True
>>> parse_spatial_prompt("a cat sleeping on a sofa") is None
True

```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from types import MappingProxyType
from typing import Any, NamedTuple

from .vocabulary import MULTIWORD_NOUNS, singularize

__all__ = [
    "CANONICAL_PHRASE",
    "CONVERSE",
    "RELATIONS",
    "RELATIONS_2D",
    "RELATIONS_3D",
    "SURFACE_PHRASES",
    "SYMMETRIC_RELATIONS",
    "MultipleRelationsError",
    "RelationMatch",
    "SpatialPrompt",
    "UnparseablePromptError",
    "canonical_phrase",
    "converse",
    "find_relation_phrases",
    "head_noun",
    "normalize_phrase",
    "normalize_relation",
    "parse_spatial_prompt",
    "require_spatial_prompt",
]

# --------------------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------------------

RELATIONS: tuple[str, ...] = ("left_of", "right_of", "above", "below", "in_front_of", "behind", "next_to")
"""All relation ids, in a fixed order (2D, then 3D, then the symmetric `next_to`)."""

RELATIONS_2D: tuple[str, ...] = ("left_of", "right_of", "above", "below")
"""Relations judged from boxes in the image plane."""

RELATIONS_3D: tuple[str, ...] = ("in_front_of", "behind")
"""Relations judged from depth (or occlusion cues)."""

SYMMETRIC_RELATIONS: frozenset[str] = frozenset({"next_to"})
"""Relations that are their own converse."""

CONVERSE: Mapping[str, str] = MappingProxyType(
    {
        "left_of": "right_of",
        "right_of": "left_of",
        "above": "below",
        "below": "above",
        "in_front_of": "behind",
        "behind": "in_front_of",
        "next_to": "next_to",
    }
)
"""Relation id -> the relation that holds when subject and object are exchanged ("A left of B" = "B right of A")."""

CANONICAL_PHRASE: Mapping[str, str] = MappingProxyType(
    {
        "left_of": "to the left of",
        "right_of": "to the right of",
        "above": "above",
        "below": "below",
        "in_front_of": "in front of",
        "behind": "behind",
        "next_to": "next to",
    }
)
"""Relation id -> the phrase used when the library writes a prompt (e.g. `SpatialPrompt.swapped`)."""

_PHRASES_BY_RELATION: dict[str, tuple[str, ...]] = {
    "left_of": (
        "to the left of",
        "on the left of",  # T2I-CompBench
        "on the left side of",
        "to the left side of",
        "at the left of",
        "at the left side of",
        "to the far left of",
        "on the far left of",
        "to the immediate left of",
        "left of",  # GenEval
    ),
    "right_of": (
        "to the right of",
        "on the right of",
        "on the right side of",
        "to the right side of",
        "at the right of",
        "at the right side of",
        "to the far right of",
        "on the far right of",
        "to the immediate right of",
        "right of",
    ),
    "above": ("above", "over", "on top of", "on the top of", "atop"),
    "below": ("below", "under", "underneath", "beneath", "on the bottom of"),
    "in_front_of": ("in front of",),
    # T2I-CompBench 3D writes occlusion as "A hidden by B", i.e. A is behind B.
    "behind": ("behind", "hidden by", "hidden behind", "in back of"),
    "next_to": ("next to", "near", "beside", "on side of", "by the side of", "close to", "alongside"),
}

SURFACE_PHRASES: Mapping[str, str] = MappingProxyType(
    {phrase: relation for relation, phrases in _PHRASES_BY_RELATION.items() for phrase in phrases}
)
"""Every recognised surface phrase (lower case, single spaces) -> relation id."""


def normalize_phrase(phrase: str) -> str:
    """Lower-case `phrase` and collapse whitespace runs, giving the form used as a key of `SURFACE_PHRASES`."""
    return " ".join(phrase.lower().split())


def converse(relation: str) -> str:
    """Return the converse of a relation id (`converse("left_of") == "right_of"`); raises ValueError if unknown."""
    return CONVERSE[_check_relation(relation)]


def canonical_phrase(relation: str) -> str:
    """Return the phrase the library writes for a relation id; raises ValueError if the id is unknown."""
    return CANONICAL_PHRASE[_check_relation(relation)]


def normalize_relation(name: str) -> str:
    """Map a relation id or any surface phrase, in any case/spacing, to its relation id.

    Accepts "left_of", "LEFT_OF", "left-of", "left of", "to the left of", "hidden by", ... .

    Raises:
        TypeError: if `name` is not a string.
        ValueError: naming `name` and the known ids if it is neither an id nor a known phrase.

    Examples:

    ```py
    >>> normalize_relation("On the Left of"), normalize_relation("in-front-of"), normalize_relation("beneath")
    ('left_of', 'in_front_of', 'below')

    ```
    """
    if not isinstance(name, str):
        raise TypeError(f"relation must be a str, got {type(name).__name__}: {name!r}")
    key = normalize_phrase(name.replace("_", " ").replace("-", " "))
    if key.replace(" ", "_") in CONVERSE:
        return key.replace(" ", "_")
    relation = _phrase_relation(key)
    if relation is not None:
        return relation
    raise ValueError(f"unknown relation {name!r}: expected one of the ids {list(RELATIONS)} or a surface phrase")


def _check_relation(relation: Any) -> str:
    if relation not in CONVERSE:
        raise ValueError(f"unknown relation id {relation!r}: expected one of {list(RELATIONS)}")
    return relation


# --------------------------------------------------------------------------------------------------------------
# Phrase matching: one compiled regex, longest phrase first so "on the left of" beats "left of".
# --------------------------------------------------------------------------------------------------------------


def _phrase_pattern(phrase: str) -> str:
    return r"\s+".join(re.escape(word) for word in phrase.split())


# A phrase must stand alone: not inside a word ("hover", "overcast", "thunder") nor a hyphenated compound
# ("over-sized", "left-handed"). One named group per relation tells which relation matched, whatever the case
# folding (`re.IGNORECASE` also matches e.g. "ſ" for "s"); within a group the longest phrase is tried first, and
# no phrase of one relation is a word-prefix of another relation's, so the longest phrase always wins.
_PHRASE_RE = re.compile(
    r"(?<![\w-])(?:"
    + "|".join(
        f"(?P<{relation}>" + "|".join(_phrase_pattern(p) for p in sorted(phrases, key=len, reverse=True)) + ")"
        for relation, phrases in _PHRASES_BY_RELATION.items()
    )
    + r")(?![\w-])",
    re.IGNORECASE,
)


def _phrase_relation(phrase: str) -> str | None:
    """The relation id a whole phrase expresses ("On  the left of" -> "left_of"), or None."""
    match = _PHRASE_RE.fullmatch(phrase)
    return match.lastgroup if match else None


class RelationMatch(NamedTuple):
    """One relation phrase found in a text: `text[start:end] == phrase` (verbatim, original case/spacing)."""

    start: int
    end: int
    relation: str
    phrase: str


def find_relation_phrases(text: str) -> list[RelationMatch]:
    """Find every relation phrase in `text`, left to right, as `(start, end, relation_id, phrase)` tuples.

    Matching is case-insensitive, whitespace-tolerant inside a phrase, on word boundaries (hyphenated words do
    not match), and longest-first: a span is reported once ("on the left of" is one match, not also "left of").

    Raises:
        TypeError: if `text` is not a string.

    Examples:

    ```py
    >>> find_relation_phrases("a cat ON THE LEFT OF a dog, hovering over a mat")
    [RelationMatch(start=6, end=20, relation='left_of', phrase='ON THE LEFT OF'), RelationMatch(start=37, end=41, relation='above', phrase='over')]

    ```
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r}")
    return [RelationMatch(m.start(), m.end(), m.lastgroup, m.group()) for m in _PHRASE_RE.finditer(text)]


# --------------------------------------------------------------------------------------------------------------
# Noun phrases
# --------------------------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_DETERMINERS = _word_set(
    "a an the this that these those some any each every another other no my your his her its our their "
    "one two three four five six seven eight nine ten eleven twelve many several few multiple both all "
    "single"
)
# Words that end the head noun's phrase: "a cup of coffee" -> "cup", "a dog wearing a hat" -> "dog".
_POSTMODIFIERS = _word_set(
    "of with without in on at from for by to that which who whose wearing holding carrying having made full "
    "filled covered dressed painted decorated"
)
# "a group of people" -> "person": the noun before "of" only counts things.
_QUANTIFIER_NOUNS = _word_set(
    "lot lots pair pairs group groups bunch bunches couple number herd herds flock flocks pack packs set sets "
    "stack stacks pile piles crowd crowds dozen dozens handful slice slices piece pieces plenty kind kinds type "
    "types sort sorts swarm school team row rows line lines collection bundle bundles heap heaps variety"
)
# Participles and verbs that may trail a subject noun ("a cat sitting to the left of a dog").
_TRAILING_VERBS = _word_set(
    "sitting standing lying laying hanging flying floating hovering placed parked located positioned situated "
    "perched resting sleeping walking running swimming jumping leaning mounted seated stacked sits stands lies "
    "hangs rests appears appearing shown seen drawn depicted visible"
)
_COORDINATORS = frozenset({"and", "or", "&"})
# Words that cannot be the head of a subject or object ("there is left of a dog" has no subject).
_NOT_HEADS = _word_set("is are was were be been being it its they them he she him there here what which who")


def _first_postmodifier(words: list[str]) -> int | None:
    """Index of the first word after the head noun's phrase ("of", "with", "and" + determiner, ...), or None."""
    for i in range(1, len(words)):
        if words[i] in _POSTMODIFIERS:
            return i
        if words[i] in _COORDINATORS and i + 1 < len(words) and words[i + 1] in _DETERMINERS:
            return i
    return None


def head_noun(noun_phrase: str) -> str | None:
    """Return the singular head noun of a noun phrase, or None when it has none.

    The head is the last noun before any post-modifier ("of", "with", "wearing", ...), so "a cup of coffee" gives
    "cup" and "a dog wearing a hat" gives "dog"; a counting noun before "of" is skipped ("a group of people" ->
    "person"); multi-word COCO nouns stay whole ("two traffic lights" -> "traffic light"); and a coordination
    keeps its first conjunct ("a cat and a dog" -> "cat"). A phrase made only of determiners, numbers or
    nothing ("the", "two", "") has no head.

    Examples:

    ```py
    >>> [head_noun(t) for t in ["a red cat", "two dogs", "a cup of coffee", "a group of people", "the"]]
    ['cat', 'dog', 'cup', 'person', None]

    ```
    """
    if not isinstance(noun_phrase, str):
        raise TypeError(f"head_noun expects a str noun phrase, got {type(noun_phrase).__name__}: {noun_phrase!r}")
    words = _WORD_RE.findall(noun_phrase.lower())
    cut = _first_postmodifier(words)
    while cut is not None:
        if words[cut] == "of" and words[cut - 1] in _QUANTIFIER_NOUNS and cut + 1 < len(words):
            words = words[cut + 1 :]  # "a bunch of bananas": the bananas are the object
            cut = _first_postmodifier(words)
        else:
            words = words[:cut]
            break
    while len(words) > 1 and words[-1] in _TRAILING_VERBS:
        words = words[:-1]
    if not words:
        return None
    last = words[-1]
    if last in _DETERMINERS or last in _POSTMODIFIERS or last in _COORDINATORS or last in _NOT_HEADS:
        return None
    if not any(c.isalpha() for c in last):
        return None
    if len(words) >= 2:
        compound = singularize(f"{words[-2]} {last}")
        if compound in MULTIWORD_NOUNS:
            return compound
    return singularize(last)


# --------------------------------------------------------------------------------------------------------------
# Prompt structure
# --------------------------------------------------------------------------------------------------------------

# Between the subject and the phrase: an optional comma, copula (+ participle) and adverb, e.g.
# "a cat is sitting directly to the left of a dog" -> before_phrase " is sitting directly ".
# Every pattern that may start inside a whitespace run starts with `(?<!\s)`, so a search tries each run once
# (linear time even on pathological input such as thousands of spaces).
_BEFORE_PHRASE_RE = re.compile(
    r"(?<!\s)(?:\s*,)?"
    r"(?:\s+(?:is|are|was|were|be|being)"
    r"(?:\s+(?:placed|located|positioned|situated|standing|sitting|lying|hanging|shown|seen|drawn|depicted|parked|"
    r"floating|flying|hovering|perched|resting))?)?"
    r"(?:\s+(?:directly|just|slightly|immediately|right|far|partially|partly|completely|fully|somewhat|exactly|"
    r"mostly|squarely))?"
    r"\s*\Z",
    re.IGNORECASE,
)

_MEDIA = (
    r"photo|photograph|photography|image|picture|pic|painting|drawing|illustration|sketch|render|rendering|cartoon|"
    r"snapshot|shot|scene|view|close-up|closeup|depiction|portrait|artwork|poster|still|frame|watercolor|"
    r"watercolour|clipart|icon|diagram"
)
# Common framings before the subject: "a photo of ", "Generate an image of ", "there are ", ...
_FRAMING_RE = re.compile(
    r"\s*"
    r"(?:(?:please\s+)?(?:draw|generate|create|paint|render|make|show|imagine|depict|illustrate|produce)"
    r"(?:\s+me)?(?:\s+|\Z))?"
    r"(?:(?:(?:a|an|the|this|one)\s+)?(?:[\w'-]+\s+){0,3}?(?:" + _MEDIA + r")s?\s+"
    r"(?:of|showing|depicting|featuring|with|where|in\s+which)(?:\s+|\Z))?"
    r"(?:(?:there\s+(?:is|are)|there's|here\s+(?:is|are))(?:\s+|\Z))?",
    re.IGNORECASE,
)

# The last clause boundary before the subject: text up to it belongs to the prefix ("In the snow, a cat ...").
_LEADING_BOUNDARY_RE = re.compile(r"(?:[,;:!?]|\.(?!\d))\s*")

_SUFFIX_WORDS = (
    r"in|on|at|during|while|inside|outside|against|amid|amidst|among|amongst|within|through|across|along|around|"
    r"from|that|which|who|where|when|as|after|before|under|surrounded|lit"
)
# Where the object noun phrase ends and the suffix starts: punctuation, a scene preposition, or a new conjunct.
_SUFFIX_START_RE = re.compile(
    r"(?:(?<!\s)\s+)?(?:[,;:!?()\[\]{}\"]|\.(?!\d)|--)"
    r"|(?<!\s)\s+(?:"
    r"-\s"
    r"|(?:" + _SUFFIX_WORDS + r")(?![\w-])"
    r"|(?:and|or|&)\s+(?:a|an|the|two|three|four|some|several|many)(?![\w-])"
    r"|\Z)",
    re.IGNORECASE,
)


_SHOWN_CHARS, _SHOWN_MATCHES = 200, 5


def _quoted(text: str) -> str:
    """The prompt as an error message quotes it: whole when short, else its start and its length."""
    if len(text) <= _SHOWN_CHARS:
        return repr(text)
    return f"{text[:_SHOWN_CHARS]!r}... ({len(text)} characters)"


class MultipleRelationsError(ValueError):
    """The text holds two or more relation phrases; which one the prompt means is not guessed.

    Attributes:
        text: the text given.
        matches: the `RelationMatch`es found, left to right.
    """

    def __init__(self, text: str, matches: list[RelationMatch]):
        self.text = text
        self.matches = list(matches)
        found = ", ".join(f"{m.phrase!r} ({m.relation}) at {m.start}" for m in self.matches[:_SHOWN_MATCHES])
        if len(self.matches) > _SHOWN_MATCHES:
            found += ", ..."
        super().__init__(
            f"prompt {_quoted(text)} contains {len(self.matches)} relation phrases: {found}; "
            "a spatial prompt must contain exactly one"
        )

    def __reduce__(self):
        return type(self), (self.text, self.matches)


class UnparseablePromptError(ValueError):
    """Raised by `require_spatial_prompt` when a text is not a readable spatial prompt.

    Attributes:
        text: the text given.
        reason: why it could not be read (no relation phrase, no subject, no object).
    """

    def __init__(self, text: str, reason: str):
        self.text = text
        self.reason = reason
        super().__init__(f"prompt {_quoted(text)} is not a spatial prompt: {reason}")

    def __reduce__(self):
        return type(self), (self.text, self.reason)


@dataclass(frozen=True)
class SpatialPrompt:
    """A spatial prompt read into its parts; `render()` joins them back into the exact original text.

    `text == prefix + subject + before_phrase + phrase + after_phrase + object + suffix`.

    Args:
        prefix: framing before the subject, verbatim (e.g. "a photo of "; "" if none).
        subject: the subject noun phrase, verbatim (e.g. "a red cat").
        relation: the relation id (one of `RELATIONS`).
        object: the object noun phrase, verbatim (e.g. "a dog").
        suffix: text after the object noun phrase, verbatim (e.g. ", in the snow"; "" if none).
        phrase: the relation phrase as written (e.g. "On the left of"); its normalised form must be a
            `SURFACE_PHRASES` key mapping to `relation`.
        before_phrase: text between subject and phrase: a space, or a copula/adverb such as " is directly ".
        after_phrase: text between phrase and object, normally a space.

    Examples:

    ```py
    >>> p = SpatialPrompt.from_parts("two dogs", "above", "a bench", prefix="a photo of ")
    >>> p.render(), p.subject_noun, p.converse_relation
    ('a photo of two dogs above a bench', 'dog', 'below')

    ```
    """

    prefix: str
    subject: str
    relation: str
    object: str
    suffix: str
    phrase: str
    before_phrase: str = " "
    after_phrase: str = " "

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str):
                raise TypeError(f"SpatialPrompt.{f.name} must be a str, got {type(value).__name__}: {value!r}")
        _check_relation(self.relation)
        phrase_relation = _phrase_relation(self.phrase)
        if phrase_relation != self.relation:
            raise ValueError(
                f"phrase {self.phrase!r} does not express relation {self.relation!r} "
                f"(it is {'not a known phrase' if phrase_relation is None else repr(phrase_relation)})"
            )
        for name in ("subject", "object"):
            noun = head_noun(getattr(self, name))
            if noun is None:
                raise ValueError(f"SpatialPrompt.{name} {getattr(self, name)!r} is not a noun phrase (no head noun)")
            self.__dict__[f"{name}_noun"] = noun  # fills the cached properties below once

    @classmethod
    def from_parts(
        cls, subject: str, relation: str, object: str, *, prefix: str = "", suffix: str = ""
    ) -> SpatialPrompt:
        """Build a prompt from its parts, writing the relation (an id or any surface phrase) canonically."""
        relation = normalize_relation(relation)
        return cls(prefix, subject, relation, object, suffix, CANONICAL_PHRASE[relation])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpatialPrompt:
        """Inverse of `to_dict` (derived keys such as "text" and the nouns are ignored)."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names[:6] if n not in data]
        if missing:
            raise ValueError(f"SpatialPrompt.from_dict: missing keys {missing} in {dict(data)!r}")
        return cls(**{n: data[n] for n in names if n in data})

    @cached_property
    def subject_noun(self) -> str:
        """Singular head noun of the subject ("two red cats" -> "cat", "a traffic light" -> "traffic light")."""
        return head_noun(self.subject)

    @cached_property
    def object_noun(self) -> str:
        """Singular head noun of the object ("a cup of coffee" -> "cup", "people" -> "person")."""
        return head_noun(self.object)

    @property
    def converse_relation(self) -> str:
        """The relation that holds with subject and object exchanged."""
        return CONVERSE[self.relation]

    def render(self) -> str:
        """The original text, exactly."""
        parts = (
            self.prefix,
            self.subject,
            self.before_phrase,
            self.phrase,
            self.after_phrase,
            self.object,
            self.suffix,
        )
        return "".join(parts)

    def swapped(self) -> str:
        """The same scene written with object and subject exchanged and the converse relation's canonical phrase.

        `prefix + object + " " + CANONICAL_PHRASE[converse] + " " + subject + suffix`; a copula or adverb between
        subject and phrase (" is directly ") is not carried over.
        """
        return f"{self.prefix}{self.object} {CANONICAL_PHRASE[self.converse_relation]} {self.subject}{self.suffix}"

    def to_dict(self) -> dict[str, str]:
        """JSON-serialisable dict: the fields, plus "text", "subject_noun" and "object_noun"."""
        return {
            "text": self.render(),
            **asdict(self),
            "subject_noun": self.subject_noun,
            "object_noun": self.object_noun,
        }

    def __str__(self) -> str:
        return self.render()


def _parse(text: str) -> SpatialPrompt | str:
    """Parse `text`; return the prompt, or a string saying why it is not a spatial prompt."""
    matches = find_relation_phrases(text)
    if not matches:
        return "it contains no relation phrase"
    if len(matches) > 1:
        raise MultipleRelationsError(text, matches)
    (start, end, relation, phrase) = matches[0]

    # Left of the phrase: prefix + subject + before_phrase.
    left = text[:start]
    before = _BEFORE_PHRASE_RE.search(left)
    head = left[: before.start()]
    subject_start = 0
    for m in _LEADING_BOUNDARY_RE.finditer(head):
        subject_start = m.end()
    subject_start = _FRAMING_RE.match(head, subject_start).end()  # also takes the leading whitespace
    prefix, subject = head[:subject_start], head[subject_start:]
    if head_noun(subject) is None:
        return f"the relation phrase {phrase!r} has no subject noun phrase before it"

    # Right of the phrase: after_phrase + object + suffix.
    right = text[end:]
    object_start = len(right) - len(right.lstrip())
    stop = _SUFFIX_START_RE.search(right, object_start)
    object_end = stop.start() if stop else len(right)
    obj = right[object_start:object_end]
    if head_noun(obj) is None:
        return f"the relation phrase {phrase!r} has no object noun phrase after it"
    return SpatialPrompt(
        prefix=prefix,
        subject=subject,
        relation=relation,
        object=obj,
        suffix=right[object_end:],
        phrase=phrase,
        before_phrase=left[before.start() :],
        after_phrase=right[:object_start],
    )


def parse_spatial_prompt(text: str) -> SpatialPrompt | None:
    """Read a spatial prompt into prefix, subject, relation, object and suffix.

    Args:
        text: the prompt, e.g. "a photo of a red cat to the left of a dog, in the snow".

    Returns:
        A `SpatialPrompt` with `render() == text`, or None when `text` is not a readable spatial prompt: it
        holds no relation phrase (including empty or whitespace-only text), or the phrase does not stand
        between two noun phrases ("left of a dog").

    Raises:
        TypeError: if `text` is not a string.
        MultipleRelationsError: (a ValueError) if `text` holds two or more relation phrases; the message
            quotes the text and the phrases found.

    Examples:

    ```py
    >>> p = parse_spatial_prompt("a photo of a bench left of a bear")
    >>> p.prefix, p.subject, p.relation, p.object
    ('a photo of ', 'a bench', 'left_of', 'a bear')
    >>> parse_spatial_prompt("a balloon on the top of a giraffe").relation
    'above'
    >>> parse_spatial_prompt("a cat to the left of a dog above a tree")
    Traceback (most recent call last):
      ...
    diffusers_spatial.relations.MultipleRelationsError: prompt 'a cat to the left of a dog above a tree' contains 2 relation phrases: 'to the left of' (left_of) at 6, 'above' (above) at 27; a spatial prompt must contain exactly one

    ```
    """
    result = _parse(text)
    return result if isinstance(result, SpatialPrompt) else None


def require_spatial_prompt(text: str) -> SpatialPrompt:
    """Like `parse_spatial_prompt`, but raise `UnparseablePromptError` (a ValueError) saying why instead of None.

    Examples:

    ```py
    >>> require_spatial_prompt("left of a dog")
    Traceback (most recent call last):
      ...
    diffusers_spatial.relations.UnparseablePromptError: prompt 'left of a dog' is not a spatial prompt: the relation phrase 'left of' has no subject noun phrase before it

    ```
    """
    result = _parse(text)
    if isinstance(result, str):
        raise UnparseablePromptError(text, result)
    return result
