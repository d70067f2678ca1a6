"""The paper's configuration without its weights: a tiny random open_clip attacker bundle built from demo
images through `slime build`, attacked with a tiny random ViT-L-14 victim through `slime attack`; COCO and
Karpathy loading with the paper's splits; tag statistics; sampled-negative heads and chunked search."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from slime_core.cli.main import main
from slime_core.infra.errors import SlimeError
from slime_core.stages.encoders import OVERRIDES_ENV, fingerprint, get_encoder
from slime_core.training import build_scale

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "assets" / "demo"
COCO_VAL = REPO.parent / "shared" / "data" / "coco_val2017_captions_only"
TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_env(tmp_path_factory):
    """Tiny random stand-ins for the attacker (32-d) and the ViT-L-14 victim (24-d), as a user would give
    them: architecture JSON files in $SLIME_ENCODER_OVERRIDES."""
    root = tmp_path_factory.mktemp("tinyclip")
    (root / "slime-tiny-bigg.json").write_text(json.dumps(TINY))
    (root / "slime-tiny-l14.json").write_text(json.dumps(TINY | {"embed_dim": 24}))
    return json.dumps({"clip-vit-bigg-14": {"model_config": str(root / "slime-tiny-bigg.json"), "pretrained": None},
                       "clip-vit-l-14": {"model_config": str(root / "slime-tiny-l14.json"), "pretrained": None, "seed": 1}})


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """12 demo images with their captions: 8 train, 2 dev, 2 test."""
    folder = tmp_path_factory.mktemp("data")
    rows = [json.loads(line) for line in (DEMO / "captions.jsonl").read_text().splitlines()[:12]]
    (folder / "images").mkdir()
    with open(folder / "captions.jsonl", "w") as f:
        for i, row in enumerate(rows):
            shutil.copy(DEMO / "images" / row["image"], folder / "images" / row["image"])
            row["split"] = "train" if i < 8 else "dev" if i < 10 else "test"
            f.write(json.dumps(row) + "\n")
    return folder, rows


@pytest.fixture(scope="module")
def tiny_bundle(tiny_env, tiny_data, tmp_path_factory):
    folder, _ = tiny_data
    out = tmp_path_factory.mktemp("bundle") / "clip-vit-bigg-14"
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv(OVERRIDES_ENV, tiny_env)
    from slime_core.stages.rank import RankerConfig
    from slime_core.stages.retrieve import HeadConfig
    from slime_core.training import build as build_mod

    cfg = build_mod.BuildConfig(data=folder, out=out, attacker="clip-vit-bigg-14", cache=cache, folds=2, min_count=1,
                                heads=HeadConfig(epochs=2, batch_size=4), ranker=RankerConfig(epochs=1, candidates=8))
    bundle = build_mod.build(cfg, progress=False, log=lambda m: None)
    mp.undo()
    return out, bundle, cache


def test_build_clip_bundle(tiny_bundle):
    out, bundle, cache = tiny_bundle
    m = json.loads((out / "manifest.json").read_text())
    assert m["attacker"] == "clip-vit-bigg-14" and m["image_encoder"] == m["text_encoder"] == "clip-vit-bigg-14"
    assert m["dims"]["image"] == m["dims"]["text"] == m["dims"]["image_features"] == 32  # no semantics for CLIP
    assert m["victims"] == [] and m["metrics"]["dev_victim"] == "clip-vit-bigg-14"
    assert m["fingerprints"]["clip-vit-bigg-14"].startswith("clip-vit-bigg-14@")
    assert not (out / "semantics.safetensors").exists()
    assert sorted(p.name for p in out.glob("pool_*.safetensors")) == ["pool_clip-vit-bigg-14.safetensors"]
    assert (out / "pool_objects.json").is_file()  # what the detector sees in each pool photo
    # the cache is namespaced by the overrides' fingerprint: a tiny model never answers for the real one
    assert [p.name for p in cache.iterdir() if p.name.startswith("clip")] == [m["fingerprints"]["clip-vit-bigg-14"]]
    assert len(list((cache / "tags").glob("*/*/*.npy"))) == 1 and len(bundle.tags) > 20


def test_cli_defend_with_a_dual_encoder_victim_measures_zero_shot_utility(tiny_bundle, tiny_data, tiny_env,
                                                                          monkeypatch, tmp_path, capsys):
    """ViT-L-14 has a text tower, so the curves also measure the owner's zero-shot tagging; a rotation
    applied to its queries with the same key leaves that unchanged."""
    from slime_core import pipeline
    from slime_core.stages.encoders import EmbeddingCache

    out, _, _ = tiny_bundle
    folder, _ = tiny_data
    monkeypatch.setenv(OVERRIDES_ENV, tiny_env)
    monkeypatch.setattr(pipeline, "EmbeddingCache", lambda root: EmbeddingCache(tmp_path / "defend-cache"))
    argv = ["defend", "--attacker", "clip-vit-bigg-14", "--bundle", str(out), "--victim", "clip-vit-l-14",
            "--data", str(folder), "--pool-data", str(folder), "--defence", "rotation", "--strength", "0,1",
            "--n-align", "6", "--k", "3", "--bootstrap", "20", "--format", "json", "--no-progress"]
    assert main(argv) == 0
    off, on = json.loads(capsys.readouterr().out)
    assert 0 <= off["utility"]["zero_shot_tag_f1"] <= 1
    assert on["utility"]["zero_shot_tag_f1"] == pytest.approx(off["utility"]["zero_shot_tag_f1"])


def test_cli_attack_with_tiny_victim(tiny_bundle, tiny_data, tiny_env, monkeypatch, tmp_path, capsys):
    from slime_core import pipeline
    from slime_core.stages.encoders import EmbeddingCache

    out, bundle, _ = tiny_bundle
    folder, rows = tiny_data
    monkeypatch.setenv(OVERRIDES_ENV, tiny_env)
    monkeypatch.setattr(pipeline, "EmbeddingCache", lambda root: EmbeddingCache(tmp_path / "attack-cache"))
    test_image = folder / "images" / rows[-1]["image"]
    argv = ["attack", "--attacker", "clip-vit-bigg-14", "--bundle", str(out), "--victim", "clip-vit-l-14",
            "--image", str(test_image), "--pool-data", str(folder), "--n-align", "6", "--k", "5", "--format", "json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["attacker"] == "clip-vit-bigg-14" and result["victim"] == "clip-vit-l-14"
    assert len(result["tags"]) == 5 and all(t["tag"] in bundle.tags for t in result["tags"])
    assert len(result["neighbors"]) == 5
    assert list((tmp_path / "attack-cache").iterdir())[0].name == fingerprint("clip-vit-l-14")  # the tiny victim's namespace

    # a bundle for another attacker, or encoders that do not match the bundle's, fail with one clear line
    assert main(argv[:1] + ["--attacker", "lite2-minilm"] + argv[3:]) == 2
    assert "holds a bundle for attacker 'clip-vit-bigg-14', not 'lite2-minilm'" in capsys.readouterr().err
    monkeypatch.delenv(OVERRIDES_ENV)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "embeddings were made with" in err and "SLIME_ENCODER_OVERRIDES" in err and "Traceback" not in err


def test_attacker_flag_picks_models_folder(monkeypatch, tmp_path, capsys):
    from slime_core.stages import bundle as bundle_mod

    monkeypatch.setattr(bundle_mod, "MODELS", tmp_path)
    assert main(["attack", "--attacker", "clip-vit-bigg-14", "--image", "x.jpg"]) == 2
    err = capsys.readouterr().err
    assert f"no bundle for attacker 'clip-vit-bigg-14' in {tmp_path / 'clip-vit-bigg-14'}" in err
    assert "slime build --attacker clip-vit-bigg-14" in err
    assert bundle_mod.resolve_bundle(None, None) is None
    with pytest.raises(SlimeError, match="unknown attacker"):
        bundle_mod.resolve_bundle(None, "nope")


def test_check_bundle_dims_against_registry(tiny_bundle, tmp_path, monkeypatch):
    from slime_core.stages.bundle import check_bundle

    out, _, _ = tiny_bundle
    copy = tmp_path / "b"
    shutil.copytree(out, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m.pop("fingerprints")  # an older bundle: only its dims can be compared
    (copy / "manifest.json").write_text(json.dumps(m))
    monkeypatch.delenv(OVERRIDES_ENV, raising=False)
    with pytest.raises(SlimeError, match="32-d, but the registry's clip-vit-bigg-14 is 1280-d"):
        check_bundle(copy, "clip-vit-bigg-14")
    assert check_bundle(REPO / "models" / "default", "lite2-minilm", "lite0")["attacker"] == "lite2-minilm"


def test_overrides_env_errors_and_fingerprints(monkeypatch):
    monkeypatch.setenv(OVERRIDES_ENV, "[1, 2]")
    with pytest.raises(SlimeError, match="SLIME_ENCODER_OVERRIDES"):
        get_encoder("clip-vit-bigg-14")
    monkeypatch.setenv(OVERRIDES_ENV, json.dumps({"lite0": {"size": 224}}))
    assert fingerprint("lite0") != "lite0" and fingerprint("lite1") == "lite1"
    assert fingerprint("lite0", {"size": 240}) != fingerprint("lite0")


# ---------------------------------------------------------------- scale: sparse positives, search, sampled heads


def test_sparse_rows_match_dense():
    rows = [[0, 3], [], [5, 1, 2], [4]]
    P = build_scale.SparseRows.from_lists(rows, 6)
    dense = P.to_dense()
    assert dense.shape == (4, 6) and dense.sum() == 6 and dense[2, [1, 2, 5]].all()
    np.testing.assert_array_equal(P.tile(2).to_dense(), np.tile(dense, (2, 1)))
    np.testing.assert_array_equal(P.select([2, 0]).to_dense(), dense[[2, 0]])
    cand = np.array([[0, 1, 3], [0, 1, 2], [1, 4, 5], [4, 0, 0]])
    np.testing.assert_array_equal(P.gather(cand), np.take_along_axis(dense, cand, axis=1))


def test_exact_topk_matches_brute_force_in_chunks():
    rng = np.random.default_rng(0)
    q, keys = rng.normal(size=(37, 8)).astype(np.float32), rng.normal(size=(500, 8)).astype(np.float32)
    scores, ids = build_scale.exact_topk(q, keys, 7, "cpu", budget=1000)  # 2 query rows per chunk
    ref = np.argsort(-(q @ keys.T), axis=1)[:, :7]
    np.testing.assert_array_equal(ids, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(q @ keys.T, ref, axis=1), rtol=1e-5)
    excl = build_scale.SparseRows.from_lists([list(r[:2]) for r in ref], 500)
    _, ids2 = build_scale.exact_topk(q, keys, 5, "cpu", exclude=excl, budget=1000)
    np.testing.assert_array_equal(ids2, ref[:, 2:7])


def test_sampled_negative_heads_learn():
    """Images are noisy copies of their tags' text embeddings; with 3000 tags and only a few hundred
    sampled per step, the heads still rank each image's own tags near the top of the whole vocabulary."""
    from slime_core.stages.retrieve import HeadConfig, project_images, project_tags

    rng = np.random.default_rng(0)
    V, n, d = 2000, 256, 32
    T = rng.normal(size=(V, d)).astype(np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    tags = [list(rng.choice(V, 3, replace=False)) for _ in range(n)]
    X = np.stack([T[t].sum(0) for t in tags]) + 0.1 * rng.normal(size=(n, d)).astype(np.float32)
    P = build_scale.SparseRows.from_lists(tags, V)
    neg = build_scale.NegativeSampling(above=1000, batch_size=64, random=256, hard_per_image=4)
    recall = {}
    for epochs in (0, 4):
        heads = build_scale.train_heads_sampled(X, T, P, HeadConfig(epochs=epochs, d_joint=32, lr=1e-2), neg, "cpu")
        _, top = build_scale.exact_topk(project_images(heads, X), project_tags(heads, T), 10, "cpu")
        recall[epochs] = np.mean([len(set(t) & set(r)) / 3 for t, r in zip(tags, top)])
    assert recall[0] < 0.05 and recall[4] > 0.35, recall  # chance: 10 / 2000


def test_large_vocabulary_build_path(tiny_env, tiny_data, tmp_path, monkeypatch):
    """The sampled-negative path of build() end to end: threshold set below the tiny vocabulary."""
    from slime_core.stages.rank import RankerConfig
    from slime_core.stages.retrieve import HeadConfig
    from slime_core.training import build as build_mod

    monkeypatch.setenv(OVERRIDES_ENV, tiny_env)
    folder, _ = tiny_data
    cfg = build_mod.BuildConfig(data=folder, out=tmp_path / "b", attacker="clip-vit-bigg-14", cache=tmp_path / "c",
                                victims=("clip-vit-l-14",), folds=2, min_count=1, heads=HeadConfig(epochs=2),
                                ranker=RankerConfig(epochs=1, candidates=8), device="cpu",
                                negatives=build_scale.NegativeSampling(above=10, batch_size=8, random=16, hard_per_image=2))
    bundle = build_mod.build(cfg, progress=False, log=lambda m: None)
    assert bundle.manifest["config"]["negatives"]["above"] == 10
    assert set(bundle.pool_embeddings) == {"clip-vit-bigg-14", "clip-vit-l-14"}
    assert bundle.pool_embeddings["clip-vit-l-14"].shape == (10, 24)


# ---------------------------------------------------------------- COCO, Karpathy, tags


def _coco_files(tmp_path, n_train=6, n_val=5):
    img_dir = tmp_path / "coco"
    img_dir.mkdir()
    demo = sorted((DEMO / "images").iterdir())
    files = {}
    for split, n, off in (("train2017", n_train, 0), ("val2017", n_val, n_train)):
        images, anns = [], []
        for i in range(n):
            name = f"{split}_{i:03d}.jpg"
            shutil.copy(demo[off + i], img_dir / name)
            images.append({"id": off + i, "file_name": name})
            anns += [{"image_id": off + i, "id": 10 * (off + i) + j, "caption": f"a dog runs on grass {j} "} for j in range(2)]
        files[split] = tmp_path / f"captions_{split}.json"
        files[split].write_text(json.dumps({"images": images, "annotations": anns}))
    return files, img_dir


def test_data_coco_paper_protocol(tmp_path, capsys):
    from slime_core.stages.data import load_folder

    files, img_dir = _coco_files(tmp_path)
    out = tmp_path / "folder"
    assert main(["data", "coco", "--captions", str(files["train2017"]), str(files["val2017"]), "--images", str(img_dir),
                 "--out", str(out), "--dev", "2", "--test", "2"]) == 0
    assert "6 train, 2 dev, 2 test" in capsys.readouterr().out
    samples = load_folder(out)
    assert Counter(s.split for s in samples) == {"train": 6, "dev": 2, "test": 2}
    assert all(s.path.exists() and s.captions[0] == "a dog runs on grass 0" for s in samples)
    assert main(["data", "coco", "--captions", str(files["train2017"]), str(files["val2017"]), "--images", str(img_dir),
                 "--out", str(tmp_path / "x"), "--dev", "4", "--test", "4"]) == 2
    assert "held-out set has 5" in capsys.readouterr().err


def test_load_karpathy(tmp_path):
    from slime_core.stages.data import load_karpathy, paper_protocol

    (tmp_path / "val2014").mkdir()
    demo = sorted((DEMO / "images").iterdir())
    rows = []
    for i, split in enumerate(["train", "restval", "val", "val", "test"]):
        name = f"COCO_val2014_{i:012d}.jpg"
        shutil.copy(demo[i], tmp_path / "val2014" / name)
        rows.append({"filepath": "val2014", "filename": name, "imgid": i, "cocoid": 100 + i, "split": split,
                     "sentences": [{"raw": f"A cat {i} sits on a mat.", "tokens": ["a", "cat"]}]})
    split_file = tmp_path / "dataset_coco.json"
    split_file.write_text(json.dumps({"images": rows, "dataset": "coco"}))
    every = load_karpathy(split_file, tmp_path)
    assert [s.split for s in every] == ["train", "restval", "val", "val", "test"]
    assert every[0].path == tmp_path / "val2014" / every[0].name and every[4].meta["cocoid"] == 104
    assert len(load_karpathy(split_file, tmp_path, split=["train", "restval"])) == 2
    chosen = paper_protocol([s for s in every if s.split in ("train", "restval")], [s for s in every if s.split == "val"], 1, 1)
    assert Counter(s.split for s in chosen) == {"train": 2, "dev": 1, "test": 1}
    with pytest.raises(SlimeError, match="COCO_val2014_000000000000.jpg: not UTF-8 text"):  # a photo is no split file
        load_karpathy(tmp_path / "val2014" / rows[0]["filename"], tmp_path)


def test_tag_statistics_counts():
    from slime_core.stages.tags import tag_statistics

    per = [Counter({"black dog": 2, "dog chase ball": 1, "dog run on grass": 1}), Counter({"black dog": 1}), Counter()]
    s = tag_statistics(per, 9)
    assert s["images"] == 3 and s["captions"] == 9 and s["unique_tags"] == 3
    assert (s["unique_pairs"], s["unique_triples"], s["unique_quads"]) == (1, 1, 1)
    assert s["tags_per_image"]["mean"] == pytest.approx(4 / 3) and s["images_without_tags"] == 1
    assert s["tags_on_one_image"] == 2 and s["most_common"][0] == ["black dog", 2]


@pytest.mark.skipif(not (COCO_VAL / "captions.jsonl").exists(), reason="no ../shared COCO val captions")
def test_tags_cli_on_real_coco_captions(capsys):
    """A slice of the real COCO val captions through `slime tags --stats`; batched tagging equals per-image."""
    from slime_core.stages.data import load_folder
    from slime_core.stages.tags import make_parser, tags_of_captions, tags_of_samples

    assert main(["tags", "--data", str(COCO_VAL), "--limit", "100", "--stats", "--format", "json", "--no-progress"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["images"] == 100 and stats["captions"] >= 500 and 5 < stats["tags_per_image"]["mean"] < 30
    assert stats["unique_pairs"] and stats["unique_triples"] and stats["unique_quads"]
    samples = load_folder(COCO_VAL, require_images=False)[:20]
    parser = make_parser("spacy")
    assert tags_of_samples(samples, parser, batch=7) == [tags_of_captions(s.captions, parser) for s in samples]
