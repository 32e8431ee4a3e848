"""Per-image JSONL results: appended as computed, a killed run resumes, other settings are refused."""

import json

import pytest

from diffusers_spatial.metric import (
    EvaluationConfig,
    EvaluationItem,
    ResultsStore,
    check_run_settings,
    evaluate_detections,
    evaluate_items,
    read_results,
)

CAT = {"label": "cat", "score": 0.9, "box": [0, 0, 10, 10]}
DOG = {"label": "dog", "score": 0.9, "box": [50, 0, 60, 10]}


def _items(n):
    prompts = ["a cat to the left of a dog", "a dog to the left of a cat", "a cat above a dog"]
    return [
        EvaluationItem(key=f"img{i}", prompt=prompts[i % 3], prompt_id=str(i % 3), detections=[CAT, DOG])
        for i in range(n)
    ]


def test_store_appends_and_drops_a_partial_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    store.append([{"key": "a", "x": 1}, {"key": "b", "x": 2.5}])
    with open(path, "a") as f:
        f.write('{"key": "c", "x"')  # killed mid-write
    store = ResultsStore(path)
    assert [r["key"] for r in store] == ["a", "b"]
    assert path.read_text().endswith("\n")
    store.append([{"key": "c", "x": 3}])
    assert store.keys() == {"a", "b", "c"}


def test_store_refuses_a_corrupt_line_in_the_middle(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(ValueError, match=r"results.jsonl:2: corrupt results line"):
        list(ResultsStore(path))


def test_run_settings_are_pinned(tmp_path):
    check_run_settings(tmp_path, {"protocols": ["visor"], "detector": "embedded"})
    ResultsStore(tmp_path / "results.jsonl").append([{"key": "a"}])
    check_run_settings(tmp_path, {"protocols": ["visor"], "detector": "embedded"})  # same settings: resume
    with pytest.raises(ValueError, match=r"detector: 'embedded' -> 'visor'"):
        check_run_settings(tmp_path, {"protocols": ["visor"], "detector": "visor"})
    with pytest.raises(ValueError, match=r"detector: 'embedded' -> 'visor'"):  # the other processes only check
        check_run_settings(tmp_path, {"protocols": ["visor"], "detector": "visor"}, write=False)
    check_run_settings(tmp_path / "new", {"detector": "visor"}, write=False)
    assert not (tmp_path / "new").exists()
    check_run_settings(tmp_path, {"protocols": ["visor"], "detector": "visor"}, overwrite=True)
    assert read_results(tmp_path) == []
    assert json.loads((tmp_path / "run.json").read_text())["detector"] == "visor"


def test_settings_of_a_run_that_computed_nothing_bind_nothing(tmp_path):
    # a run that failed before its first result (say, a detector that would not load) leaves run.json only
    check_run_settings(tmp_path, {"detector": "no-such-detector"})
    check_run_settings(tmp_path, {"detector": "embedded"})  # the corrected rerun is not refused
    assert json.loads((tmp_path / "run.json").read_text()) == {"detector": "embedded"}
    ResultsStore(tmp_path / "results.jsonl").append([{"key": "a"}])
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"run.json is damaged .*--overwrite"):
        check_run_settings(tmp_path, {"detector": "embedded"})


def test_killed_run_resumes_without_recomputing(tmp_path):
    config = EvaluationConfig(protocols=["visor", "esplora"], batch_size=2)
    items = _items(7)
    full = evaluate_items(items, config, out_dir=tmp_path / "full", progress=False)

    out = tmp_path / "run"
    batches = []

    def stop_after_two_batches(records):
        batches.append([r["key"] for r in records])
        if len(batches) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate_items(items, config, out_dir=out, progress=False, on_records=stop_after_two_batches)
    assert sorted(ResultsStore(out / "results.jsonl").keys()) == ["img0", "img1", "img2", "img3"]
    with open(out / "results.jsonl", "a") as f:
        f.write('{"key": "img4", "vers')  # and a line cut short by the kill

    resumed = []
    report = evaluate_items(items, config, out_dir=out, progress=False, on_records=lambda r: resumed.extend(r))
    assert [r["key"] for r in resumed] == ["img4", "img5", "img6"]
    assert report == full
    assert len(read_results(out)) == 7


def test_a_damaged_stored_record_is_computed_again_not_left_out(tmp_path):
    config = EvaluationConfig(protocols=["visor", "esplora"], batch_size=2)
    items = _items(4)
    full = evaluate_items(items, config, out_dir=tmp_path / "full", progress=False)
    out = tmp_path / "run"
    evaluate_items(items, config, out_dir=out, progress=False)
    lines = (out / "results.jsonl").read_text().splitlines()
    record = json.loads(lines[1])
    del record["scores"]["esplora"]  # valid JSON, but the report could not use it
    (out / "results.jsonl").write_text("\n".join([lines[0], json.dumps(record), *lines[2:]]) + "\n")
    again = []
    report = evaluate_items(items, config, out_dir=out, progress=False, on_records=lambda r: again.extend(r))
    assert [r["key"] for r in again] == [record["key"]]
    assert report == full  # counts and figures over the same four images


def test_a_changed_prompt_is_scored_again_and_other_settings_refused(tmp_path):
    config = EvaluationConfig(protocols=["visor"])
    items = _items(3)
    evaluate_items(items, config, out_dir=tmp_path, progress=False)
    items[1].prompt = "a dog to the right of a cat"
    again = []
    report = evaluate_items(items, config, out_dir=tmp_path, progress=False, on_records=lambda r: again.extend(r))
    assert [r["key"] for r in again] == ["img1"]
    assert report["summary"]["visor"]["VISOR_uncond"] == pytest.approx(100.0 * 2 / 3)
    with pytest.raises(ValueError, match="holds results computed with other settings"):
        evaluate_items(items, EvaluationConfig(protocols=["geneval"]), out_dir=tmp_path, progress=False)
    report = evaluate_items(
        items, EvaluationConfig(protocols=["geneval"]), out_dir=tmp_path, overwrite=True, progress=False
    )
    assert list(report["summary"]) == ["geneval"]


def test_library_entry_point_resumes_too(tmp_path):
    detections, prompts = [[CAT, DOG]] * 3, ["a cat to the left of a dog"] * 3
    first = evaluate_detections(detections, prompts, protocols="visor", out_dir=tmp_path, progress=False)
    assert len(read_results(tmp_path)) == 3
    assert evaluate_detections(detections, prompts, protocols="visor", out_dir=tmp_path, progress=False) == first
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3  # nothing appended the second time


def test_items_must_be_unique_and_of_one_kind():
    with pytest.raises(ValueError, match="image key 'img0' appears twice"):
        evaluate_items(_items(1) * 2, EvaluationConfig(), progress=False)
    mixed = _items(1) + [EvaluationItem(key="x", prompt="a cat above a dog", prompt_id="x", image="x.png")]
    with pytest.raises(ValueError, match="not a mix"):
        evaluate_items(mixed, EvaluationConfig(), progress=False)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_items([], EvaluationConfig(), progress=False)


def test_an_unchanged_report_is_not_redrawn(tmp_path):
    from diffusers_spatial.metric import write_report

    report = evaluate_items(_items(4), EvaluationConfig(protocols=["visor", "esplora"]), progress=False)
    first = write_report(report, tmp_path)
    plot = first["order_bias"]
    stamp = plot.stat().st_mtime_ns
    again = write_report(report, tmp_path)  # a resumed run with nothing new: the figures are kept as drawn
    assert plot.stat().st_mtime_ns == stamp and set(again) == set(first)
    changed = {**report, "counts": {**report["counts"], "images": 5}}
    write_report(changed, tmp_path)
    assert plot.stat().st_mtime_ns != stamp
