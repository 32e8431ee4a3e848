"""The metric end to end on real photos (collages of real crops, embedded detector): library, CLI, resume, bad
input, and a 2-process sharded run. Skips, saying why, when the photos' packages are not installed."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from diffusers_spatial.cli import main
from diffusers_spatial.metric import evaluate_images, read_results
from diffusers_spatial.metric import evaluation as evaluation_module
from diffusers_spatial.photos import PhotoUnavailableError, crop_object, make_collage

# (layout, prompt, true?) - the embedded detector finds these crops reliably (bird 0.6-0.8, motorcycle 0.5-0.7,
# person 0.5-0.7).
CASES = [
    ("bird|motorcycle", "a bird to the left of a motorcycle", True),
    ("bird|motorcycle", "a motorcycle to the right of a bird", True),
    ("bird|motorcycle", "a motorcycle to the left of a bird", False),
    ("person/bird", "a person above a bird", True),
    ("person/bird", "a bird above a person", False),
]


def _collages():
    try:
        bird = crop_object("eagle", "bird", height=170)
        motorcycle = crop_object("motorcycle_left", "motorcycle", height=170)
        person = crop_object("astronaut", "person", height=170)
    except PhotoUnavailableError as e:
        pytest.skip(f"real photos unavailable: {e}")
    side = [(10, 40), (bird.width + 80, 40)]
    return {
        "bird|motorcycle": make_collage(
            [("bird", bird), ("motorcycle", motorcycle)], side, (bird.width + motorcycle.width + 100, 260)
        )[0],
        "person/bird": make_collage(
            [("person", person), ("bird", bird)], [(10, 10), (10, 200)], (bird.width + 20, 390)
        )[0],
    }


@pytest.fixture(scope="module")
def collages():
    return _collages()


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, collages):
    """Images named by their prompts, plus an unreadable file and an image whose prompt has no relation."""
    folder = tmp_path_factory.mktemp("photos")
    for layout, prompt, _ in CASES:
        collages[layout].save(folder / f"{prompt}_0.png")
    (folder / "a cat to the left of a dog_0.png").write_bytes(b"not a png")
    collages["person/bird"].save(folder / "a sunny beach_0.png")
    return folder


@pytest.fixture(scope="module")
def cli_run(photo_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    assert main(["evaluate", str(photo_folder), "--out", str(out), "--batch-size", "3", "--quiet"]) == 0
    return out


def test_real_photos_through_the_embedded_detector(collages):
    images = [collages[layout] for layout, _, _ in CASES]
    prompts = [prompt for _, prompt, _ in CASES]
    report = evaluate_images(images, prompts, protocols="visor,geneval,esplora", progress=False)
    expected = [truth for _, _, truth in CASES]
    accuracy = sum(expected) / len(expected)
    assert report["summary"]["visor"]["OA"] == 100.0
    assert report["summary"]["visor"]["VISOR_uncond"] == pytest.approx(100 * accuracy)
    assert report["summary"]["geneval"]["accuracy"] == pytest.approx(accuracy)
    assert report["summary"]["esplora"]["accuracy"] == pytest.approx(accuracy)
    confusion = report["protocols"]["esplora"]["confusion"]
    assert dict(zip(confusion["rows"], confusion["matrix"])) == {  # the wrong prompts show the converse relation
        "left_of": [1, 1, 0, 0],
        "right_of": [0, 1, 0, 0],
        "above": [0, 0, 1, 1],
    }
    assert confusion["columns"] == ["left_of", "right_of", "above", "below"]
    # Arrays give the same figures as PIL images.
    as_arrays = evaluate_images(
        [np.asarray(i) for i in images], prompts, protocols="visor,geneval,esplora", progress=False
    )
    assert as_arrays["summary"] == report["summary"]


def test_cli_writes_report_plots_and_results(cli_run, photo_folder):
    names = sorted(p.name for p in cli_run.iterdir())
    pngs = ["accuracy_per_relation.png", "order_bias.png", "contact_sheet.png"]
    pngs += [f"confusion_{p}.png" for p in ("esplora", "geneval", "t2i_compbench_2d", "t2i_compbench_3d", "visor")]
    assert names == sorted(["report.json", "report.md", "results.jsonl", "run.json", *pngs])
    for name in pngs:
        data = (cli_run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    report = json.loads((cli_run / "report.json").read_text())
    assert report["counts"] == {"images": 7, "prompts": 7, "scored": 5, "undetermined": 2}
    assert report["summary"]["visor"]["VISOR_uncond"] == pytest.approx(60.0)
    reasons = {item["key"]: item["reason"] for item in report["undetermined"]["images"]}
    assert "not an image file" in reasons["a cat to the left of a dog_0.png"]
    assert "not a spatial prompt" in reasons["a sunny beach_0.png"]
    assert len((cli_run / "results.jsonl").read_text().splitlines()) == 7
    markdown = (cli_run / "report.md").read_text()
    assert "## Images left out (undetermined)" in markdown and "![accuracy per relation]" in markdown
    assert "![images, boxes and verdicts](contact_sheet.png)" in markdown


def test_contact_sheet_skips_what_cannot_be_drawn(tmp_path):
    from PIL import Image

    from diffusers_spatial.metric.contact_sheet import plot_contact_sheet

    Image.new("RGB", (40, 30), "white").save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    record = {"prompt": "a cat left of a dog", "detections": [], "subject_label": "cat", "object_label": "dog"}
    scored = {"visor": {"correct": False, "details": {}}, "esplora": {"correct": None, "details": {"reason": "why"}}}
    records = [
        {**record, "key": "broken.png", "reason": "not an image file", "scores": {}},
        {**record, "key": "ok.png", "reason": None, "scores": scored},
        {**record, "key": "gone.png", "reason": None, "scores": scored},  # no path given: left out
    ]
    paths = {"broken.png": tmp_path / "broken.png", "ok.png": tmp_path / "ok.png"}
    sheet = plot_contact_sheet(records, paths, ["visor", "esplora"], tmp_path / "sheet.png")
    with Image.open(sheet) as image:
        assert image.width > image.height > 100  # one row, two columns


def test_cli_resumes_after_a_partial_results_file(cli_run, photo_folder, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    shutil.copytree(cli_run, out)
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:3]) + lines[3][:40])  # killed while writing line 4
    scored = []
    original = evaluation_module.score_records

    def counting(items, *args, **kwargs):
        scored.extend(item.key for item in items)
        return original(items, *args, **kwargs)

    monkeypatch.setattr(evaluation_module, "score_records", counting)
    assert main(["evaluate", str(photo_folder), "--out", str(out), "--batch-size", "3", "--quiet"]) == 0
    assert len(scored) == 4 and not set(scored) & {json.loads(line)["key"] for line in lines[:3]}
    assert json.loads((out / "report.json").read_text()) == json.loads((cli_run / "report.json").read_text())


def test_interrupted_cli_still_reports_what_was_scored(photo_folder, tmp_path, monkeypatch):
    calls = []
    original = evaluation_module.score_records

    def interrupt_second_batch(items, *args, **kwargs):
        calls.append(len(items))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(items, *args, **kwargs)

    monkeypatch.setattr(evaluation_module, "score_records", interrupt_second_batch)
    with pytest.raises(KeyboardInterrupt):
        main(["evaluate", str(photo_folder), "--out", str(tmp_path), "--batch-size", "3", "--quiet"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["complete"] is False and report["counts"]["images"] == 3
    assert "Partial report" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompts", "PROMPTS"], "found 7 images"),
        (["--protocol", "visr"], "unknown protocol(s) ['visr']"),
        (["--option", "visor.treshold=0.2"], "unknown option(s) ['treshold'] for protocol 'visor'"),
        (["--detector", "/no/such/detector"], "detector model path '/no/such/detector' does not exist"),
    ],
)
def test_cli_bad_input_fails_clearly_before_scoring(photo_folder, tmp_path, capsys, extra, message):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat above a dog\na cup left of a bowl\n")
    extra = [str(prompts) if arg == "PROMPTS" else arg for arg in extra]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(photo_folder), "--out", str(out), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not read_results(out) if out.exists() else True


def test_cli_refuses_to_mix_settings_and_rejects_malformed_flags(cli_run, photo_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    shutil.copytree(cli_run, out)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(photo_folder), "--out", str(out), "--protocol", "visor", "--quiet"])
    assert exit_info.value.code == 2
    assert "protocols: [" in capsys.readouterr().err
    assert (
        main(["evaluate", str(photo_folder), "--out", str(out), "--protocol", "visor", "--overwrite", "--quiet"]) == 0
    )
    assert list(json.loads((out / "report.json").read_text())["summary"]) == ["visor"]
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(photo_folder), "--out", str(out), "--option", "no-equals-sign"])
    assert exit_info.value.code == 2
    assert "expected PROTOCOL.NAME=VALUE" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_sharded_run_matches_one_process(cli_run, photo_folder, tmp_path):
    out = tmp_path / "sharded"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    command += ["-m", "diffusers_spatial.cli", "evaluate", str(photo_folder), "--out", str(out), "--batch-size", "2"]
    process = subprocess.Popen(
        [*command, "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers
        process.communicate()
        raise
    assert process.returncode == 0, stderr[-3000:]
    shards = [out / f"results-0000{rank}-of-00002.jsonl" for rank in (0, 1)]
    keys = [{json.loads(line)["key"] for line in shard.read_text().splitlines()} for shard in shards]
    assert keys[0] and keys[1] and not keys[0] & keys[1]  # each process scored its own share
    assert keys[0] | keys[1] == {r["key"] for r in read_results(cli_run)}
    sharded = json.loads((out / "report.json").read_text())
    single = json.loads((cli_run / "report.json").read_text())
    assert sharded["summary"] == single["summary"] and sharded["protocols"] == single["protocols"]
    assert sharded["counts"] == single["counts"]
