"""`slime audit --engine ray` on a local Ray with 2 workers: the same Parquet, row for row, as the local engine, and
the same resume after parts go missing. Skipped, saying why, where Ray (the [scale] extra) is not installed."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from test_store_audit import audit, store_rows, summary_of, tiny, tiny_attributes, write_parquet  # noqa: F401

pytest.importorskip("ray.data", reason="Ray is the [scale] extra: pip install -e '.[scale]'")


def test_ray_engine_gives_the_local_engines_table_and_resumes(capsys, tmp_path, tiny, tiny_bundle):
    X = store_rows(tiny_bundle, 200, seed=3)
    X[17] = np.nan  # a row that cannot be scored: skipped and listed by both engines
    write_parquet(tmp_path / "s.parquet", X, row_group_size=50)
    code, _, err = audit(capsys, tiny, tmp_path / "s.parquet", tmp_path / "local.parquet")
    assert code == 0, err
    ray_out = tmp_path / "ray.parquet"
    code, out, err = audit(capsys, tiny, tmp_path / "s.parquet", ray_out, "--engine", "ray", "--workers", "2")
    assert code == 0, err
    assert "wrote 199 rows" in out and "1 skipped" in out
    local, on_ray = pq.read_table(tmp_path / "local.parquet"), pq.read_table(ray_out)
    assert on_ray.equals(local)  # every row, every column, in the same order
    assert on_ray.column("id").to_pylist() == [i for i in range(200) if i != 17]
    expected = summary_of(tmp_path / "local.parquet")
    assert summary_of(ray_out) | {"settings": None} == expected | {"settings": None}

    # parts lost (a killed worker, a deleted file): a second Ray run makes only those, and the table is whole again
    for i in (0, 2):
        (ray_out / f"part-{i:06d}.parquet").unlink()
    code, out, err = audit(capsys, tiny, tmp_path / "s.parquet", ray_out, "--engine", "ray", "--workers", "2")
    assert code == 0, err
    assert "from an earlier run" in out
    assert pq.read_table(ray_out).equals(local)


def test_ray_engine_refuses_captions_in_one_line(capsys, tmp_path, tiny, tiny_bundle):
    np.save(tmp_path / "s.npy", store_rows(tiny_bundle, 10))
    code, _, err = audit(capsys, tiny, tmp_path / "s.npy", tmp_path / "o.parquet", "--engine", "ray",
                         "--caption", "consensus")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no captions" in err
