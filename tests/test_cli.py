"""The `slime` CLI contract: JSON fields, JSONL per image, eval JSON, and one-line errors with exit status 2."""

import json

import numpy as np
import pytest

from conftest import BLACK_DOG, DEMO, demo_records
from slime_core.cli import main

pytestmark = pytest.mark.slow  # real weights: EfficientNet-Lite, MiniLM, spaCy, the default bundle

DOG = str(DEMO / "images" / BLACK_DOG)
CONTRACT = {"image", "victim", "attacker", "n_align", "k", "alignment_cosine", "tags", "neighbors", "caption"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_contract(d, victim="lite0", n_align=100, k=5):
    assert CONTRACT <= set(d)
    assert d["victim"] == victim and d["attacker"] == "lite2-minilm" and d["n_align"] == n_align and d["k"] == k
    assert 0 < d["alignment_cosine"] <= 1
    assert len(d["tags"]) == k and all(set(t) == {"tag", "score"} for t in d["tags"])
    scores = [t["score"] for t in d["tags"]]
    assert scores == sorted(scores, reverse=True)
    assert d["neighbors"] and all(set(n) == {"image", "score"} for n in d["neighbors"])
    assert d["caption"] is None


def assert_one_line_error(code, err, command="attack"):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"slime {command}: error: ")
    assert "Traceback" not in err


def test_attack_json(capsys):
    code, out, _ = run(capsys, "attack", "--image", DOG, "--n-align", "100", "--k", "5", "--format", "json")
    assert code == 0
    d = json.loads(out)
    assert_contract(d)
    assert d["image"] == DOG


def test_attack_text(capsys):
    code, out, _ = run(capsys, "attack", "--image", DOG, "--n-align", "100", "--k", "3")
    assert code == 0
    assert out.startswith(DOG) and "tags:" in out and "neighbours:" in out
    assert "alignment cosine" in out


def test_attack_folder_jsonl(capsys, tmp_path):
    from conftest import make_folder

    records = demo_records()[:3]
    folder = make_folder(tmp_path / "three", records, ["test", "test", "other"])
    code, out, _ = run(capsys, "attack", "--data", str(folder), "--split", "test", "--n-align", "100", "--k", "5",
                       "--format", "jsonl", "--no-progress")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2  # one JSON object per image of the split
    rows = [json.loads(line) for line in lines]
    assert [r["image"] for r in rows] == [records[0]["image"], records[1]["image"]]
    for r in rows:
        assert_contract(r)


def test_attack_embedding_file(capsys, tmp_path, attacker):
    emb = attacker.bundle.pool_embeddings["lite0"][:2]
    np.save(tmp_path / "e.npy", emb)
    code, out, _ = run(capsys, "attack", "--embedding", str(tmp_path / "e.npy"), "--n-align", "100", "--k", "5",
                       "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["image"] for r in rows] == [f"{tmp_path / 'e.npy'}[0]", f"{tmp_path / 'e.npy'}[1]"]
    for r in rows:
        assert_contract(r)


def test_eval_json(capsys, small_test_folder):
    code, out, _ = run(capsys, "eval", "--data", str(small_test_folder), "--split", "test", "--n-align", "30",
                       "--k", "5", "--limit", "4", "--bootstrap", "50", "--format", "json", "--no-progress")
    assert code == 0
    result = json.loads(out)
    assert result["n_images"] == 4 and result["victim"] == "lite0"
    [row] = result["rows"]
    assert row["n_align"] == 30 and row["k"] == 5
    f1 = row["metrics"]["neighbourhood_f1"]
    assert {"attack", "ci_low", "ci_high", "frequent", "nearest", "oracle", "vs_frequent", "vs_nearest"} <= set(f1)
    assert f1["ci_low"] <= f1["attack"] <= f1["ci_high"]


def test_pool_lists_the_pool(capsys, default_bundle):
    code, out, _ = run(capsys, "pool")
    assert code == 0
    assert out.split() == default_bundle.pool["images"]


# ---------------------------------------------------------------- errors: one line, status 2


def test_n_align_beyond_pool(capsys):
    assert_one_line_error(*run(capsys, "attack", "--image", DOG, "--n-align", "100000")[::2])


def test_eval_n_align_beyond_pool(capsys, small_test_folder):
    code, _, err = run(capsys, "eval", "--data", str(small_test_folder), "--n-align", "30,100000", "--k", "5")
    assert_one_line_error(code, err, "eval")
    assert "N=100000" in err


def test_missing_image(capsys, tmp_path):
    code, _, err = run(capsys, "attack", "--image", str(tmp_path / "nope.jpg"), "--n-align", "30")
    assert_one_line_error(code, err)
    assert "nope.jpg" in err and "no such image file" in err


def test_corrupt_image(capsys, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(DEMO.joinpath("images", BLACK_DOG).read_bytes()[:500])
    code, _, err = run(capsys, "attack", "--image", str(tmp_path / "broken.jpg"), "--n-align", "30")
    assert_one_line_error(code, err)
    assert "broken.jpg: not a readable image" in err


def test_no_input(capsys):
    code, _, err = run(capsys, "attack", "--n-align", "30")
    assert_one_line_error(code, err)
    assert "give --image PATH" in err


def test_missing_data_folder(capsys, tmp_path):
    code, _, err = run(capsys, "attack", "--data", str(tmp_path), "--n-align", "30", "--format", "jsonl")
    assert_one_line_error(code, err)
    assert "no captions.jsonl" in err


def test_wrong_victim_pool(capsys, tmp_path):
    np.save(tmp_path / "pool.npy", np.ones((3, 8), np.float32))
    code, _, err = run(capsys, "attack", "--image", DOG, "--victim", "svc", "--victim-pool", str(tmp_path / "pool.npy"))
    assert_one_line_error(code, err)
    assert "3 rows" in err


def test_wrong_dimension_embedding(capsys, tmp_path):
    np.save(tmp_path / "e.npy", np.ones(100, np.float32))
    code, _, err = run(capsys, "attack", "--embedding", str(tmp_path / "e.npy"), "--n-align", "30")
    assert_one_line_error(code, err)
    assert "100 dims" in err


def test_bad_bundle(capsys, tmp_path):
    code, _, err = run(capsys, "attack", "--image", DOG, "--bundle", str(tmp_path))
    assert_one_line_error(code, err)
    assert "no attacker bundle here" in err


def test_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["attack", "--format", "xml"])
    assert exc.value.code == 2
