"""Two real CPU processes (torchrun, gloo) split the shards and write exactly the rows one process writes."""

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from diffusers_spatial.data import CurationConfig, curate, write_webdataset_shard
from diffusers_spatial.data.sample import sample_rows
from diffusers_spatial.data.writer import read_manifest

pytestmark = pytest.mark.slow


def _rows(folder):
    return sorted(
        (
            row
            for entry in read_manifest(folder).values()
            for f in entry["files"]
            for row in pq.read_table(folder / f["path"]).to_pylist()
        ),
        key=lambda row: row["key"],
    )


def test_two_processes_split_shards_and_match_one_process(tmp_path):
    source = tmp_path / "in"
    rows = [r for r in sample_rows() if r["image"] is not None and r["caption"]][:8]
    for i in range(4):
        write_webdataset_shard(source, f"{i:05d}", rows[2 * i : 2 * i + 2])
    single = tmp_path / "one"
    curate(source, single, CurationConfig(batch_size=2), progress=False)

    double = tmp_path / "two"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free rendezvous port: other 2-process tests may run at the same time
        "--nproc_per_node",
        "2",
        "-m",
        "diffusers_spatial.cli",
        "dataset",
        "curate",
        "--input",
        str(source),
        "--out",
        str(double),
        "--batch-size",
        "2",
        "--no-progress",
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    workers = {entry["worker"] for entry in read_manifest(double).values()}
    assert workers == {"0/2", "1/2"}
    assert _rows(double) == _rows(single)
    assert json.loads((double / ".curation" / "stats.json").read_text()) == json.loads(
        (single / ".curation" / "stats.json").read_text()
    )
