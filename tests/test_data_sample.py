"""The offline sample dataset: built by one command from real photos, loaded back with typed columns."""

import json

import datasets
import pytest

from diffusers_spatial.cli import main
from diffusers_spatial.data.schema import SPATIAL_FEATURES
from diffusers_spatial.geometry import score_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    assert main(["dataset", "build-sample", "--out", str(out), "--no-progress"]) == 0
    return out


def test_load_dataset_gives_typed_columns(sample):
    ds = datasets.load_dataset(str(sample), split="train")
    assert ds.features == SPATIAL_FEATURES
    # the folder holds what its Hub repo holds: the raw input lives beside it, every way of loading agrees
    assert not (sample / "input").exists() and (sample.with_name(sample.name + "-input")).is_dir()
    as_parquet = datasets.load_dataset("parquet", data_dir=str(sample), split="train")
    assert sorted(as_parquet["key"]) == sorted(ds["key"])
    row = ds[0]
    assert row["image"].mode == "RGB" and row["image"].size[0] > 0
    assert isinstance(row["boxes"][0]["box"], list) and len(row["boxes"][0]["box"]) == 4
    assert isinstance(row["verification_score"], float)
    assert len(ds) >= 15


def test_configs_split_the_rows(sample):
    card = (sample / "README.md").read_text()
    assert "config_name: synthetic" not in card  # no synthetic rows in the sample: no config that matches nothing
    total = datasets.load_dataset(str(sample), split="train")
    natural = datasets.load_dataset(str(sample), "natural", split="train")
    two_d = datasets.load_dataset(str(sample), "2d", split="train")
    three_d = datasets.load_dataset(str(sample), "3d", split="train")
    assert len(natural) == len(total) == len(two_d) + len(three_d)
    assert len(three_d) >= 1
    assert set(three_d["relation"]) <= {"in_front_of", "behind"}
    assert not set(two_d["relation"]) & {"in_front_of", "behind"}
    for row in three_d:  # 3D rows only with real (here: the collage's ground-truth) depth
        stats = row["depth_stats"]
        assert stats["source"] == "ground_truth"
        nearer = stats["subject"] > stats["object"]
        assert nearer == (row["relation"] == "in_front_of")


def test_rows_are_verified_and_come_from_every_path(sample):
    ds = datasets.load_dataset(str(sample), "2d", split="train")
    for row in ds:  # the stored boxes alone reproduce the verdict
        assert score_image(row["prompt"], row["boxes"], image_size=row["image"].size).correct is True, row["prompt"]
    origins = set(ds["prompt_origin"])
    assert origins == {"caption", "synthesized"}
    rewritten = [r for r in ds if r["prompt_origin"] == "synthesized" and r["caption"] and " and " not in r["caption"]]
    assert rewritten  # a misstated caption corrected from the geometry
    assert any(o.startswith("file://") for o in ds["origin"])  # a real, uncropped darknet photo
    assert all(lic for lic in ds["license"])


def test_every_kind_of_bad_input_is_counted(sample):
    stats = json.loads((sample / ".curation" / "stats.json").read_text())
    for reason in (
        "missing_image",
        "corrupt_image",
        "non_english",
        "several_relations",
        "empty_caption",
        "truncated_tar",
    ):
        assert stats["skipped"][reason] >= 1, reason
    assert stats["shard_issues"]["empty_shard"] == 1 and stats["shard_issues"]["truncated_tar"] == 1
    assert stats["rows_in"] == stats["rows_out"] + sum(stats["skipped"].values())
    for plot in ("relation_balance", "order_balance", "object_frequency", "skip_reasons"):
        assert (sample / ".curation" / "plots" / f"{plot}.png").stat().st_size > 1000


def test_card_is_a_hub_dataset_card_with_samples_and_a_licence(sample, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub
    from huggingface_hub import DatasetCard

    from diffusers_spatial.data import push_to_hub

    card = DatasetCard.load(sample / "README.md")  # huggingface_hub parses it
    assert card.data.license == "other" and card.data.license_link == ".curation/LICENCE.md"
    assert (sample / ".curation" / "LICENCE.md").read_text().startswith("# Licence")
    assert "&id" not in card.content and "<this folder" not in card.content  # no YAML anchors, no placeholder
    assert f'load_dataset("{sample}", split="train")' in card.text
    assert "](.curation/plots/samples.png)" in card.text
    assert (sample / ".curation" / "plots" / "samples.png").stat().st_size > 10_000
    # pushing renders the snippet with the repo id (a copy: the module fixture stays as built)
    copy = tmp_path / "copy"
    shutil.copytree(sample, copy)
    uploads = []

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            return f"https://huggingface.co/datasets/{repo_id}"

        def upload_folder(self, **kwargs):
            uploads.append(kwargs)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert push_to_hub(copy, "me/spatial") == "https://huggingface.co/datasets/me/spatial"
    assert 'load_dataset("me/spatial", split="train")' in (copy / "README.md").read_text()
    assert ".curation/LICENCE.md" in uploads[-1]["allow_patterns"]


def test_cli_errors_name_the_problem(tmp_path, capsys):
    with pytest.raises(SystemExit, match="does not exist"):
        main(["dataset", "curate", "--input", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        main(["dataset", "curate", "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--min-confidence", "2"])
    assert "must be a number in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no README.md"):
        main(["dataset", "push", "--out", str(tmp_path), "--repo-id", "me/x"])
