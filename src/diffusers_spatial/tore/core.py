"""TORE: ask a model for each spatial relation in the form it renders best.

A spatial prompt "A r B" can be written two ways with the same meaning: as written, and swapped ("B converse(r)
A", exactly `SpatialPrompt.swapped()`). Text-to-image models render some relations far more reliably than their
converse (a model may draw "right of" twice as often correctly as "left of"), so a calibrated model should be
asked for the variant it renders best. `Tore` holds the calibration (success rates per relation and, optionally,
per subject/relation/object triplet with counts) and applies one exact rule; see `Tore.decide`.

Examples:

```py
>>> from diffusers_spatial.tore import Tore
>>> tore = Tore(success_rates={"left_of": 0.31, "right_of": 0.62, "above": 0.55, "below": 0.48}, tau=0.1)
>>> tore.rewrite("a photo of a cat to the left of a dog")
'a photo of a dog to the right of a cat'
>>> tore.rewrite("a cat above a dog")  # 0.48 does not beat 0.55 by more than 0.1
'a cat above a dog'
>>> tore.decide("a cat to the left of a dog").reason
'relation rates: swapped right_of 0.62 > written left_of 0.31 + tau 0.1'

```
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from diffusers.configuration_utils import ConfigMixin

from ..geometry.bias import triplet_key
from ..relations import CONVERSE, MultipleRelationsError, normalize_relation, parse_spatial_prompt
from ..utils.files import read_json

__all__ = ["TORE_CONFIG_NAME", "Tore", "ToreDecision", "triplet_key"]

TORE_CONFIG_NAME = "tore_config.json"

# Rate differences within this of tau count as equal, so decimal inputs behave as written on paper:
# 0.4 vs 0.3 with tau = 0.1 is a tie (kept), although 0.4 - 0.3 > 0.1 in binary floating point.
_MARGIN_EPS = 1e-9

_DECISION_CACHE_SIZE = 4096

DecisionSource = Literal["triplet", "relation", "none"]


@dataclass(frozen=True)
class ToreDecision:
    """What TORE did with one prompt, and why.

    Attributes:
        prompt: the text to generate from (the swap, or the prompt as written).
        original: the prompt as written.
        swapped: the swapped variant (`SpatialPrompt.swapped()`), or None when the prompt could not be read.
        rewritten: True when `prompt` is the swap.
        source: which statistics decided: "triplet" (both triplets have >= min_count samples), "relation"
            (relation-level rates), or "none" (unreadable prompt or unknown rates: kept as written).
        relation: the written relation id (None if unreadable).
        rate_original, rate_swapped: the success rates compared (None when unknown).
        count_original, count_swapped: the triplet sample counts looked up (None when no triplet entry).
        reason: one line a person can read.
    """

    prompt: str
    original: str
    swapped: str | None
    rewritten: bool
    source: DecisionSource
    relation: str | None
    rate_original: float | None
    rate_swapped: float | None
    count_original: int | None
    count_swapped: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of the fields."""
        return asdict(self)


def _check_unit(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number in [0, 1], got {type(value).__name__}: {value!r}")
    value = float(value)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"{what} must be in [0, 1], got {value!r}")
    return value


def _check_count(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{what} must be an integer >= {minimum}, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _normalize_success_rates(success_rates: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(success_rates, Mapping):
        raise TypeError(
            f"success_rates must be a mapping relation id -> rate, got {type(success_rates).__name__}: "
            f"{success_rates!r}"
        )
    rates: dict[str, float] = {}
    for name, rate in success_rates.items():
        relation = normalize_relation(name)
        if relation in rates:
            raise ValueError(f"success_rates gives relation {relation!r} twice (as {name!r})")
        rates[relation] = _check_unit(rate, f"success rate of {name!r}")
    return rates


def _entry_rate_and_count(entry: Any, what: str) -> tuple[float, int]:
    """(rate, n) from `{"n", "rate"}` / `{"n", "correct"}` mappings or `(rate, n)` pairs."""
    if isinstance(entry, Mapping):
        if "n" not in entry:
            raise ValueError(f"{what} has no sample count 'n': {dict(entry)!r}")
        n = _check_count(entry["n"], f"{what} count 'n'")
        rate = entry.get("rate")
        if rate is None and entry.get("correct") is not None and n > 0:
            rate = _check_count(entry["correct"], f"{what} 'correct'") / n
        if rate is None:
            if n == 0:
                return math.nan, 0
            raise ValueError(f"{what} has neither 'rate' nor 'correct': {dict(entry)!r}")
        return _check_unit(rate, f"{what} rate"), n
    if isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) == 2:
        return _check_unit(entry[0], f"{what} rate"), _check_count(entry[1], f"{what} count")
    raise TypeError(f"{what} must be a mapping with 'n' and 'rate' or a (rate, n) pair, got {entry!r}")


def _split_triplet(key: Any) -> tuple[str, str, str]:
    parts = key.split("|") if isinstance(key, str) else key
    if isinstance(parts, str) or not isinstance(parts, Sequence) or len(parts) != 3:
        raise ValueError(f"triplet key must be 'subject|relation|object' or a 3-tuple, got {key!r}")
    return tuple(parts)


def _normalize_triplet_rates(triplet_rates: Mapping[Any, Any] | None) -> dict[str, dict[str, float | int]]:
    if triplet_rates is None:
        return {}
    if not isinstance(triplet_rates, Mapping):
        raise TypeError(
            f"triplet_rates must be a mapping 'subject|relation|object' -> {{n, rate}}, got {triplet_rates!r}"
        )
    triplets: dict[str, dict[str, float | int]] = {}
    for raw_key, entry in triplet_rates.items():
        if isinstance(entry, Mapping) and {"subject", "relation", "object"} <= entry.keys():
            parts = (entry["subject"], entry["relation"], entry["object"])
        else:
            parts = _split_triplet(raw_key)
        key = triplet_key(*parts)
        rate, n = _entry_rate_and_count(entry, f"triplet {raw_key!r}")
        if n == 0:
            continue  # no evidence: as if absent
        if key in triplets:
            raise ValueError(f"triplet_rates gives {key!r} twice (last as {raw_key!r})")
        triplets[key] = {"n": n, "rate": rate}
    return triplets


class Tore(ConfigMixin):
    r"""The TORE rewrite rule with its calibration.

    For a prompt "A r B" (read by `relations.parse_spatial_prompt`) the variants are the prompt as written and its
    swap "B converse(r) A" (`SpatialPrompt.swapped()`, verbatim). The swap is chosen only when

        rate(swap) > rate(as written) + tau        (strictly; differences within 1e-9 of tau are ties)

    and the prompt is kept as written otherwise: on ties, when a rate is unknown, when the prompt has no relation
    or several (`MultipleRelationsError`), or when the parser cannot read it. `tau = 1` never rewrites;
    `tau = 0` rewrites whenever the swap is strictly better.

    Which rates are compared:

    - **triplet** rates, when the calibration has BOTH triplets, "A|r|B" (as written) and "B|converse(r)|A" (the
      swap), each with at least `min_count` samples (nouns are singular head nouns, so "two dogs" counts as
      "dog");
    - otherwise the **relation** rates `success_rates[r]` and `success_rates[converse(r)]`, for both variants.

    A triplet rate is never compared with a relation rate: when only one of the two triplets has enough samples,
    both variants fall back to relation rates. Mixing the two would compare a pair-specific figure (which also
    carries how hard the two objects are to draw or detect at all) with an average over all pairs, and would flip
    prompts because of object difficulty, not because of the relation's form. The decision's `reason` says when
    this fallback happened.

    Args:
        success_rates: relation id (or any surface phrase, e.g. "left of") -> success rate in [0, 1].
        triplet_rates: optional `"subject|relation|object"` (or a 3-tuple) -> `{"n": count, "rate": r}` (or
            `{"n", "correct"}`, or a `(rate, n)` pair). Entries with n = 0 are ignored.
        tau: margin in [0, 1] the swap must beat the written form by.
        min_count: samples each triplet needs (>= 1) before triplet rates are used.

    Raises:
        ValueError / TypeError: naming the offending value, for rates or tau outside [0, 1], unknown relations,
            malformed triplet keys or counts, or min_count < 1.
    """

    config_name = TORE_CONFIG_NAME

    def __init__(
        self,
        success_rates: Mapping[str, float] | None = None,
        triplet_rates: Mapping[Any, Any] | None = None,
        tau: float = 0.0,
        min_count: int = 10,
    ):
        super().__init__()
        rates = _normalize_success_rates({} if success_rates is None else success_rates)
        triplets = _normalize_triplet_rates(triplet_rates)
        tau = _check_unit(tau, "tau")
        min_count = _check_count(min_count, "min_count", minimum=1)
        self.register_to_config(success_rates=rates, triplet_rates=triplets, tau=tau, min_count=min_count)
        self._decisions: dict[str, ToreDecision] = {}  # decisions are pure functions of the prompt: memoised

    # -- read-only views of the configuration -------------------------------------------------------------------

    @property
    def success_rates(self) -> dict[str, float]:
        return dict(self.config.success_rates)

    @property
    def triplet_rates(self) -> dict[str, dict[str, float | int]]:
        return {k: dict(v) for k, v in self.config.triplet_rates.items()}

    @property
    def tau(self) -> float:
        return self.config.tau

    @property
    def min_count(self) -> int:
        return self.config.min_count

    def to_dict(self) -> dict[str, Any]:
        """The calibration and settings as plain JSON-serialisable data."""
        return {k: v for k, v in json.loads(self.to_json_string()).items() if not k.startswith("_")}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tore) and self.to_dict() == other.to_dict()

    __hash__ = None

    def __repr__(self) -> str:
        return (
            f"Tore(success_rates={self.success_rates}, triplet_rates=<{len(self.config.triplet_rates)} triplets>, "
            f"tau={self.tau}, min_count={self.min_count})"
        )

    # -- the rule ----------------------------------------------------------------------------------------------

    def decide(self, prompt: str) -> ToreDecision:
        """Apply the rule to one prompt and say which variant was chosen, from which statistics, and why.

        Examples:

        ```py
        >>> tore = Tore(
        ...     success_rates={"left_of": 0.5, "right_of": 0.5},
        ...     triplet_rates={"cat|left_of|dog": {"n": 20, "rate": 0.2}, "dog|right_of|cat": {"n": 20, "rate": 0.7}},
        ...     min_count=10,
        ... )
        >>> d = tore.decide("a cat to the left of a dog")
        >>> d.prompt, d.source, d.rate_original, d.rate_swapped
        ('a dog to the right of a cat', 'triplet', 0.2, 0.7)

        ```
        """
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}: {prompt!r}")
        decision = self._decisions.get(prompt)
        if decision is None:
            if len(self._decisions) >= _DECISION_CACHE_SIZE:
                self._decisions.clear()
            decision = self._decisions[prompt] = self._decide(prompt)
        return decision

    def _decide(self, prompt: str) -> ToreDecision:
        def keep(source: DecisionSource, reason: str, **found) -> ToreDecision:
            fields = dict.fromkeys(("relation", "swapped", "rate_original", "rate_swapped", "count_original"))
            fields.update({"count_swapped": None, **found})
            return ToreDecision(
                prompt=prompt, original=prompt, rewritten=False, source=source, reason=reason, **fields
            )

        try:
            parsed = parse_spatial_prompt(prompt)
        except MultipleRelationsError as err:
            return keep("none", f"kept as written: {len(err.matches)} relation phrases, not one")
        if parsed is None:
            return keep("none", "kept as written: not a readable spatial prompt")

        relation, converse = parsed.relation, CONVERSE[parsed.relation]
        swapped = parsed.swapped()
        written_key = triplet_key(parsed.subject_noun, relation, parsed.object_noun)
        swapped_key = triplet_key(parsed.object_noun, converse, parsed.subject_noun)
        triplets = self.config.triplet_rates
        written_t, swapped_t = triplets.get(written_key), triplets.get(swapped_key)
        counts = {
            "count_original": None if written_t is None else written_t["n"],
            "count_swapped": None if swapped_t is None else swapped_t["n"],
        }
        found = {"relation": relation, "swapped": swapped, **counts}

        enough = [t is not None and t["n"] >= self.min_count for t in (written_t, swapped_t)]
        if all(enough):
            source: DecisionSource = "triplet"
            rate_w, rate_s = written_t["rate"], swapped_t["rate"]
            what_w, what_s = f"{written_key} (n={written_t['n']})", f"{swapped_key} (n={swapped_t['n']})"
            label = "triplet rates"
        else:
            rates = self.config.success_rates
            if relation not in rates or converse not in rates:
                unknown = [r for r in dict.fromkeys((relation, converse)) if r not in rates]
                return keep("none", f"kept as written: no success rate for {', '.join(unknown)}", **found)
            source = "relation"
            rate_w, rate_s = rates[relation], rates[converse]
            what_w, what_s = f"{relation}", f"{converse}"
            label = "relation rates"
            if any(enough) or written_t is not None or swapped_t is not None:
                label += f" (triplets need n >= {self.min_count} on both sides)"
        found.update(rate_original=rate_w, rate_swapped=rate_s)

        if rate_s - rate_w > self.tau + _MARGIN_EPS:
            reason = f"{label}: swapped {what_s} {rate_s:g} > written {what_w} {rate_w:g} + tau {self.tau:g}"
            return ToreDecision(prompt=swapped, original=prompt, rewritten=True, source=source, reason=reason, **found)
        reason = f"{label}: swapped {what_s} {rate_s:g} <= written {what_w} {rate_w:g} + tau {self.tau:g}"
        return keep(source, reason, **found)

    def rewrite(self, prompt: str | list[str]) -> str | list[str]:
        """The text to generate from: `decide(prompt).prompt` (element-wise for a list)."""
        if isinstance(prompt, (list, tuple)):
            return [self.decide(p).prompt for p in prompt]
        return self.decide(prompt).prompt

    def __call__(self, prompt: str | list[str]) -> str | list[str]:
        return self.rewrite(prompt)

    # -- construction from the metric's bias table ---------------------------------------------------------------

    @classmethod
    def from_report(
        cls,
        report: Mapping[str, Any] | str | os.PathLike,
        *,
        tau: float = 0.0,
        min_count: int = 10,
        protocol: str | None = None,
    ) -> Tore:
        """Build a `Tore` from a bias table, a metric report holding one, or a JSON file of either.

        Reads `table["relations"][relation] = {"n", "correct", "rate"}` and, if present,
        `table["triplets"]["subject|relation|object"] = {"subject", "relation", "object", "n", "correct", "rate"}`.
        Relations or triplets with n = 0 are treated as unknown.

        Args:
            report: the bias table (`geometry.bias_table(...)`), a report with a `"bias_table"` key (e.g.
                `geometry.aggregate(...)`), a report with one such entry per protocol, or a path to a JSON file.
            tau, min_count: as in `Tore`.
            protocol: which protocol's table to take when the report holds several.

        Examples:

        ```py
        >>> table = {"relations": {"left_of": {"n": 100, "correct": 31, "rate": 0.31},
        ...                        "right_of": {"n": 100, "correct": 62, "rate": 0.62}}, "triplets": {}}
        >>> Tore.from_report(table, tau=0.1).rewrite("a cat to the left of a dog")
        'a dog to the right of a cat'

        ```
        """
        table = _find_bias_table(report, protocol)
        relations = table.get("relations")
        if not isinstance(relations, Mapping):
            raise ValueError(f"bias table has no 'relations' mapping; keys are {sorted(table)}")
        rates = {}
        for name, entry in relations.items():
            rate, n = _entry_rate_and_count(entry, f"bias table relation {name!r}")
            if n > 0:
                rates[name] = rate
        triplets = table.get("triplets") or {}
        return cls(success_rates=rates, triplet_rates=triplets, tau=tau, min_count=min_count)

    # -- persistence -------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs) -> None:
        """Write `tore_config.json` into `save_directory` (and optionally push it to the Hub)."""
        self.save_config(save_directory, push_to_hub=push_to_hub, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> Tore:
        """Load a `Tore` from a folder (or Hub repo) holding `tore_config.json`, or from that JSON file itself.

        `subfolder`, `revision`, `cache_dir`, `token` and `local_files_only` are passed to `load_config`.
        """
        config = cls.load_config(pretrained_model_name_or_path, **kwargs)
        if not isinstance(config, Mapping) or "success_rates" not in config:
            raise ValueError(f"{pretrained_model_name_or_path!s} is not a TORE config (no 'success_rates')")
        return cls(
            success_rates=config["success_rates"],
            triplet_rates=config.get("triplet_rates"),
            tau=config.get("tau", 0.0),
            min_count=config.get("min_count", 10),
        )


def _find_bias_table(report: Any, protocol: str | None) -> Mapping[str, Any]:
    if isinstance(report, (str, os.PathLike)):
        path = os.fspath(report)
        if os.path.isdir(path):
            raise ValueError(
                f"{path!r} is a folder; pass the report / bias table JSON file (or use Tore.from_pretrained)"
            )
        report = read_json(path)
    if not isinstance(report, Mapping):
        raise TypeError(f"expected a bias table, a report dict or a JSON path, got {type(report).__name__}")
    if "relations" in report and "bias_table" not in report:
        return report
    # A metric report keeps one table per protocol under "protocols" and the primary protocol's at the top.
    per_protocol = report.get("protocols") if isinstance(report.get("protocols"), Mapping) else report
    nested = {k: v["bias_table"] for k, v in per_protocol.items() if isinstance(v, Mapping) and "bias_table" in v}
    if protocol is None and isinstance(report.get("bias_table"), Mapping):
        return report["bias_table"]
    if protocol is not None:
        if protocol not in nested:
            raise ValueError(f"report has no bias table for protocol {protocol!r}; it has {sorted(nested)}")
        return nested[protocol]
    if len(nested) == 1:
        return next(iter(nested.values()))
    if nested:
        raise ValueError(f"report holds bias tables for {sorted(nested)}; choose one with protocol=...")
    raise ValueError(f"no bias table found: expected a 'relations' or 'bias_table' key, got keys {sorted(report)}")
