"""`slime audit` on the tiny bundle: .npy and Parquet stores give the same table; bad input is one line and exit 2
before any work; NaN/inf, all-zero and null rows are skipped, counted and listed; a run killed with SIGKILL resumes
to exactly the table of an uninterrupted run; another run's --out is refused. The store readers' bad inputs are
generated with Hypothesis (a small fixed budget)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slime_core.cli.main import main
from slime_core.infra.errors import SlimeError
from slime_core.stages import stores

from conftest import TINY_VICTIM, TINY_VICTIM_DIM

BUDGET = settings(max_examples=20, derandomize=True, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("slime audit: error: ") and "Traceback" not in err


# The packaged table names vehicles, sport...: words the tiny bundle's 91 tags lack (each attribute must match one).
TINY_ATTRIBUTES = {"children": {"words": ["child", "boy", "girl", "baby"]},
                   "people": {"words": ["man", "woman", "lady", "people", "person", "boy", "girl", "child"]},
                   "animals": {"words": ["dog"]}, "water": {"words": ["lake", "beach", "wave", "swim"]}}


@pytest.fixture(scope="session")
def tiny_attributes(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("attributes") / "tiny_attributes.json"
    path.write_text(json.dumps(TINY_ATTRIBUTES))
    return path


@pytest.fixture
def tiny(tiny_bundle_dir, tiny_data, tiny_env, tiny_attributes) -> list[str]:
    return ["--bundle", str(tiny_bundle_dir), "--victim", TINY_VICTIM, "--pool-data", str(tiny_data),
            "--attributes", str(tiny_attributes), "--n-align", "30", "--k", "5", "--no-progress"]


def store_rows(tiny_bundle, n: int, seed: int = 0) -> np.ndarray:
    """n victim-like embeddings: the tiny pool's victim rows, mixed and perturbed (seeded)."""
    pool = tiny_bundle.pool_embeddings[TINY_VICTIM]
    rng = np.random.default_rng(seed)
    mix = rng.dirichlet(np.ones(len(pool)) * 0.3, size=n).astype(np.float32)
    return (mix @ pool + 0.05 * rng.normal(size=(n, pool.shape[1]))).astype(np.float32)


def write_parquet(path: Path, X: np.ndarray, ids=None, fixed: bool = True, row_group_size: int = 37) -> Path:
    values = pa.array(X.ravel().astype(np.float32))
    column = (pa.FixedSizeListArray.from_arrays(values, X.shape[1]) if fixed
              else pa.array([list(map(float, r)) for r in X], pa.list_(pa.float32())))
    table = pa.table({"embedding": column} | ({"image_id": ids} if ids is not None else {}))
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def audit(capsys, tiny, store: Path, out: Path, *more) -> tuple[int, str, str]:
    return run(capsys, "audit", *tiny, "--embeddings", str(store), "--out", str(out), "--batch-size", "64", *more)


def summary_of(out: Path) -> dict:
    return json.loads((out / "_summary.json").read_text())["store"]


def test_npy_and_parquet_stores_give_the_same_table(capsys, tmp_path, tiny, tiny_bundle):
    X = store_rows(tiny_bundle, 300)
    np.save(tmp_path / "store.npy", X)
    write_parquet(tmp_path / "store.parquet", X)
    for name in ("store.npy", "store.parquet"):
        code, out, err = audit(capsys, tiny, tmp_path / name, tmp_path / f"{name}.out")
        assert code == 0, err
        assert "wrote 300 rows" in out
    a, b = (pq.read_table(tmp_path / f"{n}.out") for n in ("store.npy", "store.parquet"))
    assert a.equals(b)
    assert a.column("id").to_pylist() == list(range(300))  # row numbers, each once, in order
    assert [c for c in a.column_names if c.startswith("attr_")] == [f"attr_{name}" for name in TINY_ATTRIBUTES]
    assert all(len(t) == 5 for t in a.column("tags").to_pylist())
    assert sorted(p.name for p in (tmp_path / "store.npy.out").iterdir() if p.suffix == ".parquet") == \
        [f"part-{i:06d}.parquet" for i in range(5)]  # one part per batch of 64
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "store.npy.out")) == 300  # manifest and summary are not read as data
    html = (tmp_path / "store.npy.out" / "_summary.html").read_text()
    assert "Sensitive attributes beside their prior" in html and "Most exposed embeddings" in html
    s = summary_of(tmp_path / "store.npy.out")
    assert s["rows_scored"] == 300 and s["rows_skipped"] == 0 and s["rows_resumed"] == 0
    assert [a["name"] for a in s["attributes"]] == list(TINY_ATTRIBUTES)
    assert all(0 <= a["prior"] <= 1 and 0 <= a["share"] <= 1 for a in s["attributes"])
    margins = [r["margin"] for r in s["most_exposed"]]
    assert len(margins) == 20 and margins == sorted(margins, reverse=True)
    assert s == summary_of(tmp_path / "store.parquet.out") | {"settings": s["settings"]}  # but the input's name


def test_summary_elsewhere_and_help(capsys, tmp_path, tiny, tiny_bundle):
    np.save(tmp_path / "s.npy", store_rows(tiny_bundle, 10))
    code, out, err = audit(capsys, tiny, tmp_path / "s.npy", tmp_path / "r", "--summary", str(tmp_path / "sum.html"))
    assert code == 0, err
    assert (tmp_path / "sum.html").is_file() and (tmp_path / "sum.json").is_file()
    assert not (tmp_path / "r" / "_summary.html").exists()
    code, _, err = audit(capsys, tiny, tmp_path / "s.npy", tmp_path / "r2", "--summary", str(tmp_path / "no" / "s.html"))
    assert_one_line_error(code, err)
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "--help"])
    assert exit_.value.code == 0 and "--id-column" in capsys.readouterr().out


def test_parquet_ids_and_plain_lists(capsys, tmp_path, tiny, tiny_bundle):
    X = store_rows(tiny_bundle, 100, seed=1)
    ids = [f"photo-{i:04d}" for i in range(100)]
    write_parquet(tmp_path / "s.parquet", X, ids=ids, fixed=False, row_group_size=30)
    code, _, err = audit(capsys, tiny, tmp_path / "s.parquet", tmp_path / "r.parquet", "--id-column", "image_id")
    assert code == 0, err
    assert pq.read_table(tmp_path / "r.parquet").column("id").to_pylist() == ids


def test_bad_rows_are_skipped_counted_and_listed(capsys, tmp_path, tiny, tiny_bundle):
    X = store_rows(tiny_bundle, 150, seed=2)
    X[3, 0], X[70] = np.nan, 0.0
    X[100, 5] = np.inf
    X[120] = 1e-30  # a norm no encoder gives: refused by the embedding gate, so skipped here
    np.save(tmp_path / "s.npy", X)
    code, out, err = audit(capsys, tiny, tmp_path / "s.npy", tmp_path / "r.parquet")
    assert code == 0, err
    assert "wrote 146 rows" in out and "4 skipped" in out
    ids = pq.read_table(tmp_path / "r.parquet").column("id").to_pylist()
    assert sorted(set(range(150)) - set(ids)) == [3, 70, 100, 120] and len(ids) == len(set(ids))
    s = summary_of(tmp_path / "r.parquet")
    assert s["rows_skipped"] == 4 and s["skipped"] == {"NaN or inf": 2, "all zeros": 1,
                                                       "norm outside 1e-12..1e12": 1}
    assert [r["id"] for r in s["first_skipped"]] == [3, 70, 100, 120]
    assert ">3<" in (tmp_path / "r.parquet" / "_summary.html").read_text()  # listed in the page too


def test_null_and_short_vectors_in_a_list_column_are_skipped(capsys, tmp_path, tiny, tiny_bundle):
    X = store_rows(tiny_bundle, 40, seed=3)
    rows = [list(map(float, r)) for r in X]
    rows[4], rows[9] = None, rows[9][:-1]
    pq.write_table(pa.table({"embedding": pa.array(rows, pa.list_(pa.float64()))}), tmp_path / "s.parquet")
    code, _, err = audit(capsys, tiny, tmp_path / "s.parquet", tmp_path / "r.parquet")
    assert code == 0, err
    s = summary_of(tmp_path / "r.parquet")
    assert s["skipped"] == {f"null or not {TINY_VICTIM_DIM} values": 2}
    assert [r["id"] for r in s["first_skipped"]] == [4, 9]


def _bad_inputs(tmp_path: Path, X: np.ndarray) -> dict[str, tuple[list[str], str]]:
    np.save(tmp_path / "wide.npy", np.ones((5, TINY_VICTIM_DIM + 1), np.float32))
    write_parquet(tmp_path / "ok.parquet", X)
    data = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    (tmp_path / "a.csv").write_text("1,2\n")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "cars.json").write_text(json.dumps({"cars": {"words": ["car", "truck"]}}))
    pq.write_table(pa.table({"embedding": ["a", "b"]}), tmp_path / "text.parquet")
    ok = str(tmp_path / "ok.parquet")
    return {"wrong dim": (["--embeddings", str(tmp_path / "wide.npy")], "dims"),
            "missing id column": (["--embeddings", ok, "--id-column", "image_id"], "no id column 'image_id'"),
            "missing column": (["--embeddings", ok, "--column", "vec"], "no embedding column 'vec'"),
            "strings": (["--embeddings", str(tmp_path / "text.parquet")], "lists of numbers"),
            "truncated parquet": (["--embeddings", str(tmp_path / "cut.parquet")], "not a readable Parquet file"),
            "not a store": (["--embeddings", str(tmp_path / "a.csv")], "not an embedding store"),
            "a folder": (["--embeddings", str(tmp_path)], "not an embedding store"),
            "missing file": (["--embeddings", str(tmp_path / "none.npy")], "no such"),
            "out is a file": (["--embeddings", ok, "--out", str(tmp_path / "afile")], "is a file"),
            "out under a file": (["--embeddings", ok, "--out", str(tmp_path / "afile" / "r")], "--out"),
            "unknown engine": (["--embeddings", ok, "--engine", "spark"], "unknown --engine"),
            "bad attributes": (["--embeddings", ok, "--attributes", str(tmp_path / "a.csv")], "a.csv"),
            "attribute without tags": (["--embeddings", ok, "--attributes", str(tmp_path / "cars.json")], "'cars'")}


def test_bad_input_is_one_line_and_exit_2_before_any_work(capsys, tmp_path, tiny, tiny_bundle):
    cases = _bad_inputs(tmp_path, store_rows(tiny_bundle, 20))
    for name, (argv, words) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '_')}"
        argv = argv if "--out" in argv else argv + ["--out", str(out)]
        code, _, err = run(capsys, "audit", *tiny, *argv)
        assert_one_line_error(code, err)
        assert words in err, (name, err)
        assert not any(out.glob("part-*")), name  # refused before a part was written


def test_another_runs_out_is_refused(capsys, tmp_path, tiny, tiny_bundle):
    np.save(tmp_path / "s.npy", store_rows(tiny_bundle, 70))
    assert audit(capsys, tiny, tmp_path / "s.npy", tmp_path / "r")[0] == 0
    code, _, err = audit(capsys, tiny[:-3], tmp_path / "s.npy", tmp_path / "r", "--k", "3", "--no-progress")
    assert_one_line_error(code, err)
    assert "different run (k: 5 there, 3 now)" in err and "new --out" in err
    np.save(tmp_path / "s.npy", store_rows(tiny_bundle, 70, seed=9))  # the same name, another file
    os.utime(tmp_path / "s.npy", ns=(1, 1))  # and a different modification time, whatever the clock's resolution
    code, _, err = audit(capsys, tiny, tmp_path / "s.npy", tmp_path / "r")
    assert_one_line_error(code, err)
    assert "different run (input.mtime_ns: " in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, _, err = audit(capsys, tiny, tmp_path / "s.npy", tmp_path / "other")
    assert_one_line_error(code, err)
    assert "folder of other files" in err


def test_a_damaged_part_is_rewritten(capsys, tmp_path, tiny, tiny_bundle):
    np.save(tmp_path / "s.npy", store_rows(tiny_bundle, 200, seed=4))
    assert audit(capsys, tiny, tmp_path / "s.npy", tmp_path / "r")[0] == 0
    whole = pq.read_table(tmp_path / "r")
    part = tmp_path / "r" / "part-000001.parquet"
    part.write_bytes(part.read_bytes()[:100])
    (tmp_path / "r" / "part-000002.parquet").unlink()
    (tmp_path / "r" / ".part-000003.123.tmp").write_bytes(b"half a part")  # a killed run's left-over
    code, out, err = audit(capsys, tiny, tmp_path / "s.npy", tmp_path / "r")
    assert code == 0, err
    assert "from an earlier run" in out
    assert pq.read_table(tmp_path / "r").equals(whole)
    assert not list((tmp_path / "r").glob(".*.tmp"))


def _cli(tiny, store: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "slime_core.cli", "audit", *tiny, "--embeddings", str(store), "--out", str(out),
            "--batch-size", "20"]


def test_a_run_killed_with_sigkill_resumes_to_the_same_table(capsys, tmp_path, tiny, tiny_bundle):
    rows = 8_000
    write_parquet(tmp_path / "s.parquet", store_rows(tiny_bundle, rows, seed=5), row_group_size=300)
    killed = tmp_path / "killed.parquet"
    proc = subprocess.Popen(_cli(tiny, tmp_path / "s.parquet", killed), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "part-000003.parquet").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    parts = len(list(killed.glob("part-*.parquet")))
    assert 4 <= parts < rows // 20, "the run was not killed mid-way"
    resumed = subprocess.run(_cli(tiny, tmp_path / "s.parquet", killed), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "from an earlier run" in resumed.stdout
    code, _, err = audit(capsys, tiny, tmp_path / "s.parquet", tmp_path / "whole.parquet", "--batch-size", "20")
    assert code == 0, err
    a, b = pq.read_table(killed), pq.read_table(tmp_path / "whole.parquet")
    ids = a.column("id").to_pylist()
    assert ids == list(range(rows))  # none missing, none twice
    assert a.equals(b)
    assert summary_of(killed)["most_exposed"] == summary_of(tmp_path / "whole.parquet")["most_exposed"]


# ---- the readers' bad inputs, generated ----------------------------------------------------------------

def _valid_files(tmp: Path) -> dict[str, bytes]:
    X = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    np.save(tmp / "v.npy", X)
    write_parquet(tmp / "v.parquet", X, ids=[f"r{i}" for i in range(50)], row_group_size=16)
    return {".npy": (tmp / "v.npy").read_bytes(), ".parquet": (tmp / "v.parquet").read_bytes()}


@BUDGET
@given(kind=st.sampled_from([".npy", ".parquet"]), cut=st.floats(0, 1), flips=st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4), id_column=st.sampled_from([None, "image_id", "x"]))
def test_damaged_stores_are_refused_in_one_line_or_read(tmp_path, kind, cut, flips, id_column):
    data = bytearray(_valid_files(tmp_path)[kind])
    for where, value in flips:
        data[min(int(where * len(data)), len(data) - 1)] = value
    data = bytes(data[: max(1, int(cut * len(data)))]) if cut < 1 else bytes(data)
    path = tmp_path / f"d{kind}"
    path.write_bytes(data)
    try:
        store = stores.open_store(path, id_column=id_column)
        for batch in store.batches(7):
            assert batch.X.shape == (len(batch.ids), store.dim) and batch.X.dtype == np.float32
            stores.row_problems(batch.X, batch.missing)
    except SlimeError as err:
        assert "\n" not in str(err) and str(path) in str(err)


def test_a_second_run_on_a_busy_out_is_refused_until_the_first_ends(capsys, tmp_path, tiny, tiny_bundle):
    """Two runs on one --out would race for its part files: while one holds it, another is refused in one line
    naming the holder; once the holder is gone (even killed), the folder is free."""
    np.save(tmp_path / "s.npy", store_rows(tiny_bundle, 70))
    out = tmp_path / "r"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from slime_core.experiments.store_audit import exclusive\n"
        f"with exclusive(Path({str(out / '.lock')!r}), 'x'):\n    print('held', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = audit(capsys, tiny, tmp_path / "s.npy", out)
        assert_one_line_error(code, err)
        assert f"in use by another slime audit (pid {holder.pid})" in err and "another --out" in err
        assert not any(out.glob("part-*"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert audit(capsys, tiny, tmp_path / "s.npy", out)[0] == 0  # a killed holder leaves no stale lock
    assert pq.read_table(out).num_rows == 70  # the lock file is not read as a part


def test_the_lock_is_exclusive_in_one_process_too_and_skipped_where_the_file_system_has_none(tmp_path, monkeypatch):
    import errno
    import fcntl

    from slime_core.experiments.store_audit import exclusive

    lock = tmp_path / ".lock"
    with exclusive(lock, "--out here"):
        assert lock.read_text() == f"pid {os.getpid()}"
        with pytest.raises(SlimeError, match=f"--out here is in use by another slime audit \\(pid {os.getpid()}\\)"):
            with exclusive(lock, "--out here"):
                pass
    with exclusive(lock, "--out here"):  # released at the end of the block
        pass

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = []
    with exclusive(lock, "--out here"):
        ran.append(True)
    assert ran == [True]

