"""Tests of the evaluate module as a Space runs it: loaded from this folder by path, and its widget's function."""

import importlib.util
import os

import evaluate
import pytest
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))

DOG = {"label": "dog", "score": 0.9, "box": [10, 40, 60, 90]}
BENCH = {"label": "bench", "score": 0.8, "box": [120, 30, 200, 100]}


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(HERE)


def test_loads_from_this_folder_with_typed_features(metric):
    assert metric.name == "spatial_consistency"
    assert isinstance(metric.features, list) and len(metric.features) == 2  # images, or precomputed detections
    assert "VISOR" in metric.description and "predictions" in metric.inputs_description
    assert "gokhale2022benchmarking" in metric.citation


def test_precomputed_detections_exact_figures(metric):
    predictions = [
        {"detections": [DOG, BENCH], "image_size": [256, 128]},  # dog left of bench
        {"detections": [BENCH, {**DOG, "box": [210, 40, 250, 90]}], "image_size": [256, 128]},  # dog right of bench
        {"detections": [BENCH], "image_size": [256, 128]},  # no dog
    ]
    prompts = ["a dog to the left of a bench"] * 3
    results = metric.compute(predictions=predictions, references=prompts, protocols="visor,geneval")
    report = results["report"]
    assert results["visor_oa"] == pytest.approx(200 / 3) and results["geneval_accuracy"] == pytest.approx(1 / 3)
    assert all(isinstance(v, float) for k, v in results.items() if k != "report")
    visor = report["summary"]["visor"]
    assert visor["OA"] == pytest.approx(200 / 3)
    assert visor["VISOR_cond"] == pytest.approx(50.0)
    assert visor["VISOR_uncond"] == pytest.approx(100 / 3)
    assert visor["VISOR_1"] == 100.0 and visor["VISOR_2"] == 0.0  # one prompt, one correct image
    assert report["summary"]["geneval"]["accuracy"] == pytest.approx(1 / 3)
    assert report["counts"] == {"images": 3, "prompts": 1, "scored": 3, "undetermined": 0}


def test_configuration_name_selects_one_protocol():
    report = evaluate.load(HERE, "geneval").compute(
        predictions=[{"detections": [DOG, BENCH], "image_size": [256, 128]}],
        references=["a dog left of a bench"],
    )["report"]
    assert list(report["summary"]) == ["geneval"] and report["summary"]["geneval"]["accuracy"] == 1.0


def test_unknown_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown configuration 'visr'"):
        evaluate.load(HERE, "visr")


def _load_app():
    spec = importlib.util.spec_from_file_location("spatial_consistency_app", os.path.join(HERE, "app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # no gradio needed until build_demo()
    return module


def test_widget_predict_checks_its_input(tmp_path):
    app = _load_app()
    path = tmp_path / "blank.png"
    Image.new("RGB", (64, 48), (120, 120, 120)).save(path)
    assert app.predict([], "a dog left of a bench")[0] == "Upload at least one image."
    message, plots = app.predict([str(path)] * 2, "a\nb\nc")
    assert "one prompt per image" in message and plots == []
    markdown, plots = app.predict([str(path)], "a dog to the left of a bench", ["visor"])
    assert markdown.startswith("# Spatial consistency report") and len(plots) == 3
    assert all(p.endswith(".png") and os.path.getsize(p) > 0 for p in plots)


def test_malformed_predictions_are_undetermined_or_named(metric):
    import numpy as np

    prompt = ["a dog to the left of a bench"]
    results = metric.compute(predictions=[{"detections": [DOG, BENCH]}], references=prompt, protocols="esplora")
    assert results["esplora_accuracy"] == 1.0  # image_size is optional, as documented
    no_box = {"detections": [{"label": "dog", "score": 0.9}, BENCH], "image_size": [256, 128]}
    report = metric.compute(predictions=[no_box], references=prompt, protocols="esplora")["report"]
    assert report["counts"]["undetermined"] == 1 and "box" in report["undetermined"]["images"][0]["reason"]
    with pytest.raises(ValueError, match=r"predictions\[0\] is None"):
        metric.compute(predictions=[None], references=prompt)
    for array in (np.zeros((32, 32, 3), np.float32), np.zeros((30,), np.uint8)):
        with pytest.raises(ValueError, match=r"predictions\[0\]: an image array must be H x W"):
            metric.compute(predictions=[array], references=prompt)
