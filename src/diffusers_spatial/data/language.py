"""A cheap "is this caption English?" heuristic for the caption filter (no model, no dependency).

LAION-400M's captions are mostly English, but about a tenth are in other languages; the relation grammar is
English, so a non-English caption would only ever be counted as "no relation". Counting it as
`non_english` instead keeps the statistics honest. The rule, in order:

1. Letters outside ASCII make up more than `max_non_ascii` (10 %) of the letters: not English (CJK, Cyrillic,
   Arabic, ..., and Latin-script text heavy in accents).
2. At least two words are function words of another common LAION language (German, French, Spanish, Italian,
   Portuguese, Dutch: "der", "und", "une", "los", "della", "het", ...) and they outnumber the English function
   words ("the", "a", "of", "with", ...): not English.
3. Otherwise English.

It is a heuristic: it errs towards "English" on short captions (brand names, one-word titles), which the
relation parser then rejects as "no relation" anyway. A language-ID model (fastText lid.176, CLD3) would be
more exact at LAION scale; swap it in through `CurationConfig.require_english=False` plus a pre-filter.

Examples:

```py
>>> from diffusers_spatial.data.language import looks_english
>>> looks_english("a dog to the left of a cat"), looks_english("un chien à gauche d'un chat")
(True, False)
>>> looks_english("ein Hund links von einer Katze"), looks_english("猫在狗的左边")
(False, False)
>>> looks_english("Le Mans 24h race car")  # one French article is not enough
True

```
"""

from __future__ import annotations

import re

__all__ = ["looks_english"]


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_ENGLISH = _word_set(
    "a an the of and or with in on at to for from by is are this that these those its his her their near over "
    "under above below behind left right front next"
)
# Frequent function words of other languages, minus any that are also English words ("die", "son", "of").
_OTHER = _word_set(
    "der das den dem des ein eine einer eines einem und mit auf von vom zum zur ist im am links rechts neben "
    "hinter unter über vor "
    "le la les un une du au aux et avec sur dans pour est gauche droite devant derrière côté "
    "de di el los las una unos unas del al y con en por para es izquierda derecha encima debajo detrás "
    "il lo gli della delle degli dei nel nella sulla sul con per è sinistra destra sopra sotto dietro "
    "o os da das do dos na no em com uma é esquerda direita "
    "het een van en met op naast achter onder boven voor"
)
_WORD_RE = re.compile(r"[^\W\d_]+", re.UNICODE)


def looks_english(text: str, *, max_non_ascii: float = 0.1) -> bool:
    """Whether `text` looks like English (see the module docstring for the exact rule).

    Args:
        text: a caption.
        max_non_ascii: the largest share of non-ASCII letters an English caption may have.

    Returns:
        False for text with no letters at all.
    """
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    if sum(not c.isascii() for c in letters) / len(letters) > max_non_ascii:
        return False
    words = [w.lower() for w in _WORD_RE.findall(text)]
    other = sum(w in _OTHER and w not in _ENGLISH for w in words)
    english = sum(w in _ENGLISH for w in words)
    return not (other >= 2 and other > english)
