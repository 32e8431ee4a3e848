"""Run a spatial-consistency evaluation: perceive each image, score it under every protocol, keep one record per
image (appended to a JSONL file as it is computed), and summarise the records into one report.

Three entry points share one loop (`evaluate_items`):

- `evaluate_images(images, prompts)`: images (paths, bytes, PIL, arrays) through `perception.Perception`;
- `evaluate_detections(detections, prompts)`: precomputed detections (and depth maps), no model at all;
- `diffusers-spatial evaluate` (`commands/evaluate.py`): a folder of images, resumable, with plots.

A problem with the whole input (unknown protocol or option, mismatched lengths, a results folder from other
settings) raises before any image is read. A problem with one image (unreadable file, prompt without a relation,
a noun the detector cannot see, a malformed detection) makes that image *undetermined* with its reason; the others
are scored and the report says how many were left out and why.

Launched on several processes (`accelerate launch` / `torchrun`), each process scores a shard of the images and
the records are gathered on every process before the report is built; only the main process writes files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..geometry import get_protocol, resolve_prompt, score_images
from ..relations import RELATIONS_2D, RELATIONS_3D, SpatialPrompt
from ..utils.distributed import distributed_state
from .config import EvaluationConfig
from .inputs import EvaluationItem
from .report import build_report
from .results import ResultsStore, check_run_settings, read_results, results_file_name

__all__ = ["evaluate_detections", "evaluate_images", "evaluate_items", "score_records"]

RECORD_VERSION = 1
# "detected" when the stated relation fails: the image's objects stand in another relation of the same family.
_FAMILIES = (RELATIONS_2D, RELATIONS_3D, ("next_to",))
NO_RELATION, OBJECTS_MISSING, UNDETERMINED = "none", "objects missing", "undetermined"
_ONE_IMAGE_PREFIX_RE = re.compile(r"^image 0:?\s*")


def _config(config: EvaluationConfig | None, overrides: Mapping[str, Any]) -> EvaluationConfig:
    if config is None:
        return EvaluationConfig.from_kwargs(**overrides)
    if overrides:
        raise ValueError(f"pass either config or keyword settings, not both (got config and {sorted(overrides)})")
    if not isinstance(config, EvaluationConfig):
        raise TypeError(f"config must be an EvaluationConfig, got {type(config).__name__}")
    return config


def _check_lengths(n: int, **columns: Sequence | None) -> None:
    for name, column in columns.items():
        if column is not None and len(column) != n:
            raise ValueError(f"got {n} predictions but {len(column)} {name}: one per image is needed")


def _prompt_ids(prompts: Sequence[str], prompt_ids: Sequence | None, images_per_prompt: int | None) -> list[str]:
    """Who shares a prompt: the given ids, else blocks of `images_per_prompt`, else identical prompt text."""
    if prompt_ids is not None:
        return [str(p) for p in prompt_ids]
    if images_per_prompt is None:
        return [str(p) for p in prompts]
    if len(prompts) % images_per_prompt:
        raise ValueError(
            f"got {len(prompts)} images, not a multiple of images_per_prompt={images_per_prompt}; "
            "pass prompt_ids or fix the count"
        )
    ids = []
    for start in range(0, len(prompts), images_per_prompt):
        block = prompts[start : start + images_per_prompt]
        if len(set(block)) != 1:
            raise ValueError(
                f"images {start}..{start + images_per_prompt - 1} should share one prompt (images_per_prompt="
                f"{images_per_prompt}) but have {sorted(set(block))}"
            )
        ids.append(str(start // images_per_prompt))
    return [pid for pid in ids for _ in range(images_per_prompt)]


def _check_prompts(prompts: Any, n: int) -> list[str]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise ValueError(
            f"references / prompts must be a list with one prompt per image, got {type(prompts).__name__}"
        )
    _check_lengths(n, prompts=prompts)
    bad = [(i, p) for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise ValueError(f"prompt {bad[0][0]} must be a string, got {type(bad[0][1]).__name__}: {bad[0][1]!r:.100}")
    return list(prompts)


def evaluate_images(
    images: Sequence[Any],
    prompts: Sequence[str],
    config: EvaluationConfig | None = None,
    *,
    prompt_ids: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    perception: Any = None,
    **settings: Any,
) -> dict:
    """Evaluate generated images against their spatial prompts under every protocol; return the report.

    Args:
        images: one per prompt: paths, bytes, `PIL.Image.Image`s or `H x W x 3` arrays (any mix).
        prompts: the prompt of each image.
        config: an `EvaluationConfig`; or give its fields as keyword `settings` (protocols, detector,
            depth_model, batch_size, images_per_prompt, protocol_options, detector_options, primary_protocol).
        prompt_ids: the prompt each image belongs to (default: identical text, or blocks of `images_per_prompt`).
        keys: a stable name per image (default: its index), the key of its record in `out_dir/results.jsonl`.
        out_dir: keep per-image records there, appended as computed; a rerun skips the images already done.
        overwrite: discard the records already in `out_dir` (needed when the settings changed).
        progress: show a progress bar.
        perception: a ready `perception.Perception` (default: built from the config's detector and depth model).

    Returns:
        The report (see `report.build_report`): `summary`, `protocols`, `counts`, `undetermined`, `bias_table`.

    Raises:
        ValueError: before any image is read, for mismatched lengths, an unknown protocol or option, a bad setting,
            or an `out_dir` holding results of other settings.

    Examples:

    ```py
    >>> from diffusers_spatial.metric import evaluate_images
    >>> from diffusers_spatial.photos import load_photo
    >>> report = evaluate_images([load_photo("dog")], ["a dog below a truck"], progress=False)  # doctest: +SKIP
    >>> report["summary"]["visor"]["VISOR_uncond"]  # doctest: +SKIP
    100.0

    ```
    """
    config = _config(config, settings)
    if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, Sequence):
        raise ValueError(f"predictions / images must be a list with one image per prompt, got {type(images).__name__}")
    prompts = _check_prompts(prompts, len(images))
    _check_lengths(len(images), prompt_ids=prompt_ids, keys=keys)
    ids = _prompt_ids(prompts, prompt_ids, config.images_per_prompt)
    keys = [str(k) for k in keys] if keys is not None else [str(i) for i in range(len(images))]
    if len(set(keys)) != len(keys):
        raise ValueError("keys must be unique: each names one image's record")
    items = [
        EvaluationItem(key=k, prompt=p, prompt_id=pid, image=image)
        for k, p, pid, image in zip(keys, prompts, ids, images)
    ]
    return evaluate_items(
        items, config, out_dir=out_dir, overwrite=overwrite, progress=progress, perception=perception
    )


def evaluate_detections(
    detections: Sequence[Sequence[Mapping[str, Any]]],
    prompts: Sequence[str],
    config: EvaluationConfig | None = None,
    *,
    depth: Sequence[Any] | None = None,
    image_sizes: Sequence[Sequence[int] | None] | None = None,
    prompt_ids: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **settings: Any,
) -> dict:
    """Evaluate precomputed detections (and depth maps) against their prompts; return the report.

    The same as `evaluate_images` with the perception step done by the caller. A prompt noun is looked for under
    the label that `perception.match_noun` finds for it among the image's labels ("puppy" -> "dog"), else under
    the noun itself.

    Args:
        detections: per image, a list of `{"label", "score", "box": [x1, y1, x2, y2]}` dicts (pixels).
        prompts: the prompt of each image.
        depth: per image, an H x W relative inverse depth map (larger = nearer) or None.
        image_sizes: per image, `(width, height)` or None.
        Other arguments: as in `evaluate_images` (`config.detector` is not used).

    Examples:

    ```py
    >>> from diffusers_spatial.metric import evaluate_detections
    >>> dets = [[{"label": "dog", "score": 0.9, "box": [10, 40, 60, 90]}, {"label": "bench", "score": 0.8, "box": [120, 30, 200, 100]}]]
    >>> report = evaluate_detections(dets, ["a dog to the left of a bench"], protocols="visor,geneval", progress=False)
    >>> report["summary"]["visor"]["VISOR_uncond"], report["summary"]["geneval"]["accuracy"]
    (100.0, 1.0)

    ```
    """
    config = _config(config, settings)
    if isinstance(detections, (str, bytes, Mapping)) or not isinstance(detections, Sequence):
        raise ValueError(
            f"detections must be a list with one list of detections per image, got {type(detections).__name__}"
        )
    prompts = _check_prompts(prompts, len(detections))
    _check_lengths(len(detections), depth=depth, image_sizes=image_sizes, prompt_ids=prompt_ids, keys=keys)
    ids = _prompt_ids(prompts, prompt_ids, config.images_per_prompt)
    keys = [str(k) for k in keys] if keys is not None else [str(i) for i in range(len(detections))]
    if len(set(keys)) != len(keys):
        raise ValueError("keys must be unique: each names one image's record")
    depth = depth if depth is not None else [None] * len(detections)
    image_sizes = image_sizes if image_sizes is not None else [None] * len(detections)
    items = [
        EvaluationItem(
            key=k,
            prompt=p,
            prompt_id=pid,
            detections=dets,
            depth=d,
            image_size=tuple(size) if size is not None else None,
        )
        for k, p, pid, dets, d, size in zip(keys, prompts, ids, detections, depth, image_sizes)
    ]
    return evaluate_items(items, config, out_dir=out_dir, overwrite=overwrite, progress=progress)


# --------------------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------------------


def evaluate_items(
    items: Sequence[EvaluationItem],
    config: EvaluationConfig,
    *,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    perception: Any = None,
    on_records: Callable[[list[dict]], None] | None = None,
) -> dict:
    """Score `items` (all with images, or all with detections), resuming from `out_dir`; return the report.

    Under several processes (accelerate / torchrun), process k takes items k, k + P, k + 2P, ... and appends to its
    own `results-<k>-of-<P>.jsonl`; the new records are gathered on every process and the report is built from
    all records. Only the main process writes `run.json`.

    Args:
        items: the images to score (`inputs.collect_items` builds them from a folder).
        config: the evaluation settings.
        out_dir: where per-image records live (resumable); None keeps them in memory only.
        overwrite: discard the records already in `out_dir`.
        progress: show a progress bar (main process only).
        perception: a ready `Perception` for image items.
        on_records: called with each batch of new records after they are stored (progress reporting, tests).
    """
    if not items:
        raise ValueError("nothing to evaluate: no images")
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"image key {duplicate!r} appears twice; keys name one image each")
    with_images = [item.detections is None for item in items]
    if any(with_images) and not all(with_images):
        raise ValueError("items must all carry images or all carry precomputed detections, not a mix")

    state = distributed_state()
    rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
    is_main = rank == 0

    store, previous = None, {}
    if out_dir is not None:
        # Every process checks (so that all stop together on a mismatch), then the main process pins the settings
        # (clearing old results with `overwrite`) before anyone reads the results.
        check_run_settings(out_dir, config.settings(), overwrite=overwrite, write=False)
        if state is not None:
            state.wait_for_everyone()
        if is_main:
            check_run_settings(out_dir, config.settings(), overwrite=overwrite)
        if state is not None:
            state.wait_for_everyone()
        previous = {r["key"]: r for r in read_results(out_dir) if r.get("version") == RECORD_VERSION}
        store = ResultsStore(Path(out_dir) / results_file_name(rank, world))

    def intact(record: Mapping) -> bool:
        """A stored record the report can use: undetermined with its reason, or a score for every protocol."""
        if record.get("reason") is not None:
            return isinstance(record["reason"], str)
        scores = record.get("scores")
        return isinstance(scores, Mapping) and all(isinstance(scores.get(p), Mapping) for p in config.protocols)

    damaged = sorted(key for key, record in previous.items() if not intact(record))
    if damaged and is_main:
        from diffusers.utils import logging  # imported here: diffusers takes seconds to import

        logging.get_logger(__name__).warning(
            f"{len(damaged)} stored result(s) are damaged and are computed again (e.g. {damaged[:3]})"
        )
    for key in damaged:
        del previous[key]

    def done(item: EvaluationItem) -> bool:
        record = previous.get(item.key)
        return record is not None and record.get("prompt") == item.prompt

    todo = [item for item in items[rank::world] if not done(item)]
    new_records: list[dict] = []
    if todo:
        if all(with_images) and perception is None:
            from ..perception import Perception

            perception = Perception(
                detector=config.detector,
                depth=config.depth_model,
                batch_size=config.batch_size,
                progress=False,
                detector_kwargs=config.detector_options,
            )
            # load the models before the progress bar starts: a bad option fails first
            _ = perception.detector
            _ = perception.depth_estimator
        from tqdm.auto import tqdm

        already = len(items) - len([i for i in items if not done(i)])
        with tqdm(
            total=len(items) if world == 1 else len(todo),
            initial=already if world == 1 else 0,
            desc="spatial consistency",
            unit="img",
            disable=not (progress and is_main),
        ) as bar:
            for start in range(0, len(todo), config.batch_size):
                batch = todo[start : start + config.batch_size]
                records = score_records(batch, config, perception=perception)
                if store is not None:
                    store.append(records)
                new_records.extend(records)
                if on_records is not None:
                    on_records(records)
                bar.update(len(batch))

    if state is not None:
        from accelerate.utils import gather_object

        new_records = gather_object(new_records)
    by_key = {**previous, **{r["key"]: r for r in new_records}}
    records = [by_key[item.key] for item in items if item.key in by_key]
    missing = [item.key for item in items if item.key not in by_key]
    if missing:  # only when another process's records were neither gathered nor on a shared disk
        raise RuntimeError(f"{len(missing)} images have no result after the run (e.g. {missing[:3]})")
    # The item's grouping is current even when its record was computed by an earlier run.
    for record, item in zip(records, items):
        record["prompt_id"] = item.prompt_id
    return build_report(records, config)


# --------------------------------------------------------------------------------------------------------------
# One batch: perception, then every protocol
# --------------------------------------------------------------------------------------------------------------


def _new_record(item: EvaluationItem) -> dict:
    return {
        "version": RECORD_VERSION,
        "key": item.key,
        "prompt": item.prompt,
        "prompt_id": item.prompt_id,
        "image_size": list(item.image_size) if item.image_size is not None else None,
        "detections": [],
        "depth_source": None,
        "subject_label": None,
        "object_label": None,
        "relation": None,
        "subject": None,
        "object": None,
        "reason": None,
        "scores": {},
        "skipped": {},
        "detected": {},
    }


def _plain_detections(detections: Sequence[Any]) -> list[dict]:
    """Detections without masks (records are JSON); scoring still gets the masks."""
    out = []
    for d in detections:
        if isinstance(d, Mapping):
            out.append({k: d[k] for k in ("label", "score", "box") if k in d})
        else:
            out.append({"label": d.label, "score": d.score, "box": list(d.box)})
    return out


def _labels_from_detections(prompt: SpatialPrompt, detections: Sequence[Any]) -> tuple[str, str]:
    """Detector labels for the prompt's nouns among the labels present in the image, else the nouns themselves."""
    from ..perception.labels import match_noun

    present = sorted({d["label"] for d in detections if isinstance(d, Mapping) and isinstance(d.get("label"), str)})
    subject = (match_noun(prompt.subject_noun, present) if present else None) or prompt.subject_noun
    obj = (match_noun(prompt.object_noun, present) if present else None) or prompt.object_noun
    return subject, obj


def score_records(items: Sequence[EvaluationItem], config: EvaluationConfig, *, perception: Any = None) -> list[dict]:
    """Perceive (image items) and score a batch of items under every protocol of `config`; one record per item.

    A record holds the key, prompt, the prompt's relation and nouns, detections (without masks), image size, the
    detector labels used for the nouns, `reason` (why the whole image is undetermined, else None), `scores`
    (protocol -> `ImageScore.to_dict()`), `skipped` (protocol -> why that protocol cannot judge the image, e.g.
    T2I-CompBench 3D without a depth map) and `detected` (protocol -> the relation the objects actually stand in,
    "none", "objects missing" or "undetermined": the columns of the report's confusion matrix).
    """
    records = [_new_record(item) for item in items]
    # What each protocol needs per scorable item: (record, prompt, detections, depth, size, subject, object).
    ready: list[tuple] = []
    if items and items[0].detections is None:
        results = perception.run([item.image for item in items], [item.prompt for item in items])
        for record, result in zip(records, results):
            record["image_size"] = list(result.image_size) if result.image_size is not None else None
            record["detections"] = _plain_detections(result.detections)
            record["depth_source"] = result.depth_source
            if result.undetermined_reason is not None:
                record["reason"] = result.undetermined_reason
                continue
            record["subject_label"], record["object_label"] = result.subject_label, result.object_label
            ready.append(
                (record, result.prompt, result.detections, result.depth, result.image_size)
                + (result.subject_label, result.object_label)
            )
    else:
        for record, item in zip(records, items):
            if isinstance(item.detections, (str, bytes, Mapping)) or not isinstance(item.detections, Sequence):
                record["reason"] = f"detections must be a list of detections, got {type(item.detections).__name__}"
                continue
            record["detections"] = _plain_detections(d for d in item.detections if isinstance(d, Mapping))
            try:
                prompt = resolve_prompt(item.prompt)
            except ValueError as e:
                record["reason"] = str(e)
                continue
            subject, obj = _labels_from_detections(prompt, item.detections)
            record["subject_label"], record["object_label"] = subject, obj
            record["depth_source"] = "given" if item.depth is not None else "none"
            ready.append((record, prompt, item.detections, item.depth, item.image_size, subject, obj))

    for entry in ready:
        entry[0].update(relation=entry[1].relation, subject=entry[1].subject_noun, object=entry[1].object_noun)
    for protocol in config.protocols:
        options = config.protocol_options.get(protocol, {})
        outcomes = _score_each(protocol, ready, options, [entry[1] for entry in ready])
        for entry, outcome in zip(ready, outcomes):
            if isinstance(outcome, str):
                entry[0]["skipped"][protocol] = outcome
            else:
                entry[0]["scores"][protocol] = outcome.to_dict()
        _detected_relations(protocol, [e for e, o in zip(ready, outcomes) if not isinstance(o, str)], options)
    for entry in ready:
        record = entry[0]
        if not record["scores"]:  # no protocol could read it (a malformed detection): the image is undetermined
            record["reason"] = next(iter(record["skipped"].values()))
            record["skipped"], record["detected"] = {}, {}
    return records


def _score_each(protocol: str, entries: list[tuple], options: Mapping[str, Any], prompts: list) -> list:
    """`score_images` on the whole batch; if it refuses the batch, on each item, so only the culprits fail."""
    if not entries:
        return []

    def run(rows: list[tuple], texts: list) -> list:
        return score_images(
            texts,
            [row[2] for row in rows],
            protocol=protocol,
            depths=[row[3] for row in rows],
            image_sizes=[row[4] for row in rows],
            subject_label=[row[5] for row in rows],
            object_label=[row[6] for row in rows],
            **options,
        )

    try:
        return run(entries, prompts)
    except ValueError:
        pass
    outcomes = []
    for entry, prompt in zip(entries, prompts):
        try:
            outcomes.append(run([entry], [prompt])[0])
        except ValueError as e:
            outcomes.append(_ONE_IMAGE_PREFIX_RE.sub("", str(e)))  # "image 0: ..." names the batch of one
    return outcomes


def _detected_relations(protocol: str, entries: list[tuple], options: Mapping[str, Any]) -> None:
    """Store, per record, the relation the protocol sees between the objects: the stated one when it holds, else
    the first other relation of its family (2D, 3D, next to) that the same protocol judges to hold."""
    supported = get_protocol(protocol).relations
    alternatives: list[tuple[tuple, SpatialPrompt]] = []
    for entry in entries:
        record, prompt = entry[0], entry[1]
        score = record["scores"][protocol]
        if score["correct"] is None:
            record["detected"][protocol] = UNDETERMINED
        elif score["correct"]:
            record["detected"][protocol] = prompt.relation
        elif not score["objects_found"]:
            record["detected"][protocol] = OBJECTS_MISSING
        else:
            record["detected"][protocol] = NO_RELATION
            family = next(f for f in _FAMILIES if prompt.relation in f)
            for relation in family:
                if relation != prompt.relation and relation in supported:
                    alt = SpatialPrompt.from_parts(
                        prompt.subject, relation, prompt.object, prefix=prompt.prefix, suffix=prompt.suffix
                    )
                    alternatives.append((entry, alt))
    if not alternatives:
        return
    outcomes = _score_each(protocol, [entry for entry, _ in alternatives], options, [alt for _, alt in alternatives])
    for (entry, alt), outcome in zip(alternatives, outcomes):
        record = entry[0]
        if not isinstance(outcome, str) and outcome.correct and record["detected"][protocol] == NO_RELATION:
            record["detected"][protocol] = alt.relation
