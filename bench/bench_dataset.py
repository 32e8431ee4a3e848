"""Dataset curation: rows per second per stage, scaling from 1 to 2 processes, peak memory as the input grows 10x.

All three measurements run the real pipeline (embedded CenterNet detector, esplora verification, parquet writer)
on img2dataset-style shards built from real photos (`diffusers_spatial.data.sample.sample_rows`: collages of
photo crops and the darknet photos, JPEG, 512 x 384 to 1352 x 900), in one run:

1. **Stages**: the same rows go through each stage on its own (reader, caption filter, perception, verification,
   synthesis, quality, rows, parquet writer), timed separately after a warm-up batch; rows/s per stage.
2. **Scaling**: `curate` over the same shards with 1 and with 2 CPU processes (`ACCELERATE_USE_CPU=1 torchrun
   --nproc_per_node N`), one detector thread each, timed inside the processes from a barrier after model loading
   to a barrier after the last shard; set-ups alternated and repeated, best time kept; plus 1 process with 2
   detector threads for reference.
3. **Memory**: `curate` in a fresh process over an input of S shards x R rows, 10 S shards x R rows and S shards
   x 10 R rows; resident memory sampled every 20 ms while curating (after the model is loaded), and the process's
   high-water mark (`ru_maxrss`, which includes importing the libraries). Flat = streaming.

Usage:

    python bench/bench_dataset.py                    # writes bench/results/dataset.md and dataset.json
    python bench/bench_dataset.py --stage-rows 32 --skip-scaling
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _input_rows(count: int) -> list[dict]:
    """`count` rows with images, cycling over the sample's real-photo rows."""
    from diffusers_spatial.data.sample import sample_rows

    rows = [r for r in sample_rows() if r["image"] is not None and r["caption"]]
    return [{**rows[i % len(rows)], "url": f"{rows[i % len(rows)]['url']}#{i}"} for i in range(count)]


def _write_input(folder: Path, shards: int, rows_per_shard: int) -> Path:
    from diffusers_spatial.data import write_webdataset_shard

    rows = _input_rows(shards * rows_per_shard)
    for i in range(shards):
        write_webdataset_shard(folder, f"{i:05d}", rows[i * rows_per_shard : (i + 1) * rows_per_shard])
    return folder


# ----------------------------------------------------------------------------------------------------------------
# 1. Stages
# ----------------------------------------------------------------------------------------------------------------


def bench_stages(
    rows: int, batch_size: int, threads: int, detector: str = "embedded", depth: str | None = None, device=None
) -> dict:
    from functools import partial

    from diffusers_spatial.data import CurationConfig, ShardReader, discover_shards
    from diffusers_spatial.data.records import batched
    from diffusers_spatial.data.stages import (
        caption_stage,
        perception_stage,
        quality_stage,
        synthesis_stage,
        to_rows,
        verify_stage,
    )
    from diffusers_spatial.data.writer import ShardWriter
    from diffusers_spatial.perception import Perception

    config = CurationConfig(batch_size=batch_size)
    options = {"detector_kwargs": {"num_threads": threads}} if detector == "embedded" else {"device": device}
    perception = Perception(detector=detector, depth=depth, batch_size=batch_size, progress=False, **options)
    with tempfile.TemporaryDirectory() as tmp:
        source = _write_input(Path(tmp) / "in", 1, rows)
        spec = discover_shards(source)[0]
        list(ShardReader(spec))  # warm the page cache: the reader is timed on parsing, not on the disk
        t = time.perf_counter()
        records = list(ShardReader(spec))
        timings = {"read shard (tar + parquet)": (time.perf_counter() - t, len(records))}
        stages = [
            ("caption filter + parse", partial(caption_stage, config=config)),
            ("perception (decode + detect)", partial(perception_stage, perception=perception)),
            ("verify (esplora)", partial(verify_stage, config=config)),
            ("synthesis", partial(synthesis_stage, config=config)),
            ("quality filters", partial(quality_stage, config=config)),
        ]
        perception_stage(caption_stage(records[:batch_size], config), perception)  # warm-up: session, caches
        batches = list(batched(records, batch_size))
        for name, stage in stages:
            entering = sum(r.kept for batch in batches for r in batch)  # a stage only works on kept records
            t = time.perf_counter()
            batches = [stage(batch) for batch in batches]
            timings[name] = (time.perf_counter() - t, entering)
        kept = sum(r.kept for batch in batches for r in batch)
        t = time.perf_counter()
        out = [row for batch in batches for row in to_rows(batch, config)]
        timings["to rows"] = (time.perf_counter() - t, kept)
        t = time.perf_counter()
        writer = ShardWriter(Path(tmp) / "out", "00000")
        writer.write(out)
        writer.commit()
        timings["write parquet (embedded images)"] = (time.perf_counter() - t, kept)
    return {
        "rows": rows,
        "rows_kept": kept,
        "batch_size": batch_size,
        "detector_threads": threads,
        "perception": repr(perception),
        "stages": {
            name: {"rows": n, "seconds": round(seconds, 4), "rows_per_s": round(n / seconds, 1)}
            for name, (seconds, n) in timings.items()
        },
        "end_to_end_rows_per_s": round(rows / sum(seconds for seconds, _ in timings.values()), 2),
    }


# ----------------------------------------------------------------------------------------------------------------
# 2. Scaling (torchrun workers)
# ----------------------------------------------------------------------------------------------------------------


def scaling_worker(source: str, out: str, result: str, threads: str) -> None:
    from diffusers_spatial.data import CurationConfig, curate
    from diffusers_spatial.data.runner import default_state
    from diffusers_spatial.perception import Perception

    state = default_state()
    config = CurationConfig(batch_size=8)
    perception = Perception(batch_size=8, progress=False, detector_kwargs={"num_threads": int(threads)})
    perception.run([_input_rows(1)[0]["image"]], None)  # load the model before the clock starts
    state.wait_for_everyone()
    t = time.perf_counter()
    stats = curate(source, out, config, perception=perception, state=state, progress=False, finalize=False)
    state.wait_for_everyone()
    seconds = time.perf_counter() - t
    if state.is_main_process:
        Path(result).write_text(json.dumps({"seconds": seconds, "processes": state.num_processes}))
    del stats


# (processes, onnxruntime threads per process): the speed-up is read between the first two (one thread each, so
# only the number of processes changes); the third is one process using every core through intra-op threads.
SCALING_SETUPS = ((1, 1), (2, 1), (1, 2))


def bench_scaling(shards: int, rows_per_shard: int, repeats: int) -> dict:
    seconds: dict[tuple[int, int], list[float]] = {setup: [] for setup in SCALING_SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        source = _write_input(Path(tmp) / "in", shards, rows_per_shard)
        for repeat in range(repeats):  # alternate the set-ups, so a change in the machine's load hits them all
            for processes, threads in SCALING_SETUPS:
                name = f"{processes}x{threads}-{repeat}"
                result = Path(tmp) / f"{name}.json"
                env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": str(threads)}
                command = [
                    sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                    __file__, "--scaling-worker", str(source), str(Path(tmp) / f"out-{name}"), str(result), str(threads),
                ]  # fmt: skip
                subprocess.run(command, env=env, check=True, capture_output=True)
                seconds[(processes, threads)].append(json.loads(result.read_text())["seconds"])
    rows = shards * rows_per_shard
    best = {setup: min(values) for setup, values in seconds.items()}
    return {
        "shards": shards,
        "rows": rows,
        "repeats": repeats,
        "setups": [
            {
                "processes": p,
                "threads_per_process": t,
                "seconds_best": round(best[(p, t)], 2),
                "seconds_all": [round(v, 2) for v in seconds[(p, t)]],
                "rows_per_s": round(rows / best[(p, t)], 2),
            }
            for p, t in SCALING_SETUPS
        ],
        "speedup_2_vs_1": round(best[(1, 1)] / best[(2, 1)], 2),
        "speedup_2_processes_vs_1_process_2_threads": round(best[(1, 2)] / best[(2, 1)], 2),
    }


# ----------------------------------------------------------------------------------------------------------------
# 3. Memory (one fresh process per input size)
# ----------------------------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def memory_worker(source: str, out: str) -> None:
    import threading

    from diffusers_spatial.data import CurationConfig, curate, make_perception

    config = CurationConfig(batch_size=8)
    perception = make_perception(config)
    perception.run([_input_rows(1)[0]["image"]], None)  # model loaded: the baseline
    baseline = _rss_mb()
    samples, done = [baseline], threading.Event()

    def sample():
        while not done.wait(0.02):
            samples.append(_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stats = curate(source, out, config, perception=perception, progress=False)
    done.set()
    sampler.join()
    print(
        json.dumps(
            {
                "baseline_rss_mb": round(baseline, 1),
                "max_rss_during_curation_mb": round(max(samples), 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "rows_in": stats["rows_in"],
            }
        )
    )


def bench_memory(shards: int, rows_per_shard: int) -> dict:
    sizes = {
        "1x": (shards, rows_per_shard),
        "10x shards": (10 * shards, rows_per_shard),
        "10x rows per shard": (shards, 10 * rows_per_shard),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (n_shards, n_rows) in sizes.items():
            folder = Path(tmp) / name.replace(" ", "-")
            source = _write_input(folder / "in", n_shards, n_rows)
            input_mb = sum(p.stat().st_size for p in source.iterdir()) / 2**20
            command = [sys.executable, __file__, "--memory-worker", str(source), str(folder / "out")]
            env = {**os.environ, "OMP_NUM_THREADS": "2"}
            line = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            results[name] = {**json.loads(line), "input_mb": round(input_mb, 1), "shards": n_shards}
    base = results["1x"]["max_rss_during_curation_mb"]
    return {
        "sizes": results,
        "peak_ratio_10x_shards": round(results["10x shards"]["max_rss_during_curation_mb"] / base, 3),
        "peak_ratio_10x_rows": round(results["10x rows per shard"]["max_rss_during_curation_mb"] / base, 3),
    }


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------


def report(results: dict) -> str:
    lines = [
        "# Dataset curation benchmark",
        "",
        f"Machine: {results['machine']}. Load average at start: {results['load_average']} (the machine is shared;",
        "absolute rates move with it, ratios measured side by side in one run are the figures to quote).",
        "Command: `python bench/bench_dataset.py`.",
        "",
    ]
    stages = results.get("stages")
    if stages:
        lines += [
            f"## Rows per second per stage ({stages['rows']} rows, batch {stages['batch_size']}, "
            f"{stages['rows_kept']} kept, {stages['detector_threads']} detector thread(s))",
            "",
            "| stage | rows in | seconds | rows/s |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {name} | {v['rows']} | {v['seconds']} | {v['rows_per_s']} |" for name, v in stages["stages"].items()
        ]
        share = stages["stages"]["perception (decode + detect)"]["seconds"] / sum(
            v["seconds"] for v in stages["stages"].values()
        )
        lines += [
            "",
            f"End to end (sum of stages): {stages['end_to_end_rows_per_s']} rows/s; perception is "
            f"{share:.1%} of the time. Perception: `{stages.get('perception', 'embedded')}`.",
            "",
        ]
    scaling = results.get("scaling")
    if scaling:
        lines += [
            f"## Scaling: {scaling['rows']} rows in {scaling['shards']} shards (best of {scaling['repeats']}, "
            "set-ups alternated)",
            "",
            "| processes | detector threads per process | seconds (best) | all runs | rows/s |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {v['processes']} | {v['threads_per_process']} | {v['seconds_best']} | {v['seconds_all']} | "
            f"{v['rows_per_s']} |"
            for v in scaling["setups"]
        ]
        lines += [
            "",
            f"Speed-up, 2 processes vs 1 (one thread each): **{scaling['speedup_2_vs_1']}x**; 2 processes x 1 thread "
            f"vs 1 process x 2 threads: **{scaling['speedup_2_processes_vs_1_process_2_threads']}x**.",
            "Shards are independent, so the work itself scales linearly; on this 2-core machine the other jobs'",
            "load caps what a second process can get. One onnxruntime thread per process beats one process",
            "with two threads on a busy machine (its thread pool spins while waiting for a core).",
            "",
        ]
    memory = results.get("memory")
    if memory:
        lines += [
            "## Peak memory as the input grows 10x",
            "",
            "| input | shards | rows | input MB | RSS after model load MB | max RSS while curating MB | "
            "process high-water mark MB |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {name} | {v['shards']} | {v['rows_in']} | {v['input_mb']} | {v['baseline_rss_mb']} | "
            f"{v['max_rss_during_curation_mb']} | {v['peak_rss_mb']} |"
            for name, v in memory["sizes"].items()
        ]
        lines += [
            "",
            f"Peak ratio, 10x shards / 1x: **{memory['peak_ratio_10x_shards']}**; 10x rows per shard / 1x: "
            f"**{memory['peak_ratio_10x_rows']}**.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage-rows", type=int, default=64, help="Rows through the per-stage timing.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--detector-threads", type=int, default=1, help="onnxruntime threads in the stage timing.")
    parser.add_argument("--detector", default="embedded", help="Detector of the stage timing (e.g. owlv2 on a GPU).")
    parser.add_argument("--depth", help="Depth model of the stage timing (e.g. depth-anything-v2).")
    parser.add_argument("--device", help="Device of Hugging Face models in the stage timing (e.g. cuda).")
    parser.add_argument("--report-only", action="store_true", help="Rewrite the .md from the .json, run nothing.")
    parser.add_argument("--scaling-shards", type=int, default=16)
    parser.add_argument("--scaling-rows", type=int, default=16, help="Rows per shard in the scaling run.")
    parser.add_argument("--memory-shards", type=int, default=2)
    parser.add_argument("--memory-rows", type=int, default=8, help="Rows per shard of the 1x memory input.")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "dataset"), help="Results path stem (.md and .json).")
    parser.add_argument("--scaling-repeats", type=int, default=3)
    parser.add_argument(
        "--scaling-worker", nargs=4, metavar=("SOURCE", "OUT", "RESULT", "THREADS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--memory-worker", nargs=2, metavar=("SOURCE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scaling_worker:
        scaling_worker(*args.scaling_worker)
        return
    if args.memory_worker:
        memory_worker(*args.memory_worker)
        return

    out = Path(args.out)
    if args.report_only:
        out.with_suffix(".md").write_text(report(json.loads(out.with_suffix(".json").read_text())))
        return
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "stages": bench_stages(
            args.stage_rows, args.batch_size, args.detector_threads, args.detector, args.depth, args.device
        ),
    }
    print(json.dumps(results["stages"], indent=1), flush=True)
    if not args.skip_scaling:
        results["scaling"] = bench_scaling(args.scaling_shards, args.scaling_rows, args.scaling_repeats)
        print(json.dumps(results["scaling"], indent=1), flush=True)
    if not args.skip_memory:
        results["memory"] = bench_memory(args.memory_shards, args.memory_rows)
        print(json.dumps(results["memory"], indent=1), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
