"""`slime audit` on a LanceDB table (a `name.lance` folder): the same output table as a .npy store of the same rows
(ids from row numbers and from an id column), bad rows skipped and listed as for the other stores, a resume that
remakes only the missing parts, a table written since refused as another run, and bad paths in one line, exit 2.
`--engine ray` reads the table in its workers too (the store travels as its path and version). Skipped, saying
why, where lancedb (the [scale] extra) is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_store_audit import assert_one_line_error, audit, store_rows, summary_of, tiny, tiny_attributes  # noqa: F401

from conftest import TINY_VICTIM_DIM

lancedb = pytest.importorskip("lancedb", reason="LanceDB is the [scale] extra: pip install -e '.[scale]'")


def fixed(X: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(X.ravel().astype(np.float32)), X.shape[1])


def write_lance(folder: Path, name: str, columns: dict, fragments: int = 3) -> Path:
    """A LanceDB table `folder/name.lance` of `columns`, written in `fragments` parts (batches then cross them).
    One part keeps NaN vectors: `create_table` writes them as they are, `add` refuses them."""
    table = pa.table(columns)
    cuts = np.linspace(0, table.num_rows, fragments + 1).astype(int)
    db = lancedb.connect(folder)
    made = db.create_table(name, table.slice(0, cuts[1]))
    for a, b in zip(cuts[1:-1], cuts[2:]):
        made.add(table.slice(a, b - a))
    return folder / f"{name}.lance"


def test_a_lance_table_gives_the_npy_stores_table(capsys, tmp_path, tiny, tiny_bundle):
    X = store_rows(tiny_bundle, 300)
    np.save(tmp_path / "store.npy", X)
    names = [f"photo-{i:04d}" for i in range(300)]
    table = write_lance(tmp_path, "store", {"vector": fixed(X), "row": pa.array(np.arange(300), pa.int64()),
                                            "name": names})
    runs = {"npy": (tmp_path / "store.npy", ()), "lance": (table, ()),  # "vector": LanceDB's usual column
            "lance_ids": (table, ("--id-column", "row")), "lance_names": (table, ("--id-column", "name"))}
    for key, (store, more) in runs.items():
        code, out, err = audit(capsys, tiny, store, tmp_path / f"{key}.out", *more)
        assert code == 0, (key, err)
        assert "wrote 300 rows" in out
    npy = pq.read_table(tmp_path / "npy.out")
    assert pq.read_table(tmp_path / "lance.out").equals(npy)
    assert pq.read_table(tmp_path / "lance_ids.out").equals(npy)  # the id column holds the row numbers
    named = pq.read_table(tmp_path / "lance_names.out")
    assert named.column("id").to_pylist() == names and named.drop_columns("id").equals(npy.drop_columns("id"))
    s = summary_of(tmp_path / "lance.out")
    assert s == summary_of(tmp_path / "npy.out") | {"settings": s["settings"]}
    store = s["settings"]["input"]
    assert store["kind"] == "lance" and store["column"] == "vector" and store["version"] == 3 and store["rows"] == 300


def test_bad_rows_in_a_lance_table_are_skipped_and_listed(capsys, tmp_path, tiny, tiny_bundle):
    X = store_rows(tiny_bundle, 150, seed=2)
    X[3, 0], X[70] = np.nan, 0.0
    X[100, 5] = np.inf
    rows = [list(map(float, r)) for r in X]
    rows[120] = None
    table = write_lance(tmp_path, "s", {"embedding": pa.array(rows, pa.list_(pa.float32()))}, fragments=1)
    code, out, err = audit(capsys, tiny, table, tmp_path / "r.parquet")
    assert code == 0, err
    assert "wrote 146 rows" in out and "4 skipped" in out
    ids = pq.read_table(tmp_path / "r.parquet").column("id").to_pylist()
    assert sorted(set(range(150)) - set(ids)) == [3, 70, 100, 120]
    s = summary_of(tmp_path / "r.parquet")
    assert s["skipped"] == {"NaN or inf": 2, "all zeros": 1, f"null or not {TINY_VICTIM_DIM} values": 1}
    assert [r["id"] for r in s["first_skipped"]] == [3, 70, 100, 120]


def test_a_resume_remakes_only_the_missing_parts_and_a_written_table_is_another_run(capsys, tmp_path, tiny,
                                                                                    tiny_bundle):
    X = store_rows(tiny_bundle, 250, seed=4)
    table = write_lance(tmp_path, "s", {"vector": fixed(X)})
    out = tmp_path / "r"
    assert audit(capsys, tiny, table, out)[0] == 0
    whole = pq.read_table(out)
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert len(kept) == 4
    for i in (1, 3):
        (out / f"part-{i:06d}.parquet").unlink()
    code, text, err = audit(capsys, tiny, table, out)
    assert code == 0, err
    assert "from an earlier run" in text
    assert pq.read_table(out).equals(whole)
    remade = {p.name for p in out.glob("part-*.parquet") if p.stat().st_mtime_ns != kept[p.name]}
    assert remade == {"part-000001.parquet", "part-000003.parquet"}  # the others were read back, not rewritten

    lancedb.connect(tmp_path).open_table("s").add(pa.table({"vector": fixed(X[:5])}))  # a new version of the table
    code, _, err = audit(capsys, tiny, table, out)
    assert_one_line_error(code, err)
    assert "different run (input" in err


def test_bad_lance_paths_are_one_line_and_exit_2(capsys, tmp_path, tiny, tiny_bundle, monkeypatch):
    X = store_rows(tiny_bundle, 20)
    good = write_lance(tmp_path, "good", {"vector": fixed(X), "text": [str(i) for i in range(20)]}, fragments=1)
    (tmp_path / "folder.lance").mkdir()
    (tmp_path / "folder.lance" / "notes.txt").write_text("not a table")
    (tmp_path / "file.lance").write_text("not a table")
    cases = {"a folder that is no table": (tmp_path / "folder.lance", (), "not a LanceDB table"),
             "a file": (tmp_path / "file.lance", (), "is a file, not a LanceDB table"),
             "no such table": (tmp_path / "none.lance", (), "no such LanceDB table"),
             "no such column": (good, ("--column", "emb"), "no embedding column 'emb'"),
             "text column": (good, ("--column", "text"), "lists of numbers"),
             "no such id column": (good, ("--id-column", "image_id"), "no id column 'image_id'")}
    for name, (store, more, words) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '_')}"
        code, _, err = audit(capsys, tiny, store, out, *more)
        assert_one_line_error(code, err)
        assert words in err and str(store.name) in err, (name, err)
        assert not any(out.glob("part-*")), name
    monkeypatch.setitem(sys.modules, "lancedb", None)  # as if the [scale] extra were not installed
    code, _, err = audit(capsys, tiny, good, tmp_path / "out-no-lancedb")
    assert_one_line_error(code, err)
    assert 'pip install -e ".[scale]"' in err


def test_the_ray_engine_reads_a_lance_table(capsys, tmp_path, tiny, tiny_bundle):
    pytest.importorskip("ray.data", reason="Ray is the [scale] extra: pip install -e '.[scale]'")
    X = store_rows(tiny_bundle, 150, seed=3)
    table = write_lance(tmp_path, "s", {"vector": fixed(X), "name": [f"p{i}" for i in range(150)]})
    for engine in ("local", "ray"):
        code, out, err = audit(capsys, tiny, table, tmp_path / f"{engine}.out", "--id-column", "name",
                               "--engine", engine, "--workers", "2")
        assert code == 0, (engine, err)
        assert "wrote 150 rows" in out
    assert pq.read_table(tmp_path / "ray.out").equals(pq.read_table(tmp_path / "local.out"))
