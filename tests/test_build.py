"""`slime build` end to end on 16 demo images (12 train, 4 dev) with tiny training settings."""

import json

import numpy as np
import pytest

from slime_core.attack_spec import AttackSpec
from slime_core.infra.errors import SlimeError
from slime_core.stages.bundle import load_bundle, vocab_hash
from slime_core.stages.encoders.base import l2_normalise
from slime_core.stages.rank import RankerConfig
from slime_core.stages.retrieve import HeadConfig
from slime_core.training.build import ALPHAS, BuildConfig, build, cross_fitted, output_folder, training_counts

from conftest import demo_records

pytestmark = pytest.mark.slow  # real weights: EfficientNet-Lite, MiniLM, spaCy, the default bundle


@pytest.fixture(scope="module")
def built(build_folder, embedding_cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    cfg = BuildConfig(data=build_folder, out=out, victims=("lite0",), cache=embedding_cache_dir, folds=2, eval_k=5, min_count=1,
                      heads=HeadConfig(d_joint=32, epochs=3, batch_size=16, hard_negatives=5),
                      ranker=RankerConfig(candidates=10, epochs=1, groups_per_batch=8, hard_negatives=3))
    logs = []
    bundle = build(cfg, progress=False, log=logs.append)
    return cfg, bundle, logs


def test_bundle_files(built):
    cfg, bundle, _ = built
    names = {p.name for p in cfg.out.iterdir()}
    assert {"manifest.json", "heads.safetensors", "tags.safetensors", "vocab.json", "pool.json",
            "semantics.safetensors", "pool_lite2.safetensors", "pool_lite0.safetensors"} <= names
    assert "pool_lite1.safetensors" not in names  # only the victims asked for
    assert bundle.path == cfg.out


def test_manifest(built):
    cfg, bundle, _ = built
    m = json.loads((cfg.out / "manifest.json").read_text())
    assert m["attacker"] == "lite2-minilm" and m["image_encoder"] == "lite2" and m["text_encoder"] == "minilm"
    assert m["dims"] == {"image": 1280, "image_features": 1280 + 384, "text": 384, "joint": 32}
    assert m["training_data"]["train_images"] == 12 and m["training_data"]["dev_images"] == 4
    assert m["training_data"]["folder"] == cfg.data.name
    assert m["prior_alpha"] in ALPHAS and isinstance(m["use_ranker"], bool)
    assert m["vocab_hash"] == vocab_hash(bundle.tags) and m["n_tags"] == len(bundle.tags)
    assert m["config"]["folds"] == 2 and m["config"]["heads"]["epochs"] == 3
    for scores in m["metrics"]["retrieval_by_alpha"].values():
        assert 0.0 <= scores["exact_f1"] <= 1.0 and 0.0 <= scores["neighbourhood_f1"] <= 1.0
    assert m["logit_scale"] > 0 and m["build_seconds"] >= 0


def test_vocabulary_and_pool(built, spacy_parser):
    _, bundle, _ = built
    records = demo_records()[:16]
    assert bundle.pool["images"] == [r["image"] for r in records]  # train first, then dev
    assert bundle.pool["splits"] == ["train"] * 12 + ["dev"] * 4
    # every training tag is in the vocabulary, counted over the 12 training images, most frequent first
    from slime_core.stages.tags import tags_of_captions

    train_tags = [tags_of_captions(r["captions"], spacy_parser) for r in records[:12]]
    counts = {}
    for c in train_tags:
        for t in c:
            counts[t] = counts.get(t, 0) + 1
    assert set(bundle.tags) == set(counts)
    assert [int(c) for c in bundle.tag_counts] == [counts[t] for t in bundle.tags]
    assert np.all(np.diff(bundle.tag_counts) <= 0)
    assert set(bundle.pool["tags"][0]) == set(train_tags[0])
    assert bundle.tag_text.shape == (len(bundle.tags), 384)


def test_reload_matches(built):
    cfg, bundle, _ = built
    loaded = load_bundle(cfg.out)
    assert loaded.tags == bundle.tags and loaded.manifest["vocab_hash"] == vocab_hash(bundle.tags)
    for k, v in bundle.heads.state_dict().items():  # float16 on disk: exactly the half-precision rounding
        np.testing.assert_array_equal(loaded.heads.state_dict()[k].numpy(), v.half().float().numpy(), err_msg=k)
    assert loaded.pool_embeddings["lite2"].shape == (16, 1280)
    np.testing.assert_allclose(loaded.pool_embeddings["lite2"], bundle.pool_embeddings["lite2"], atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(loaded.pool_embeddings["lite0"], axis=1), 1.0, atol=2e-3)
    assert loaded.semantics["classifier_weight"].shape == (1000, 1280)
    assert loaded.semantics["class_text"].shape == (1000, 384)


def test_built_bundle_attacks(built):
    """The fresh bundle works in the attack pipeline: a pool image attacked through lite0 finds tags."""
    from slime_core.pipeline import Attacker

    cfg, bundle, _ = built
    attacker = Attacker(cfg.out, data=cfg.data)
    r = attacker.attack(embedding=bundle.pool_embeddings["lite0"][0], spec=AttackSpec("lite0", 12, 3))
    assert len(r.tags) == 3 and all(t["tag"] in bundle.tags for t in r.tags)
    assert 0 < r.alignment_cosine <= 1
    with pytest.raises(SlimeError, match="N=17 alignment pairs"):
        attacker.attack(embedding=bundle.pool_embeddings["lite0"][0], spec=AttackSpec("lite0", 17))


def test_build_logs_progress(built):
    _, _, logs = built
    text = "\n".join(logs)
    assert "12 train, 4 dev" in text and "bundle written" in text


def test_output_folder_defaults_to_the_attackers_bundle_folder(tmp_path):
    from slime_core.stages.bundle import DEFAULT_BUNDLE

    assert output_folder(BuildConfig(data=tmp_path)) == DEFAULT_BUNDLE  # lite2-minilm: models/default
    assert output_folder(BuildConfig(data=tmp_path, out=tmp_path / "b")) == tmp_path / "b"


def test_training_counts_keep_tags_of_min_count_photos_most_frequent_first():
    from collections import Counter

    photos = [Counter({"dog": 2, "grass": 1}), Counter({"dog": 1, "ball": 1}), Counter({"ball": 3, "cat": 1})]
    assert training_counts(photos, 1) == {"ball": 2, "dog": 2, "cat": 1, "grass": 1}
    assert list(training_counts(photos, 1)) == ["ball", "dog", "cat", "grass"]  # ties by name
    assert training_counts(photos, 2) == {"ball": 2, "dog": 2}
    assert training_counts(photos, 4) == {}


def test_cross_fitted_learns_a_map_from_the_other_folds():
    rng = np.random.default_rng(0)
    X = l2_normalise(rng.normal(size=(40, 6)))
    W = np.linalg.qr(rng.normal(size=(6, 6)))[0].astype(np.float32)  # orthogonal: survives normalisation
    out = cross_fitted(X, X @ W, folds=4, seed=0)
    assert out.shape == (40, 6)
    np.testing.assert_allclose(np.sum(out * (X @ W), axis=1), 1.0, atol=1e-3)


def test_cross_fitted_never_sees_its_own_row():
    """Targets unrelated to the inputs, with more dims than rows: a map that saw row i would nearly
    interpolate it (cosine near 1); one fitted on the other folds cannot predict it at all."""
    rng = np.random.default_rng(1)
    X, Y = l2_normalise(rng.normal(size=(30, 60))), l2_normalise(rng.normal(size=(30, 20)))
    from slime_core.stages.align import fit_alignment

    insample = np.sum(fit_alignment(X, Y).transform(X) * Y, axis=1).mean()
    crossed = np.sum(l2_normalise(cross_fitted(X, Y, folds=5, seed=0)) * Y, axis=1).mean()
    assert insample > 0.5 and abs(crossed) < 0.2


def test_build_needs_train_and_dev(tmp_path, embedding_cache_dir):
    from conftest import make_folder

    folder = make_folder(tmp_path / "d", demo_records()[:3])  # test split only
    with pytest.raises(SlimeError, match="train"):
        build(BuildConfig(data=folder, out=tmp_path / "o", cache=embedding_cache_dir), progress=False, log=lambda m: None)
    assert not (tmp_path / "o").exists()
