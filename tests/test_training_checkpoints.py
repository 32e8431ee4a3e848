"""Checkpoint naming, `latest`, the total limit, atomic saves, the non-finite loss stop, and argument checks."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from accelerate import Accelerator

from diffusers_spatial.training import TrainingStats
from diffusers_spatial.training.args import add_training_arguments, check_training_args
from diffusers_spatial.training.checkpoints import (
    NonFiniteLossError,
    check_finite_loss,
    checkpoint_step,
    list_checkpoints,
    prune_checkpoints,
    read_training_state,
    resolve_resume_checkpoint,
    save_checkpoint,
)


def make(tmp_path, *names):
    for name in names:
        (tmp_path / name).mkdir()


def test_latest_is_the_highest_complete_checkpoint(tmp_path):
    make(tmp_path, "checkpoint-10", "checkpoint-9", "checkpoint-100.partial", "checkpoint-x", "logs")
    (tmp_path / "checkpoint-200").write_text("a file, not a folder")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-10"]
    assert resolve_resume_checkpoint(tmp_path, "latest").name == "checkpoint-10"
    assert resolve_resume_checkpoint(tmp_path, "checkpoint-9").name == "checkpoint-9"
    assert resolve_resume_checkpoint(tmp_path, str(tmp_path / "checkpoint-9")).name == "checkpoint-9"
    assert resolve_resume_checkpoint(tmp_path / "empty", "latest") is None
    assert resolve_resume_checkpoint(tmp_path, None) is None
    with pytest.raises(ValueError, match="checkpoint-11.*checkpoint-9"):
        resolve_resume_checkpoint(tmp_path, "checkpoint-11")
    assert checkpoint_step("checkpoint-7") == 7 and checkpoint_step("checkpoint-7.partial") is None


def test_prune_keeps_room_for_the_next_checkpoint(tmp_path):
    make(tmp_path, "checkpoint-2", "checkpoint-4", "checkpoint-6")
    assert prune_checkpoints(tmp_path, None) == []
    removed = prune_checkpoints(tmp_path, 2)
    assert [p.name for p in removed] == ["checkpoint-2", "checkpoint-4"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-6"]
    with pytest.raises(ValueError, match=">= 1"):
        prune_checkpoints(tmp_path, 0)


def test_save_checkpoint_is_atomic_and_records_the_state(tmp_path):
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    (tmp_path / "checkpoint-3.partial").mkdir()  # left over by a killed run
    path = save_checkpoint(accelerator, tmp_path, 3, {"epoch": 1, "seed": 7}, total_limit=1)
    assert path == tmp_path / "checkpoint-3" and not (tmp_path / "checkpoint-3.partial").exists()
    assert {"optimizer.bin", "random_states_0.pkl", "training_state.json"} <= {p.name for p in path.iterdir()}
    assert read_training_state(path) == {"global_step": 3, "epoch": 1, "seed": 7}
    save_checkpoint(accelerator, tmp_path, 5, {"epoch": 2, "seed": 7}, total_limit=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-5"]
    assert json.loads((tmp_path / "checkpoint-5" / "training_state.json").read_text())["global_step"] == 5


def test_non_finite_loss_message_names_step_and_checkpoint():
    check_finite_loss(0.5, step=3, epoch=0)
    with pytest.raises(NonFiniteLossError) as error:
        check_finite_loss(math.nan, step=3, epoch=1, checkpoint="out/checkpoint-3")
    message = str(error.value)
    assert "the loss is nan at step 4 (epoch 1)" in message
    assert "saved to out/checkpoint-3" in message and "--resume_from_checkpoint out/checkpoint-3" in message
    with pytest.raises(NonFiniteLossError, match="the loss is inf"):
        check_finite_loss(math.inf, step=0, epoch=0)


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    return check_training_args(parser.parse_args(["--pretrained_model_name_or_path", "m", *argv]))


def test_arguments_keep_diffusers_names_and_spatial_defaults(monkeypatch):
    args = parse("--train_data_dir", "d")
    assert (args.image_column, args.caption_column, args.resolution) == ("image", "prompt", 512)
    assert args.balance_relations is True and args.image_interpolation_mode == "lanczos"
    assert parse("--train_data_dir", "d", "--report_to", "none").report_to is None
    assert parse("--train_data_dir", "d", "--no-balance_relations").balance_relations is False
    with pytest.raises(SystemExit):  # a boolean flag, as in diffusers' scripts: it takes no value
        parse("--train_data_dir", "d", "--balance_relations", "false")


def test_report_to_defaults_to_tensorboard_only_when_it_is_installed(monkeypatch):
    import diffusers_spatial.training.args as training_args

    monkeypatch.setattr(training_args, "is_tensorboard_available", lambda: True)
    assert parse("--train_data_dir", "d").report_to == "tensorboard"
    monkeypatch.setattr(training_args, "is_tensorboard_available", lambda: False)
    assert parse("--train_data_dir", "d").report_to is None  # nothing to log to: said in a warning, not silently
    monkeypatch.setattr(training_args, "get_available_trackers", lambda: [])
    with pytest.raises(ImportError, match="--report_to tensorboard: that tracker is not installed"):
        parse("--train_data_dir", "d", "--report_to", "tensorboard")


@pytest.mark.parametrize(
    "argv, message",
    [
        ((), "Need either --dataset_name or --train_data_dir"),
        (("--train_data_dir", "d", "--train_text_encoder", "--cache_text_embeddings"), "--cache_text_embeddings"),
        (("--train_data_dir", "d", "--resolution", "500"), "multiple of 8"),
        (("--train_data_dir", "d", "--rank", "0"), "--rank must be >= 1"),
        (("--train_data_dir", "d", "--checkpoints_total_limit", "0"), "--checkpoints_total_limit"),
        (("--train_data_dir", "d", "--learning_rate", "-1"), "--learning_rate"),
    ],
)
def test_impossible_argument_combinations_are_named(argv, message):
    with pytest.raises(ValueError, match=message):
        parse(*argv)


def test_training_stats_time_only_the_steps(tmp_path):
    stats = TrainingStats(cache_seconds=2.0)
    stats.start()
    sum(i * i for i in range(200_000))  # some work inside a step
    stats.samples_seen += 8
    stats.step(1, 0.5)
    stats.step(2, 0.25)  # a step closed without start() adds no time
    data = json.loads(stats.write(tmp_path, validation={"accuracy": 1.0}).read_text())
    assert data["global_step"] == 2 and data["losses"] == [0.5, 0.25] and data["validation"] == {"accuracy": 1.0}
    assert data["train_seconds"] > 0 and data["train_cpu_seconds"] > 0 and data["cache_seconds"] == 2.0
    assert data["samples_per_second"] == pytest.approx(8 / data["train_seconds"])
    assert data["peak_rss_mib"] > 10
