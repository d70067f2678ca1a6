"""The `slime` CLI contract: JSON fields, JSONL per image, eval JSON, and one-line errors with exit status 2,
on the tiny bundle (`--bundle`); the same contract once on the real default bundle, marked `slow`."""

import json

import numpy as np
import pytest

from slime_core.cli.main import main

from conftest import BLACK_DOG, DEMO, TINY_ATTACKER, TINY_SPLITS, TINY_VICTIM, TINY_VICTIM_DIM, demo_records

DOG = str(DEMO / "images" / BLACK_DOG)
CONTRACT = {"image", "victim", "attacker", "n_align", "k", "alignment_cosine", "tags", "neighbors", "caption"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tiny(tiny_bundle_dir, tiny_data, tiny_env) -> list[str]:
    """Options pointing a command at the tiny bundle, its victim and its pool's dataset folder."""
    return ["--bundle", str(tiny_bundle_dir), "--victim", TINY_VICTIM, "--pool-data", str(tiny_data)]


def assert_contract(d, victim=TINY_VICTIM, n_align=30, k=5, attacker=TINY_ATTACKER):
    assert CONTRACT <= set(d)
    assert d["victim"] == victim and d["attacker"] == attacker and d["n_align"] == n_align and d["k"] == k
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


def test_attack_json(capsys, tiny):
    code, out, _ = run(capsys, "attack", *tiny, "--image", DOG, "--n-align", "30", "--k", "5", "--format", "json")
    assert code == 0
    d = json.loads(out)
    assert_contract(d)
    assert d["image"] == DOG


@pytest.mark.slow
def test_attack_json_on_the_default_bundle(capsys):
    code, out, _ = run(capsys, "attack", "--image", DOG, "--n-align", "100", "--k", "5", "--format", "json")
    assert code == 0
    d = json.loads(out)
    assert_contract(d, victim="lite0", n_align=100, attacker="lite2-minilm")
    assert 0 < d["alignment_cosine"] <= 1 and d["image"] == DOG


def test_attack_text(capsys, tiny):
    code, out, _ = run(capsys, "attack", *tiny, "--image", DOG, "--n-align", "30", "--k", "3")
    assert code == 0
    assert out.startswith(DOG) and "tags:" in out and "neighbours:" in out
    assert "alignment cosine" in out


def test_attack_folder_jsonl(capsys, tmp_path, tiny):
    from conftest import make_folder

    records = demo_records()[len(TINY_SPLITS):len(TINY_SPLITS) + 3]  # outside the tiny bundle's pool
    folder = make_folder(tmp_path / "three", records, ["test", "test", "other"])
    code, out, _ = run(capsys, "attack", *tiny, "--data", str(folder), "--split", "test", "--n-align", "30", "--k", "5",
                       "--format", "jsonl", "--no-progress")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2  # one JSON object per image of the split
    rows = [json.loads(line) for line in lines]
    assert [r["image"] for r in rows] == [records[0]["image"], records[1]["image"]]
    for r in rows:
        assert_contract(r)


def test_attack_embedding_file(capsys, tmp_path, tiny, tiny_bundle):
    emb = tiny_bundle.pool_embeddings[TINY_VICTIM][:2]
    np.save(tmp_path / "e.npy", emb)
    code, out, _ = run(capsys, "attack", *tiny, "--embedding", str(tmp_path / "e.npy"), "--n-align", "30", "--k", "5",
                       "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["image"] for r in rows] == [f"{tmp_path / 'e.npy'}[0]", f"{tmp_path / 'e.npy'}[1]"]
    for r in rows:
        assert_contract(r)


def test_eval_json(capsys, tiny, tiny_data):
    code, out, _ = run(capsys, "eval", *tiny, "--data", str(tiny_data), "--split", "test", "--n-align", "30",
                       "--k", "5", "--limit", "4", "--bootstrap", "50", "--format", "json", "--no-progress")
    assert code == 0
    result = json.loads(out)
    assert result["n_images"] == 4 and result["victim"] == TINY_VICTIM
    [row] = result["rows"]
    assert row["n_align"] == 30 and row["k"] == 5
    f1 = row["metrics"]["neighbourhood_f1"]
    assert {"attack", "ci_low", "ci_high", "frequent", "nearest", "oracle", "vs_frequent", "vs_nearest"} <= set(f1)
    assert f1["ci_low"] <= f1["attack"] <= f1["ci_high"]


@pytest.mark.slow
def test_eval_json_on_the_default_bundle(capsys, small_test_folder):
    code, out, _ = run(capsys, "eval", "--data", str(small_test_folder), "--split", "test", "--n-align", "30",
                       "--k", "5", "--limit", "4", "--bootstrap", "50", "--format", "json", "--no-progress")
    assert code == 0
    result = json.loads(out)
    assert result["n_images"] == 4 and result["victim"] == "lite0"
    f1 = result["rows"][0]["metrics"]["neighbourhood_f1"]
    assert f1["ci_low"] <= f1["attack"] <= f1["ci_high"]


def test_pool_lists_the_pool(capsys, tiny_bundle, tiny_bundle_dir):
    code, out, _ = run(capsys, "pool", "--bundle", str(tiny_bundle_dir))
    assert code == 0
    assert out.split() == tiny_bundle.pool["images"]


@pytest.mark.slow
def test_pool_lists_the_default_pool(capsys, default_bundle):
    code, out, _ = run(capsys, "pool")
    assert code == 0
    assert out.split() == default_bundle.pool["images"]


# ---------------------------------------------------------------- errors: one line, status 2


def test_n_align_beyond_pool(capsys, tiny):
    code, _, err = run(capsys, "attack", *tiny, "--image", DOG, "--n-align", "100000")
    assert_one_line_error(code, err)
    assert "N=100000" in err


def test_eval_n_align_beyond_pool(capsys, tiny, tiny_data):
    code, _, err = run(capsys, "eval", *tiny, "--data", str(tiny_data), "--n-align", "30,100000", "--k", "5")
    assert_one_line_error(code, err, "eval")
    assert "N=100000" in err


def test_missing_image(capsys, tmp_path, tiny):
    code, _, err = run(capsys, "attack", *tiny, "--image", str(tmp_path / "nope.jpg"), "--n-align", "30")
    assert_one_line_error(code, err)
    assert "nope.jpg" in err and "no such image file" in err


def test_corrupt_image(capsys, tmp_path, tiny):
    (tmp_path / "broken.jpg").write_bytes(DEMO.joinpath("images", BLACK_DOG).read_bytes()[:500])
    code, _, err = run(capsys, "attack", *tiny, "--image", str(tmp_path / "broken.jpg"), "--n-align", "30")
    assert_one_line_error(code, err)
    assert "broken.jpg: not a readable image" in err


def test_no_input(capsys, tiny):
    code, _, err = run(capsys, "attack", *tiny, "--n-align", "30")
    assert_one_line_error(code, err)
    assert "give --image PATH" in err


def test_missing_data_folder(capsys, tmp_path, tiny):
    code, _, err = run(capsys, "attack", *tiny, "--data", str(tmp_path), "--n-align", "30", "--format", "jsonl")
    assert_one_line_error(code, err)
    assert "no captions.jsonl" in err


def test_wrong_victim_pool(capsys, tmp_path, tiny):
    np.save(tmp_path / "pool.npy", np.ones((3, 8), np.float32))
    code, _, err = run(capsys, "attack", *tiny, "--image", DOG, "--victim", "svc", "--victim-pool", str(tmp_path / "pool.npy"))
    assert_one_line_error(code, err)
    assert "3 rows" in err


def test_wrong_dimension_embedding(capsys, tmp_path, tiny):
    np.save(tmp_path / "e.npy", np.ones(100, np.float32))
    code, _, err = run(capsys, "attack", *tiny, "--embedding", str(tmp_path / "e.npy"), "--n-align", "30")
    assert_one_line_error(code, err)
    assert f"100 dims; '{TINY_VICTIM}' embeddings have {TINY_VICTIM_DIM}" in err


def test_tiny_bundle_without_its_encoders_is_refused(capsys, tiny_bundle_dir, monkeypatch):
    """Without the overrides it was built under, the tiny bundle must not meet the real encoders."""
    from slime_core.stages.encoders import OVERRIDES_ENV

    monkeypatch.delenv(OVERRIDES_ENV, raising=False)
    code, _, err = run(capsys, "attack", "--bundle", str(tiny_bundle_dir), "--victim", TINY_VICTIM, "--image", DOG)
    assert_one_line_error(code, err)
    assert f"the bundle's '{TINY_ATTACKER}' embeddings were made with" in err


def test_bad_bundle(capsys, tmp_path):
    code, _, err = run(capsys, "attack", "--image", DOG, "--bundle", str(tmp_path))
    assert_one_line_error(code, err)
    assert "no attacker bundle here" in err


def test_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["attack", "--format", "xml"])
    assert exc.value.code == 2


def test_caption_auto_is_mbr_where_the_pool_captions_are_else_local(monkeypatch, tmp_path):
    import argparse

    from slime_core.cli import main as cli
    from slime_core.infra import settings
    from slime_core.stages import write

    chosen = []
    monkeypatch.setattr(write, "make_writer", lambda spec, mode=None: chosen.append(spec))
    args = argparse.Namespace(caption="auto", caption_mode=None, pool_data=None)
    monkeypatch.setenv("SLIME_DATA", str(settings.DEMO_DATA))  # the demo gallery: test photos, not the pool
    cli.writer_from_args(args)
    (tmp_path / "captions.jsonl").write_text("")
    cli.writer_from_args(argparse.Namespace(caption="auto", caption_mode=None, pool_data=tmp_path))
    cli.writer_from_args(argparse.Namespace(caption="auto", caption_mode=None, pool_data=tmp_path / "absent"))
    cli.writer_from_args(argparse.Namespace(caption="consensus", caption_mode=None, pool_data=None))
    assert chosen == ["local", "mbr", "local", "consensus"]
