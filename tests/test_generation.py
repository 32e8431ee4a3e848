"""`generate_images` and `diffusers-spatial generate` on tiny SD / SDXL pipelines saved to disk and loaded back."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from diffusers import DiffusionPipeline
from PIL import Image

from diffusers_spatial.cli import main
from diffusers_spatial.generation import (
    MANIFEST_NAME,
    PROMPTS_NAME,
    describe_pipeline,
    generate_images,
    image_seed,
    prompt_id_for,
    read_manifest,
)
from diffusers_spatial.pipelines import SpatialLoRAPipeline
from diffusers_spatial.suites import SuitePrompt, build_suite, write_suite
from diffusers_spatial.tore import Tore
from diffusers_spatial.utils import make_tiny_lora, make_tiny_sd, make_tiny_sdxl

SIZE = {"num_inference_steps": 2, "height": 32, "width": 32, "progress": False}
SUITE = build_suite("sr2d", num_pairs=1)[:2]  # "a sink to the left of a toaster" and its counterfactual twin


@pytest.fixture(scope="module")
def tiny_sd_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-sd")
    make_tiny_sd(path)
    return str(path)


@pytest.fixture(scope="module")
def pipe(tiny_sd_dir):
    """A plain diffusers pipeline, loaded from the saved folder the way a user loads one."""
    pipe = DiffusionPipeline.from_pretrained(tiny_sd_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def reference(pipe, tmp_path_factory):
    """An uninterrupted run: 2 prompts x 2 images, one batch."""
    out = tmp_path_factory.mktemp("reference")
    generate_images(pipe, SUITE, out, images_per_prompt=2, batch_size=4, **SIZE)
    return out


class CountingPipe:
    """Wraps a pipeline, records each call's prompts, and raises KeyboardInterrupt on call `fail_on` (a kill).

    Pass `model_info=counting.model_info` so the manifest describes the wrapped pipeline, as without the wrapper.
    """

    def __init__(self, pipe, fail_on=None):
        self.pipe, self.fail_on, self.calls = pipe, fail_on, []
        self.model_info = describe_pipeline(pipe)

    def __call__(self, **kwargs):
        self.calls.append(list(kwargs["prompt"]))
        if len(self.calls) == self.fail_on:
            raise KeyboardInterrupt
        return self.pipe(**kwargs)

    @property
    def num_images(self):
        return sum(len(c) for c in self.calls)


def pixels(folder):
    return {
        name: np.asarray(Image.open(os.path.join(folder, "images", name)))
        for name in sorted(os.listdir(os.path.join(folder, "images")))
    }


def assert_same_images(a, b):
    """Same files, same pixels: the starting noise is identical, but a batch of another size runs other float
    kernels (CPU and GPU alike), so a rare pixel may round to the next 8-bit value."""
    pa, pb = pixels(a), pixels(b)
    assert sorted(pa) == sorted(pb)
    for name in pa:
        diff = np.abs(pa[name].astype(int) - pb[name].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.005, f"{name}: {(diff > 0).sum()} values differ"


def manifest_lines(folder):
    return [json.loads(line) for line in open(os.path.join(folder, MANIFEST_NAME), encoding="utf-8")]


def test_layout_and_manifest(reference):
    lines = manifest_lines(reference)
    assert [(r["prompt_id"], r["image_index"]) for r in lines] == [
        ("sr2d-000000", 0),
        ("sr2d-000000", 1),
        ("sr2d-000001", 0),
        ("sr2d-000001", 1),
    ]
    first = lines[1]
    assert first["image"] == "images/sr2d-000000_1.png"
    assert first["prompt"] == first["prompt_used"] == SUITE[0].prompt
    assert first["seed"] == image_seed(0, "sr2d-000000", 1)
    assert first["settings"] == {"height": 32, "num_inference_steps": 2, "seed": 0, "width": 32}
    assert first["model"]["pipeline"] == "StableDiffusionPipeline"
    assert (first["fact_id"], first["order"], first["relation"]) == (SUITE[0].fact_id, "as_written", "left_of")
    with Image.open(reference / first["image"]) as image:
        assert (image.format, image.size) == ("PNG", (32, 32))
    assert len({r["seed"] for r in lines}) == 4
    assert not list(reference.glob(".*.tmp")) and not list((reference / "images").glob(".*.tmp"))


def test_prompts_file_feeds_the_evaluation(reference):
    from diffusers_spatial.metric.inputs import collect_items

    items = collect_items(reference / "images", reference / PROMPTS_NAME)
    assert [(f"images/{i.key}", i.prompt_id, i.prompt) for i in items] == [
        (r["image"], r["prompt_id"], r["prompt"]) for r in manifest_lines(reference)
    ]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_same_seed_same_images_whatever_the_batch_size(pipe, reference, tmp_path, batch_size):
    images = generate_images(pipe, SUITE, tmp_path, images_per_prompt=2, batch_size=batch_size, **SIZE)
    assert [g.seed for g in images] == [r["seed"] for r in manifest_lines(reference)]
    assert_same_images(reference, tmp_path)


def test_another_seed_gives_other_images(pipe, reference, tmp_path):
    generate_images(pipe, SUITE, tmp_path, images_per_prompt=2, seed=1, **SIZE)
    ref, other = pixels(reference), pixels(tmp_path)
    assert all(not np.array_equal(ref[name], other[name]) for name in ref)


def test_resume_after_a_kill_generates_only_what_is_missing(pipe, reference, tmp_path):
    killed = CountingPipe(pipe, fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        generate_images(
            killed, SUITE, tmp_path, images_per_prompt=2, batch_size=2, model_info=killed.model_info, **SIZE
        )
    assert len(manifest_lines(tmp_path)) == 2

    resumed = CountingPipe(pipe)
    images = generate_images(
        resumed, SUITE, tmp_path, images_per_prompt=2, batch_size=2, model_info=resumed.model_info, **SIZE
    )
    assert resumed.calls == [[SUITE[1].prompt, SUITE[1].prompt]]
    assert len(images) == len(manifest_lines(tmp_path)) == 4
    assert_same_images(reference, tmp_path)


def test_resume_regenerates_orphan_images_and_missing_files(pipe, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    lines = (out / MANIFEST_NAME).read_text().splitlines(keepends=True)
    # Killed after writing the last PNG but before its line (the file is an orphan; make it visibly wrong), with a
    # half-written line at the end; and an image whose line was written has since been deleted.
    (out / MANIFEST_NAME).write_text("".join(lines[:3]) + lines[3][:25])
    Image.new("RGB", (32, 32)).save(out / "images/sr2d-000001_1.png")
    os.remove(out / "images/sr2d-000000_0.png")

    counting = CountingPipe(pipe)
    images = generate_images(counting, SUITE, out, images_per_prompt=2, model_info=counting.model_info, **SIZE)
    assert counting.calls == [[SUITE[0].prompt, SUITE[1].prompt]]
    assert [g.image for g in images] == [r["image"] for r in manifest_lines(reference)]
    assert manifest_lines(out) == manifest_lines(reference)  # no duplicate, no lost line
    assert_same_images(reference, out)

    again = CountingPipe(pipe)
    generate_images(again, SUITE, out, images_per_prompt=2, model_info=again.model_info, **SIZE)
    assert again.calls == []


def test_resume_reads_per_process_manifests_left_by_a_killed_parallel_run(pipe, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    lines = (out / MANIFEST_NAME).read_text().splitlines(keepends=True)
    os.remove(out / MANIFEST_NAME)
    (out / "generations-00000-of-00002.jsonl").write_text("".join(lines[:2]))
    (out / "generations-00001-of-00002.jsonl").write_text(lines[2])

    counting = CountingPipe(pipe)
    generate_images(counting, SUITE, out, images_per_prompt=2, model_info=counting.model_info, **SIZE)
    assert counting.num_images == 1
    assert sorted(p.name for p in out.glob("generations*.jsonl")) == [MANIFEST_NAME]
    assert manifest_lines(out) == manifest_lines(reference)


@pytest.mark.parametrize(
    ("change", "field"),
    [({"seed": 7}, "seed"), ({"num_inference_steps": 3}, "settings"), ({"model_info": {"lora": "x"}}, "model")],
)
def test_resume_refuses_a_run_with_other_settings(pipe, reference, tmp_path, change, field):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    counting = CountingPipe(pipe)
    with pytest.raises(ValueError, match=f"images/sr2d-000000_0.png generated with {field}"):
        generate_images(
            counting, SUITE, out, images_per_prompt=2, **({"model_info": counting.model_info} | SIZE | change)
        )
    assert counting.calls == []


def test_resume_refuses_another_prompt_under_the_same_id(pipe, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    other = [SuitePrompt(**(SUITE[0].to_dict() | {"prompt": "a cat above a dog"})), SUITE[1]]
    with pytest.raises(ValueError, match="with prompt 'a sink to the left of a toaster'.*'a cat above a dog'"):
        generate_images(pipe, other, out, images_per_prompt=2, **SIZE)


def test_more_images_per_prompt_extends_a_run(pipe, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    counting = CountingPipe(pipe)
    images = generate_images(counting, SUITE, out, images_per_prompt=3, model_info=counting.model_info, **SIZE)
    assert counting.num_images == 2 and len(images) == 6
    assert json.loads((out / PROMPTS_NAME).read_text().splitlines()[0])["images"][-1] == "sr2d-000000_2.png"


def test_plain_string_prompts_get_stable_hash_ids(pipe, tmp_path):
    images = generate_images(pipe, ["a cup above a bowl"], tmp_path, images_per_prompt=1, **SIZE)
    prompt_id = prompt_id_for("a cup above a bowl")
    assert prompt_id == prompt_id_for("a cup above a bowl") != prompt_id_for("a cup below a bowl")
    assert images[0].image == f"images/{prompt_id}_0.png"
    assert images[0].suite is None and images[0].path.is_file()


def test_tore_rewrites_are_recorded_and_seeds_stay_paired(tiny_sd_dir, reference, tmp_path):
    tore = Tore(success_rates={"left_of": 0.2, "right_of": 0.8})
    pipe = SpatialLoRAPipeline.from_pipe(DiffusionPipeline.from_pretrained(tiny_sd_dir), tore=tore)
    images = generate_images(pipe, SUITE, tmp_path / "a", images_per_prompt=2, **SIZE)
    assert [g.prompt_used for g in images] == [SUITE[1].prompt] * 4  # the left_of prompt is asked as right_of
    assert [g.prompt for g in images] == [SUITE[0].prompt] * 2 + [SUITE[1].prompt] * 2
    assert images[0].model["tore"]["success_rates"] == {"left_of": 0.2, "right_of": 0.8}
    assert [g.seed for g in images] == [r["seed"] for r in manifest_lines(reference)]
    # The rewritten prompt was generated from the prompt id's own seeds (paired with the baseline run).
    as_rewritten = SuitePrompt(**(SUITE[0].to_dict() | {"prompt": SUITE[1].prompt}))
    generate_images(
        DiffusionPipeline.from_pretrained(tiny_sd_dir), [as_rewritten], tmp_path / "b", images_per_prompt=2, **SIZE
    )
    for k in range(2):
        name = f"sr2d-000000_{k}.png"
        diff = pixels(tmp_path / "a")[name].astype(int) - pixels(tmp_path / "b")[name]
        assert np.abs(diff).max() <= 1


def test_sdxl_pipeline_and_batch_size_independence(tmp_path):
    make_tiny_sdxl(tmp_path / "sdxl")
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "sdxl")
    generate_images(pipe, SUITE[:1], tmp_path / "a", images_per_prompt=2, batch_size=1, **SIZE)
    images = generate_images(pipe, SUITE[:1], tmp_path / "b", images_per_prompt=2, batch_size=2, **SIZE)
    assert images[0].model["pipeline"] == "StableDiffusionXLPipeline"
    assert_same_images(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"images_per_prompt": 0}, ValueError, "images_per_prompt must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, ValueError, "batch_size must be an integer >= 1, got 2.5"),
        ({"seed": -1}, ValueError, "seed must be an integer >= 0, got -1"),
        ({"num_inference_steps": 0}, ValueError, "num_inference_steps must be an integer >= 1, got 0"),
        ({"guidance_scale": float("nan")}, ValueError, "guidance_scale must be a finite number, got nan"),
        ({"generator": None}, ValueError, r"sets \['generator'\] itself"),
        ({"prompts": []}, ValueError, "prompts is empty"),
        ({"prompts": "a cat above a dog"}, TypeError, "prompts must be a list"),
        ({"prompts": ["a cat", 3]}, TypeError, r"prompts\[1\] must be a SuitePrompt or a str, got int: 3"),
        ({"prompts": ["  "]}, ValueError, r"prompts\[0\] is empty"),
        (
            {"prompts": [SUITE[0], SUITE[0]]},
            ValueError,
            "prompts.0. and prompts.1. have the same prompt_id 'sr2d-000000'",
        ),
        (
            {"prompts": [SuitePrompt(**(SUITE[0].to_dict() | {"prompt_id": "../x"}))]},
            ValueError,
            "prompt_id '../x'",
        ),
    ],
)
def test_bad_input_is_refused_before_any_work(pipe, tmp_path, kwargs, error, match):
    counting = CountingPipe(pipe)
    kwargs = {"prompts": SUITE} | kwargs
    with pytest.raises(error, match=match):
        generate_images(counting, kwargs.pop("prompts"), tmp_path / "out", **(SIZE | kwargs))
    assert counting.calls == [] and not (tmp_path / "out").exists()


def test_out_dir_that_is_a_file_is_refused(pipe, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        generate_images(pipe, SUITE, tmp_path / "file", **SIZE)


# -- the CLI ---------------------------------------------------------------------------------------------------


def cli(*args):
    return main(["generate", "--steps", "2", "--height", "32", "--width", "32", "--no-progress", *map(str, args)])


def test_cli_end_to_end_with_lora_and_tore_and_resume(tiny_sd_dir, tmp_path, capsys):
    make_tiny_lora(make_tiny_sd(), tmp_path / "lora")
    Tore(success_rates={"left_of": 0.2, "right_of": 0.8}).save_pretrained(tmp_path / "tore")
    args = ["--model", tiny_sd_dir, "--lora", tmp_path / "lora", "--lora-scale", "0.5", "--tore", tmp_path / "tore"]
    args += ["--suite", "sr2d", "--num-pairs", "1", "--images-per-prompt", "1", "--batch-size", "3"]
    assert cli(*args, "--out", tmp_path / "out", "--device", "cpu") == 0
    assert "8 images in" in capsys.readouterr().out

    lines = manifest_lines(tmp_path / "out")
    assert [r["prompt_id"] for r in lines] == [f"sr2d-{i:06d}" for i in range(8)]
    assert lines[0]["prompt"] == "a sink to the left of a toaster"
    assert lines[0]["prompt_used"] == "a toaster to the right of a sink"
    assert lines[0]["model"]["lora"] == str(tmp_path / "lora") and lines[0]["model"]["lora_scale"] == 0.5
    assert len(list((tmp_path / "out/images").iterdir())) == 8

    # Resuming a finished run does nothing and changes nothing; the LoRA changed the images.
    before = pixels(tmp_path / "out")
    assert cli(*args, "--out", tmp_path / "out") == 0
    assert manifest_lines(tmp_path / "out") == lines
    no_lora = ["--model", tiny_sd_dir, *args[6:]]
    assert cli(*no_lora, "--out", tmp_path / "no-lora") == 0
    after, plain = pixels(tmp_path / "out"), pixels(tmp_path / "no-lora")
    assert all(np.array_equal(before[n], after[n]) and not np.array_equal(after[n], plain[n]) for n in before)


def test_cli_reads_a_prompts_file(tiny_sd_dir, tmp_path):
    write_suite(SUITE, tmp_path / "suite.jsonl")
    (tmp_path / "prompts.txt").write_text("a cup above a bowl\n\na cat below a dog\n")
    assert (
        cli(
            "--model",
            tiny_sd_dir,
            "--prompts",
            tmp_path / "suite.jsonl",
            "--images-per-prompt",
            "1",
            "--out",
            tmp_path / "a",
        )
        == 0
    )
    assert [g.prompt_id for g in read_manifest(tmp_path / "a")] == ["sr2d-000000", "sr2d-000001"]
    assert (
        cli(
            "--model",
            tiny_sd_dir,
            "--prompts",
            tmp_path / "prompts.txt",
            "--images-per-prompt",
            "1",
            "--out",
            tmp_path / "b",
        )
        == 0
    )
    assert {g.prompt for g in read_manifest(tmp_path / "b")} == {"a cup above a bowl", "a cat below a dog"}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--model", "./no/such/folder", "--suite", "sr2d"], "--model './no/such/folder' is neither an existing path"),
        (["--model", "{model}", "--lora", "/no/lora.safetensors", "--suite", "sr2d"], "--lora '/no/lora.safetensors'"),
        (["--model", "{model}", "--prompts", "{tmp}/missing.jsonl"], "missing.jsonl' is not a file"),
        (["--model", "{model}", "--prompts", "{tmp}/bad.jsonl"], r"bad.jsonl:1: not a suite prompt record"),
        (["--model", "{model}", "--prompts", "{tmp}/p.txt", "--num-pairs", "2"], "--num-pairs samples a built-in"),
        (["--model", "{model}", "--suite", "sr2d", "--device", "nonsense"], "--device 'nonsense' is not a device"),
        (["--model", "{model}", "--suite", "sr2d", "--device", "cpu", "--dtype", "float16"], "float16 does not run"),
        (["--model", "{model}", "--suite", "sr2d", "--out", "{tmp}/p.txt"], "exists and is not a folder"),
    ],
)
def test_cli_bad_input_is_a_clear_error(tiny_sd_dir, tmp_path, args, match):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a cat"}\n')
    (tmp_path / "p.txt").write_text("a cat above a dog\n")
    args = [a.format(model=tiny_sd_dir, tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match=match):
        cli(*args)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "nope"], "argument --suite: invalid choice: 'nope'"),
        (["--suite", "sr2d", "--prompts", "x.jsonl"], "argument --prompts: not allowed with argument --suite"),
        (["--suite", "sr2d", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
        (["--suite", "sr2d", "--height", "30"], "argument --height: must be a multiple of 8, got 30"),
        (["--suite", "sr2d", "--guidance", "inf"], "argument --guidance: must be a finite number, got 'inf'"),
        (["--suite", "sr2d", "--seed", "x"], "argument --seed: expected an integer, got 'x'"),
        ([], "one of the arguments --suite --prompts is required"),
    ],
)
def test_cli_bad_arguments_exit_2_naming_the_value(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as err:
        cli("--model", "m", "--out", tmp_path / "out", *args)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_share_the_work_and_merge_the_manifest(tiny_sd_dir, reference, tmp_path):
    """`torchrun --nproc_per_node 2` (gloo on the CPU): each process takes half the images; one manifest at the end."""
    write_suite(SUITE, tmp_path / "suite.jsonl")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "diffusers_spatial.cli"]
    command += ["generate", "--model", tiny_sd_dir, "--prompts", str(tmp_path / "suite.jsonl"), "--images-per-prompt"]
    command += [
        "2",
        "--steps",
        "2",
        "--height",
        "32",
        "--width",
        "32",
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
    ]
    env = os.environ | {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("4 images in") == 1  # two processes, one of them the main one
    assert sorted(p.name for p in (tmp_path / "out").glob("generations*.jsonl")) == [MANIFEST_NAME]
    lines = manifest_lines(tmp_path / "out")
    assert [r["image"] for r in lines] == [r["image"] for r in manifest_lines(reference)]
    assert_same_images(reference, tmp_path / "out")
