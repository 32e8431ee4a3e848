"""Calibrate TORE for a model: generate a prompt suite, judge every image, tally the bias table, build a `Tore`.

Layout of a calibration folder (every step resumes where a killed run stopped):

```
out_dir/
  images/, generations.jsonl, prompts.jsonl   the generated images (`diffusers_spatial.generation.generate_images`)
  calibration.json                            the scoring settings, pinned: a resume with others is refused
  scores.jsonl                                one `ImageScore` per image, appended batch by batch
  bias_table.json                             `geometry.bias_table` of the scores
  tore_config.json                            the resulting `Tore` (load it with `Tore.from_pretrained(out_dir)`)
```

Examples:

```py
>>> from diffusers_spatial.suites import build_suite
>>> from diffusers_spatial.tore.calibration import calibrate
>>> result = calibrate(pipe, build_suite("sr2d", num_pairs=200), "calibration/sd15", images_per_prompt=4, tau=0.05)  # doctest: +SKIP
>>> result.tore.rewrite("a photo of a cat to the left of a dog")  # doctest: +SKIP
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusers.utils import logging

from ..relations import MultipleRelationsError, parse_spatial_prompt
from ..utils.atomic import atomic_write_json
from .core import Tore

logger = logging.get_logger(__name__)

__all__ = ["BIAS_TABLE_NAME", "SCORES_NAME", "CalibrationResult", "PerceptionScorer", "calibrate"]

SCORES_NAME = "scores.jsonl"
BIAS_TABLE_NAME = "bias_table.json"
SETTINGS_NAME = "calibration.json"

# scorer(images, prompts) -> one ImageScore (or its to_dict() form) per image. Images are file paths.
Scorer = Callable[[Sequence[Any], Sequence[str]], Sequence[Any]]


class PerceptionScorer:
    """The default scorer: `perception.Perception` finds the objects (and depth), `geometry` judges the relation.

    Images the detector cannot judge (unreadable, or a noun the detector cannot see) get an undetermined verdict
    (`correct=None`, with the reason in `details["reason"]`), which the bias table leaves out of the rates.

    Args:
        perception: a `Perception` (default: the embedded offline detector, no depth model).
        protocol: the `geometry` protocol judging the images ("esplora" by default).
        options: protocol options passed to `geometry.score_images`.
    """

    def __init__(self, perception=None, protocol: str = "esplora", **options):
        from ..geometry.protocols import get_protocol
        from ..perception import Perception

        get_protocol(protocol)  # unknown protocol: fail now, not after generating
        self.perception = perception if perception is not None else Perception(progress=False)
        self.protocol, self.options = protocol, options

    @property
    def name(self) -> str:
        return f"perception:{self.perception.detector_name}+{self.perception.depth_name}/{self.protocol}"

    def __call__(self, images: Sequence[Any], prompts: Sequence[str]):
        from ..geometry import score_images
        from ..perception.batching import undetermined_score

        results = self.perception.run(list(images), list(prompts))
        scores: list[Any] = [None] * len(results)
        judged = [i for i, r in enumerate(results) if r.undetermined_reason is None]
        for i, r in enumerate(results):
            if i not in judged:
                parsed = r.prompt or parse_spatial_prompt(prompts[i])
                scores[i] = undetermined_score(self.protocol, parsed, r.undetermined_reason, text=prompts[i])
        if judged:
            pick = [results[i] for i in judged]
            verdicts = score_images(
                [r.prompt for r in pick],
                [r.detections for r in pick],
                protocol=self.protocol,
                depths=[r.depth for r in pick],
                image_sizes=[r.image_size for r in pick],
                subject_label=[r.subject_label for r in pick],
                object_label=[r.object_label for r in pick],
                **self.options,
            )
            for i, verdict in zip(judged, verdicts):
                scores[i] = verdict
        return scores


@dataclass
class CalibrationResult:
    """What `calibrate` produced.

    Attributes:
        tore: the calibrated rule (also saved as `out_dir/tore_config.json`).
        bias_table: the bias table it was built from (also `out_dir/bias_table.json`).
        scores: one `ImageScore` per image, in generation order.
        out_dir: the calibration folder.
    """

    tore: Tore
    bias_table: dict[str, Any]
    scores: list[Any]
    out_dir: Path


def _check_spatial(prompts: Sequence[Any]) -> None:
    bad = []
    for i, p in enumerate(prompts):
        text = getattr(p, "prompt", p)
        try:
            ok = isinstance(text, str) and parse_spatial_prompt(text) is not None
        except MultipleRelationsError:
            ok = False
        if not ok:
            bad.append(f"[{i}] {text!r}")
    if bad:
        raise ValueError(
            f"calibration needs spatial prompts with exactly one relation; {len(bad)} are not: {', '.join(bad[:5])}"
        )


def _pin_settings(out_dir: Path, settings: Mapping[str, Any]) -> None:
    path = out_dir / SETTINGS_NAME
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise ValueError(
                f"{out_dir} holds a calibration scored with other settings ({', '.join(changed)}: "
                f"{ {k: previous.get(k) for k in changed} } vs { {k: settings.get(k) for k in changed} }); "
                "use another folder"
            )
        return
    atomic_write_json(path, dict(settings))


def calibrate(
    pipe,
    prompts: Sequence[Any],
    out_dir: str | os.PathLike,
    *,
    scorer: Scorer | None = None,
    images_per_prompt: int = 4,
    seed: int = 0,
    batch_size: int = 4,
    score_batch_size: int = 16,
    tau: float = 0.0,
    min_count: int = 10,
    progress: bool = True,
    **generation_kwargs,
) -> CalibrationResult:
    """Generate `images_per_prompt` seeded images per prompt, judge them, and build the bias table and a `Tore`.

    Args:
        pipe: the diffusers text-to-image pipeline to calibrate, with TORE OFF (the table describes the model on
            prompts as written); a LoRA, if the model will run with one, should be loaded (and fused).
        prompts: spatial prompts: `suites.SuitePrompt`s or strings, each with exactly one relation. Suites that
            hold both orders of each pair ("A left of B" and "B right of A") give the triplet statistics TORE uses.
        out_dir: the calibration folder (see the module docstring); an interrupted run resumes from it.
        scorer: `scorer(image_paths, prompts) -> [ImageScore | dict]`, one verdict per image; default
            `PerceptionScorer()` (embedded detector, "esplora" protocol).
        images_per_prompt, seed, batch_size: generation (`generation.generate_images`: image k of prompt p always
            gets the same seed, whatever the batch).
        score_batch_size: images per scorer call (each call's verdicts are appended to `scores.jsonl` at once).
        tau, min_count: the `Tore` settings.
        progress: show progress bars.
        generation_kwargs: more pipeline arguments (`num_inference_steps`, `guidance_scale`, `height`, ...).

    Returns:
        A `CalibrationResult` (tore, bias_table, scores, out_dir).

    Raises:
        ValueError: a prompt that is not a single-relation spatial prompt, TORE attached to `pipe`, or `out_dir`
            holding a calibration made with other settings (before any work is done).
    """
    from tqdm.auto import tqdm

    from ..generation import generate_images
    from ..geometry import ImageScore, bias_table
    from ..geometry.bias import as_image_scores
    from ..metric.results import ResultsStore

    if getattr(pipe, "tore", None) is not None:
        raise ValueError(
            "TORE is active on this pipeline; calibration measures the model on prompts as written: "
            "call pipe.set_tore(None) first"
        )
    _check_spatial(prompts)
    if not isinstance(score_batch_size, int) or isinstance(score_batch_size, bool) or score_batch_size < 1:
        raise ValueError(f"score_batch_size must be a positive integer, got {score_batch_size!r}")
    Tore(tau=tau, min_count=min_count)  # validate the rule's settings before hours of generation
    scorer = scorer if scorer is not None else PerceptionScorer()
    out_dir = Path(out_dir)
    _pin_settings(out_dir, {"scorer": getattr(scorer, "name", type(scorer).__name__)})

    generated = generate_images(
        pipe,
        prompts,
        out_dir,
        images_per_prompt=images_per_prompt,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        **generation_kwargs,
    )

    store = ResultsStore(out_dir / SCORES_NAME)
    records = {str(r["key"]): r for r in store}
    todo = [g for g in generated if g.image not in records]
    with tqdm(total=len(generated), initial=len(generated) - len(todo), desc="scoring", disable=not progress) as bar:
        for start in range(0, len(todo), score_batch_size):
            batch = todo[start : start + score_batch_size]
            verdicts = as_image_scores(scorer([str(g.path) for g in batch], [g.prompt for g in batch]))
            if len(verdicts) != len(batch):
                raise ValueError(f"scorer returned {len(verdicts)} verdicts for {len(batch)} images")
            new = [{"key": g.image, "prompt_id": g.prompt_id, **v.to_dict()} for g, v in zip(batch, verdicts)]
            store.append(new)
            records.update((r["key"], r) for r in new)
            bar.update(len(batch))

    scores = [ImageScore.from_dict(records[g.image]) for g in generated]
    table = bias_table(scores)
    atomic_write_json(out_dir / BIAS_TABLE_NAME, table)
    tore = Tore.from_report(table, tau=tau, min_count=min_count)
    tore.save_pretrained(out_dir)
    logger.info(f"TORE calibrated on {len(scores)} images ({table['determined']} determined) in {out_dir}")
    return CalibrationResult(tore=tore, bias_table=table, scores=scores, out_dir=out_dir)
