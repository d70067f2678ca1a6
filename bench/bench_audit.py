"""Speed and memory of `slime audit` on a large store (issue 24, point 4). Run: python bench/bench_audit.py

Writes 1,000,000 synthetic victim embeddings (lite0's 1,280 dims: lite0 pool rows, mixed and perturbed, seeded) to a
Parquet file once (and the first 100,000 to a second file), in the cache folder (--cache, default
$SLIME_CACHE/bench_audit), not in the repo. Then, each in its own process:

  the audit      `slime audit`'s engine (--engine, default local) on each store at --batch-size: rows per second
                 of the engine's run (the attacker's set-up and the map's fit excluded), and the process's peak
                 memory (VmHWM: its own peak RSS since exec; os.wait4's ru_maxrss would count the parent's memory
                 at the fork), so the 100k and 1M figures can be compared;
  the attack     the batch core alone (`Attacker.attack_batch` and the attribute scores) on in-memory rows at the
                 same batch size: the engine's own cost (reading, checking, writing, summing up) is the rest;
  the floor      numpy doing only the two matrix products — alignment (X @ W, the fitted map) and tag cosine
                 (aligned @ T.T, the vocabulary in attack space: V x 1,280, stored transposed) — and the top-k (the
                 attack's own, `retrieve.top_k_columns`), at the same batch size, on in-memory rows: what no
                 implementation of the attack can avoid.

Times are given on the wall clock and in CPU time (all threads; steadier where other work shares the cores).
Goals: engine <= 2x the floor's time per row; peak memory at 100k and 1M within 10% of each other, under 2 GB.
Results go to bench/results/bench_audit.json. A Ray engine, once registered, is measured with --engine ray.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "bench_audit.json"
DIM = 1280
ROW_GROUP = 16_384  # rows per Parquet row group (84 MB of float32): memory holds one, whatever the file's size
SEED = 0


def write_store(path: Path, rows: int, pool: np.ndarray, chunk: int = 65_536) -> Path:
    """`rows` synthetic lite0-like embeddings as Parquet (a fixed-size list column `embedding`, int64 `id`),
    written in chunks; kept when a file of that many rows is already there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.is_file():
        try:
            if pq.ParquetFile(path).metadata.num_rows == rows:
                return path
        except Exception:  # noqa: BLE001 - a half-written file from an interrupted run: written again
            pass
    rng = np.random.default_rng(SEED)
    tmp = path.with_suffix(".tmp")
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), DIM))])
    with pq.ParquetWriter(tmp, schema, compression="none") as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            a, b = pool[rng.integers(len(pool), size=n)], pool[rng.integers(len(pool), size=n)]
            X = (0.7 * a + 0.3 * b + 0.02 * rng.standard_normal((n, DIM), dtype=np.float32)).astype(np.float32)
            column = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), DIM)
            writer.write_table(pa.table({"id": np.arange(start, start + n), "embedding": column}, schema=schema),
                               row_group_size=ROW_GROUP)
    os.replace(tmp, path)
    return path


def child_audit(args) -> dict:
    """In a child process: the engine on one store; prints its timing as JSON."""
    from slime_core.experiments import store_audit, store_audit_ray  # noqa: F401 - the second registers "ray"
    from slime_core.pipeline import Attacker
    from slime_core.stages.attributes import load_attributes
    from slime_core.stages.stores import open_store

    t0 = time.perf_counter()
    attacker = Attacker()
    fit = attacker.alignment(args.victim, args.n_align)
    store = open_store(args.store)
    attributes = load_attributes(None, attacker.bundle.tags)
    job = store_audit.AuditJob(store, Path(args.out), args.victim, args.n_align, args.k, attributes,
                               batch_size=args.batch_size, attacker_name=attacker.bundle.attacker)
    setup = time.perf_counter() - t0
    t1, c1 = time.perf_counter(), time.process_time()
    summary = store_audit.engine(args.engine)(job, attacker, fit, progress=args.progress)
    seconds, cpu = time.perf_counter() - t1, time.process_time() - c1
    return {"rows": store.rows, "rows_scored": summary["rows_scored"], "seconds": seconds, "setup_seconds": setup,
            "rows_per_second": store.rows / seconds, "cpu_seconds": cpu, "rows_per_cpu_second": store.rows / cpu}


def child_attack(args) -> dict:
    """In a child process: the batch core (attack_batch + attribute scores, as the engine calls them) on
    `--floor-rows` in-memory rows, without reading, checking or writing anything."""
    from slime_core.experiments.store_audit import AuditJob, score_rows
    from slime_core.pipeline import Attacker
    from slime_core.stages.attributes import load_attributes

    attacker = Attacker()
    fit = attacker.alignment(args.victim, args.n_align)
    job = AuditJob(None, Path("."), args.victim, args.n_align, args.k, load_attributes(None, attacker.bundle.tags))
    X = synthetic_batch(attacker.bundle.pool_embeddings[args.victim], args.batch_size)
    batches = -(-args.floor_rows // args.batch_size)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(batches):
        score_rows(attacker, fit, X, job)
    return timing(batches * args.batch_size, time.perf_counter() - t, time.process_time() - c)


def timing(rows: int, seconds: float, cpu: float) -> dict:
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds, "cpu_seconds": cpu,
            "rows_per_cpu_second": rows / cpu}


def synthetic_batch(pool: np.ndarray, n: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return (0.7 * pool[rng.integers(len(pool), size=n)] + 0.3 * pool[rng.integers(len(pool), size=n)]).astype(np.float32)


def child_floor(args) -> dict:
    """In a child process: the floor (two matrix products and the top-k per batch) on `--floor-rows` rows."""
    from slime_core.pipeline import Attacker
    from slime_core.stages.retrieve import top_k_columns

    attacker = Attacker()
    W = np.ascontiguousarray(attacker.alignment(args.victim, args.n_align).W[:DIM])  # (1280, d_attack)
    rng = np.random.default_rng(SEED)
    T = rng.standard_normal((len(attacker.bundle.tags), W.shape[1]), dtype=np.float32)  # vocabulary in attack space
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    TT = np.ascontiguousarray(T.T)  # the faster layout for the product, as the attack keeps its pool
    X = synthetic_batch(attacker.bundle.pool_embeddings[args.victim], args.batch_size)
    batches = -(-args.floor_rows // args.batch_size)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(batches):
        S = (X @ W) @ TT
        top = top_k_columns(S, args.k)  # the attack's own multithreaded top-k
        np.take_along_axis(S, top, axis=1).argsort(axis=1)
    return timing(batches * args.batch_size, time.perf_counter() - t, time.process_time() - c) | {
        "vocabulary": len(T), "attack_dim": int(W.shape[1])}


def ratios(run: dict, base: dict, name: str) -> dict:
    """How many times `base`'s time per row `run` takes: on the wall clock, and in CPU time (steadier on a machine
    that other work shares: waiting for a core is not counted)."""
    return {f"vs_{name}": base["rows_per_second"] / run["rows_per_second"],
            f"vs_{name}_cpu": base["rows_per_cpu_second"] / run["rows_per_cpu_second"]}


def in_child(mode: str, args, **more) -> tuple[dict, float]:
    """Run this script's `mode` in a fresh process; (its JSON, its peak RSS in MiB)."""
    argv = [sys.executable, __file__, "--child", mode, "--batch-size", str(args.batch_size), "--k", str(args.k),
            "--n-align", str(args.n_align), "--victim", args.victim, "--engine", args.engine,
            "--floor-rows", str(args.floor_rows)] + (["--progress"] if args.progress else []) \
        + [x for key, value in more.items() for x in (f"--{key}", str(value))]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"{mode} failed with status {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, result.pop("peak_rss_mib")


def peak_rss_mib() -> float:
    """This process's peak RSS since it started (Linux: VmHWM; elsewhere ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000", help="store sizes (rows), comma-separated")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--n-align", type=int, default=300)
    ap.add_argument("--victim", default="lite0")
    ap.add_argument("--engine", default="local", help="the audit engine to measure (store_audit.list_engines())")
    ap.add_argument("--floor-rows", type=int, default=200_000, help="rows the floor is timed on")
    ap.add_argument("--cache", type=Path, default=None, help="where the stores go (None: $SLIME_CACHE/bench_audit)")
    ap.add_argument("--child", choices=("audit", "attack", "floor"), help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--progress", action="store_true", help="show the audit's progress bars")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = ap.parse_args()
    if args.child:
        run = {"audit": child_audit, "attack": child_attack, "floor": child_floor}[args.child]
        print(json.dumps(run(args) | {"peak_rss_mib": peak_rss_mib()}))
        return
    from slime_core.infra import settings
    from slime_core.stages.bundle import load_bundle

    cache = args.cache or settings.cache_root() / "bench_audit"
    cache.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    pool = load_bundle(None).pool_embeddings[args.victim]
    result = {"batch_size": args.batch_size, "k": args.k, "n_align": args.n_align, "victim": args.victim,
              "engine": args.engine, "cpus": os.cpu_count(), "audit": {}}
    floor, floor_rss = in_child("floor", args)
    result["floor"] = dict(floor, peak_rss_mib=floor_rss)
    print(f"floor: {floor['rows_per_second']:,.0f} rows/s ({floor['rows']:,} rows, V={floor['vocabulary']})", flush=True)
    core, core_rss = in_child("attack", args)
    result["attack"] = dict(core, peak_rss_mib=core_rss, **ratios(core, floor, "floor"))
    print(f"attack core: {core['rows_per_second']:,.0f} rows/s, {result['attack']['vs_floor']:.2f}x the floor's time "
          f"({result['attack']['vs_floor_cpu']:.2f}x its CPU time)", flush=True)
    for rows in sizes:
        t = time.perf_counter()
        store = write_store(cache / f"store_{rows}.parquet", rows, pool)
        print(f"store {store} ready in {time.perf_counter() - t:.0f} s", flush=True)
        out = cache / f"out_{rows}.parquet"
        shutil.rmtree(out, ignore_errors=True)
        run, rss = in_child("audit", args, store=store, out=out)
        shutil.rmtree(out, ignore_errors=True)
        run.update(peak_rss_mib=rss, **ratios(run, floor, "floor"), **ratios(run, core, "attack"))
        result["audit"][str(rows)] = run
        print(f"{rows:,} rows: {run['rows_per_second']:,.0f} rows/s ({run['seconds']:.0f} s), {run['vs_floor']:.2f}x "
              f"the floor's time ({run['vs_floor_cpu']:.2f}x its CPU time), {run['vs_attack']:.2f}x the attack core's "
              f"({run['vs_attack_cpu']:.2f}x), peak RSS {rss:,.0f} MiB", flush=True)
    args.results.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
