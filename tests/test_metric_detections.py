"""The metric library on precomputed detections: exact figures, the report's sections, bad input, TORE's input."""

import json

import numpy as np
import pytest

from diffusers_spatial.metric import EvaluationConfig, evaluate_detections, render_markdown, write_report
from diffusers_spatial.tore import Tore

CAT_LEFT = {"label": "cat", "score": 0.9, "box": [0, 0, 10, 10]}
CAT_RIGHT = {"label": "cat", "score": 0.9, "box": [50, 0, 60, 10]}
DOG_LEFT = {"label": "dog", "score": 0.8, "box": [0, 0, 10, 10]}
DOG_RIGHT = {"label": "dog", "score": 0.8, "box": [50, 0, 60, 10]}

# Two prompts stating one fact in both object orders, two images each:
#   0: cat left, dog right -> "cat left of dog" right     1: dog left, cat right -> wrong
#   2: cat left, dog right -> "dog right of cat" right    3: cat only -> objects missing
DETECTIONS = [[CAT_LEFT, DOG_RIGHT], [DOG_LEFT, CAT_RIGHT], [CAT_LEFT, DOG_RIGHT], [CAT_LEFT]]
PROMPTS = ["a cat to the left of a dog"] * 2 + ["a dog to the right of a cat"] * 2


@pytest.fixture(scope="module")
def report():
    return evaluate_detections(DETECTIONS, PROMPTS, progress=False)


def test_benchmark_figures_side_by_side(report):
    visor = report["summary"]["visor"]
    assert visor["OA"] == pytest.approx(75.0)
    assert visor["VISOR_cond"] == pytest.approx(200 / 3)
    assert visor["VISOR_uncond"] == pytest.approx(50.0)
    assert (visor["VISOR_1"], visor["VISOR_2"]) == (100.0, 0.0)  # each prompt has exactly one correct image
    assert report["summary"]["geneval"] == {
        "accuracy": 0.5,
        "prompt_accuracy": 1.0,
        "n_images": 4,
        "undetermined": 0,
    }
    assert report["summary"]["esplora"]["accuracy"] == 0.5
    assert report["counts"] == {"images": 4, "prompts": 2, "scored": 4, "undetermined": 0}
    assert report["complete"] is True


def test_relations_orders_objects_counterfactual(report):
    esplora = report["protocols"]["esplora"]
    assert esplora["per_relation"] == {
        "left_of": {"n": 2, "correct": 1, "rate": 0.5},
        "right_of": {"n": 2, "correct": 1, "rate": 0.5},
    }
    # "cat ... dog" is the alphabetical (as written) order, "dog ... cat" the swapped one.
    assert esplora["per_order"] == {
        "as_written": {"n": 2, "correct": 1, "rate": 0.5},
        "swapped": {"n": 2, "correct": 1, "rate": 0.5},
    }
    assert esplora["object_accuracy"] == {"subject": 0.75, "object": 1.0, "both": 0.75}  # image 3 lacks its subject
    assert esplora["counterfactual"]["n_pairs"] == 1
    assert esplora["counterfactual"]["consistency"] == pytest.approx(0.25)


def test_confusion_expected_vs_detected(report):
    confusion = report["protocols"]["esplora"]["confusion"]
    assert confusion["rows"] == ["left_of", "right_of"]
    assert confusion["columns"] == ["left_of", "right_of", "objects missing"]
    assert confusion["matrix"] == [[1, 1, 0], [0, 1, 1]]  # image 1 shows "right of"; image 3 has no dog


def test_bias_table_feeds_tore(report):
    assert report["bias_table"] == report["protocols"]["esplora"]["bias_table"]
    tore = Tore.from_report(json.loads(json.dumps(report)), min_count=1)
    assert isinstance(tore, Tore)


def test_out_of_scope_and_protocol_that_cannot_judge():
    detections = [[CAT_LEFT, DOG_RIGHT]] * 2
    prompts = ["a cat to the left of a dog", "a cat in front of a dog"]
    report = evaluate_detections(detections, prompts, progress=False)
    three_d = report["protocols"]["t2i_compbench_3d"]
    assert three_d["out_of_scope"] == 1  # "left of" is not a 3D relation
    assert three_d["not_scored"] == 1  # "in front of" needs a depth map under T2I-CompBench 3D
    assert any("depth" in reason for reason in three_d["undetermined_reasons"])
    assert report["summary"]["t2i_compbench_3d"]["score"] is None
    assert report["protocols"]["visor"]["out_of_scope"] == 1
    assert report["protocols"]["esplora"]["n_images"] == 2  # esplora judges in front of without depth (cues)
    assert report["counts"]["undetermined"] == 0


def test_depth_maps_let_t2i_compbench_3d_score():
    depth = np.zeros((20, 64), dtype=np.float32)
    depth[:, :32] = 1.0  # the left half (the cat) is nearer
    cat, dog = {**CAT_LEFT, "box": [0, 0, 40, 20]}, {**DOG_RIGHT, "box": [20, 0, 60, 20]}
    report = evaluate_detections(
        [[cat, dog]],
        ["a cat in front of a dog"],
        depth=[depth],
        image_sizes=[(64, 20)],
        protocols="t2i_compbench_3d,esplora",
        progress=False,
    )
    assert report["protocols"]["t2i_compbench_3d"]["n_images"] == 1
    assert report["protocols"]["t2i_compbench_3d"]["not_scored"] == 0
    assert report["summary"]["esplora"]["accuracy"] == 1.0


def test_per_image_problems_are_undetermined_with_reasons():
    detections = [
        [CAT_LEFT, DOG_RIGHT],
        [CAT_LEFT, DOG_RIGHT],
        [CAT_LEFT, {"label": "dog", "score": 0.8, "box": [60, 0, 50, 10]}],  # x2 < x1
        "not a list",
    ]
    prompts = ["a cat to the left of a dog", "a sunny day", "a cat to the left of a dog", "a cat left of a dog"]
    report = evaluate_detections(detections, prompts, protocols="visor", progress=False)
    assert report["counts"] == {"images": 4, "prompts": 3, "scored": 1, "undetermined": 3}
    reasons = {item["key"]: item["reason"] for item in report["undetermined"]["images"]}
    assert "no relation phrase" in reasons["1"]
    assert "box" in reasons["2"] and "60" in reasons["2"]
    assert "must be a list" in reasons["3"]
    assert report["summary"]["visor"]["VISOR_uncond"] == 100.0
    assert (
        "prompt <prompt> is not a spatial prompt: it contains no relation phrase" in report["undetermined"]["reasons"]
    )


def test_nouns_map_to_detector_labels():
    puppy_sofa = [
        [
            {"label": "dog", "score": 0.9, "box": [0, 0, 10, 10]},
            {"label": "couch", "score": 0.9, "box": [50, 0, 60, 10]},
        ]
    ]
    report = evaluate_detections(puppy_sofa, ["a puppy to the left of a sofa"], protocols="visor", progress=False)
    assert report["summary"]["visor"]["VISOR_uncond"] == 100.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"protocols": "visr"}, r"unknown protocol\(s\) \['visr'\]"),
        ({"protocol_options": {"visor": {"treshold": 0.1}}}, r"unknown option\(s\) \['treshold'\]"),
        ({"protocol_options": {"visor": {"score_threshold": -1}}}, "score_threshold"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"primary_protocol": "geneval", "protocols": "visor"}, "primary_protocol 'geneval'"),
        ({"images_per_prompt": 3}, "not a multiple of images_per_prompt=3"),
    ],
)
def test_bad_settings_fail_before_any_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_detections(DETECTIONS, PROMPTS, progress=False, **kwargs)


def test_bad_lengths_fail_before_any_work():
    with pytest.raises(ValueError, match="got 4 predictions but 3 prompts"):
        evaluate_detections(DETECTIONS, PROMPTS[:3], progress=False)
    with pytest.raises(ValueError, match="got 4 predictions but 1 depth"):
        evaluate_detections(DETECTIONS, PROMPTS, depth=[None], progress=False)
    with pytest.raises(ValueError, match="share one prompt"):
        evaluate_detections(DETECTIONS, PROMPTS[1:] + PROMPTS[:1], images_per_prompt=2, progress=False)


def test_images_per_prompt_groups_consecutive_images():
    report = evaluate_detections(DETECTIONS, PROMPTS, images_per_prompt=2, protocols="visor", progress=False)
    assert report["counts"]["prompts"] == 2


def test_config_object_and_keyword_settings_agree():
    config = EvaluationConfig(protocols=["geneval"])
    a = evaluate_detections(DETECTIONS, PROMPTS, config, progress=False)
    b = evaluate_detections(DETECTIONS, PROMPTS, protocols="geneval", progress=False)
    assert a == b
    with pytest.raises(ValueError, match="either config or keyword settings"):
        evaluate_detections(DETECTIONS, PROMPTS, config, protocols="visor", progress=False)


def test_write_report_files(report, tmp_path):
    written = write_report(report, tmp_path)
    assert set(written) == {
        "report.json",
        "report.md",
        "accuracy_per_relation",
        "order_bias",
        *(f"confusion_{p}" for p in report["protocols"]),
    }
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(report))
    markdown = (tmp_path / "report.md").read_text()
    assert markdown == render_markdown(report, {k: v.name for k, v in written.items() if not k.startswith("report")})
    assert "| OA | VISOR_cond | VISOR_uncond |" in markdown and "![order bias](order_bias.png)" in markdown
    for name, path in written.items():
        if not name.startswith("report"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp*"))
