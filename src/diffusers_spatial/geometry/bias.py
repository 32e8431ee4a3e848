"""The bias table: where a generator (as judged by one protocol) gets spatial relations right and wrong.

TORE reads `table["relations"][relation]` and `table["triplets"]["subject|relation|object"]`, each with `n`
(determined images), `correct` and `rate = correct / n`. The format is documented in docs/metrics.md.

Object order: for the unordered pair of nouns {A, B}, the form whose subject is the alphabetically first noun is
"as_written"; its counterfactual twin (subject and object exchanged, converse relation: "A left of B" <->
"B right of A", the same scene) is "swapped". Comparing the two shows a mention-order bias; a counterfactual
pair is consistent when both forms are judged right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..relations import CONVERSE, head_noun, normalize_relation
from .types import ImageScore

__all__ = ["BIAS_TABLE_VERSION", "as_image_scores", "bias_table", "object_order", "triplet_key"]

BIAS_TABLE_VERSION = 1


def as_image_scores(image_scores: Iterable[ImageScore | Mapping[str, Any]]) -> list[ImageScore]:
    """Accept `ImageScore`s or their `to_dict()` forms (e.g. read back from JSON lines)."""
    if isinstance(image_scores, (ImageScore, Mapping, str, bytes)) or not isinstance(image_scores, Iterable):
        raise ValueError(f"image_scores must be a list of ImageScores or dicts, got {type(image_scores).__name__}")
    out = []
    for k, s in enumerate(image_scores):
        if isinstance(s, ImageScore):
            out.append(s)
        elif isinstance(s, Mapping):
            out.append(ImageScore.from_dict(s))
        else:
            raise ValueError(f"image score {k} must be an ImageScore or a dict, got {type(s).__name__}")
    return out


def triplet_key(subject: str, relation: str, object: str) -> str:
    """The bias-table key of a (subject noun, relation, object noun) triplet: `"subject|relation|object"`.

    Nouns are reduced to their singular, lower-case head noun (`relations.head_noun`) and the relation to its id,
    so "Dogs|left of|a cat" and "dog|left_of|cat" are the same key (the one `table["triplets"]` uses).
    """
    nouns = []
    for role, noun in (("subject", subject), ("object", object)):
        if not isinstance(noun, str) or not noun.strip():
            raise ValueError(f"triplet {role} must be a non-empty noun, got {noun!r}")
        nouns.append(head_noun(noun) or " ".join(noun.lower().split()))
    return f"{nouns[0]}|{normalize_relation(relation)}|{nouns[1]}"


def object_order(subject: str, object: str) -> str:
    """ "as_written" when the subject is the alphabetically first noun (or both are equal), else "swapped"."""
    return "as_written" if subject <= object else "swapped"


def _stats(counts: list[int]) -> dict:
    n, correct = counts
    return {"n": n, "correct": correct, "rate": correct / n}


def _tally(table: dict, key, correct: bool) -> None:
    counts = table.setdefault(key, [0, 0])
    counts[0] += 1
    counts[1] += int(correct)


def bias_table(image_scores: Iterable[ImageScore | Mapping[str, Any]]) -> dict:
    """Tally determined verdicts per relation, per triplet, per object order, and per counterfactual pair.

    Undetermined images (`correct is None`) are counted in `undetermined` / `undetermined_by_relation` only. Every
    stats entry `{"n", "correct", "rate"}` has `n >= 1` (an entry with no determined image is left out), so `rate`
    is always a float.

    Raises:
        ValueError: if the scores come from more than one protocol (their verdicts do not mix).

    Examples:

    ```py
    >>> from diffusers_spatial.geometry import bias_table, score_images
    >>> cat, dog = {"label": "cat", "score": 0.9, "box": [0, 0, 10, 10]}, {"label": "dog", "score": 0.9, "box": [50, 0, 60, 10]}
    >>> scores = score_images(["a cat left of a dog", "a dog right of a cat"], [[cat, dog], [cat, dog]])
    >>> table = bias_table(scores)
    >>> table["relations"]["left_of"], table["counterfactual"]["consistency"]
    ({'n': 1, 'correct': 1, 'rate': 1.0}, 1.0)

    ```
    """
    scores = as_image_scores(image_scores)
    protocols = sorted({s.protocol for s in scores})
    if len(protocols) > 1:
        raise ValueError(f"a bias table describes one protocol; got scores from {protocols}")
    relations: dict = {}
    triplets: dict = {}
    orders: dict = {}
    relation_orders: dict = {}
    undetermined: dict = {}
    for s in scores:
        if s.correct is None:
            undetermined[s.relation] = undetermined.get(s.relation, 0) + 1
            continue
        order = object_order(s.subject, s.object)
        _tally(relations, s.relation, s.correct)
        _tally(triplets, (s.subject, s.relation, s.object), s.correct)
        _tally(orders, order, s.correct)
        _tally(relation_orders.setdefault(s.relation, {}), order, s.correct)

    pairs = {}
    for (subject, relation, obj), counts in triplets.items():
        twin = (obj, CONVERSE[relation], subject)
        if twin not in triplets or object_order(subject, obj) != "as_written":
            continue
        if subject == obj and relation > twin[1]:  # "dog left of dog" / "dog right of dog": list the pair once
            continue
        rate, twin_rate = counts[1] / counts[0], triplets[twin][1] / triplets[twin][0]
        pairs[triplet_key(subject, relation, obj)] = {
            "as_written": triplet_key(subject, relation, obj),
            "swapped": triplet_key(*twin),
            "as_written_rate": rate,
            "swapped_rate": twin_rate,
            "consistency": rate * twin_rate,
        }
    return {
        "version": BIAS_TABLE_VERSION,
        "protocol": protocols[0] if protocols else None,
        "n_images": len(scores),
        "determined": len(scores) - sum(undetermined.values()),
        "undetermined": sum(undetermined.values()),
        "relations": {r: _stats(c) for r, c in relations.items()},
        "triplets": {
            triplet_key(*t): {"subject": t[0], "relation": t[1], "object": t[2], **_stats(c)}
            for t, c in triplets.items()
        },
        "orders": {o: _stats(c) for o, c in sorted(orders.items())},
        "relation_orders": {r: {o: _stats(c) for o, c in sorted(v.items())} for r, v in relation_orders.items()},
        "counterfactual": {
            "n_pairs": len(pairs),
            "consistency": sum(p["consistency"] for p in pairs.values()) / len(pairs) if pairs else None,
            "both_right": sum(1 for p in pairs.values() if p["consistency"] == 1.0),
            "pairs": pairs,
        },
        "undetermined_by_relation": undetermined,
    }
