"""Bundle: a save/load round trip on a tiny attacker, and the checks that refuse inconsistent bundles."""

import json

import numpy as np
import pytest
import torch

from slime_core.infra.errors import SlimeError
from slime_core.stages.bundle import Bundle, dequantise_rows, load_bundle, quantise_rows, save_bundle, vocab_hash
from slime_core.stages.encoders.base import l2_normalise
from slime_core.stages.rank import DCNRanker
from slime_core.stages.retrieve import DualHeads

from conftest import DEFAULT_BUNDLE

DIMS = {"image": 8, "image_features": 10, "text": 6, "joint": 4}


def tiny_bundle() -> Bundle:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    heads, ranker = DualHeads(DIMS["image_features"], DIMS["text"], DIMS["joint"]), DCNRanker(DIMS["joint"], scale=3.0, alpha=0.5)
    with torch.no_grad():
        ranker.out.weight.normal_()  # not the zero init, so the round trip is tested on real numbers
    tags = ["dog run", "black dog", "man sit on bench"]
    manifest = {"attacker": "tiny", "image_encoder": "enc", "text_encoder": "txt", "dims": DIMS, "prior_alpha": 0.5,
                "logit_scale": 3.0, "use_ranker": True, "candidates": 2}
    pool = {"images": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"], "splits": ["train"] * 4 + ["dev"],
            "tags": [["dog run"], [], ["black dog", "dog run"], ["man sit on bench"], []]}
    pool_embeddings = {"enc": l2_normalise(rng.normal(size=(5, 8))), "victim": l2_normalise(rng.normal(size=(5, 3)))}
    semantics = {"classifier_weight": rng.normal(size=(7, 8)).astype(np.float32), "feature_norm": np.array([2.5], np.float32)}
    return Bundle(manifest, heads.eval(), ranker.eval(), tags, np.array([2, 1, 1], np.float32),
                  l2_normalise(rng.normal(size=(3, 6))), pool, pool_embeddings, semantics)


@pytest.fixture
def saved(tmp_path):
    bundle = tiny_bundle()
    return bundle, save_bundle(bundle, tmp_path / "bundle")


def test_round_trip(saved):
    bundle, folder = saved
    assert {p.name for p in folder.iterdir()} == {"manifest.json", "heads.safetensors", "tags.safetensors", "vocab.json",
                                                  "pool.json", "semantics.safetensors", "pool_enc.safetensors",
                                                  "pool_victim.safetensors"}
    loaded = load_bundle(folder)
    assert loaded.path == folder
    assert loaded.manifest == dict(bundle.manifest, vocab_hash=vocab_hash(bundle.tags), n_tags=3)
    assert loaded.tags == bundle.tags and loaded.pool == bundle.pool
    np.testing.assert_array_equal(loaded.tag_counts, bundle.tag_counts)
    for ours, theirs in ((bundle.heads, loaded.heads), (bundle.ranker, loaded.ranker)):
        for k, v in ours.state_dict().items():  # stored as float16, float32 again after loading
            assert theirs.state_dict()[k].dtype == torch.float32, k
            torch.testing.assert_close(theirs.state_dict()[k], v.half().float(), rtol=0, atol=0, msg=k)
    assert not loaded.heads.training and not loaded.ranker.training
    # arrays are stored as float16: equal to ~3 significant digits, and float32 again after loading
    np.testing.assert_allclose(loaded.tag_text, bundle.tag_text, atol=1e-3)
    assert loaded.tag_text.dtype == np.float32
    assert loaded.encoders() == ["enc", "victim"]
    for name, emb in bundle.pool_embeddings.items():  # int8 with a scale per row, unit length again
        step = np.abs(emb).max(axis=1, keepdims=True) / 127
        assert (np.abs(loaded.pool_embeddings[name] - emb) <= step).all(), name
        np.testing.assert_allclose(np.linalg.norm(loaded.pool_embeddings[name], axis=1), 1.0, atol=1e-5)
        assert loaded.pool_embeddings[name].dtype == np.float32
    assert set(loaded.semantics) == set(bundle.semantics)
    np.testing.assert_allclose(loaded.semantics["classifier_weight"], bundle.semantics["classifier_weight"], rtol=1e-3, atol=1e-3)
    assert loaded.attacker == "tiny" and loaded.image_encoder == "enc"


def test_int8_pool_rows_keep_their_direction():
    """What the size budget costs: 1,280-d unit rows (EfficientNet-like, non-negative and skewed) come back with a
    cosine above 0.999 to the original (0.9997 at worst here), and an all-zero row stays zero."""
    rng = np.random.default_rng(0)
    emb = l2_normalise(rng.gamma(0.5, size=(50, 1280)).astype(np.float32))
    emb[3] = 0
    back = dequantise_rows(quantise_rows(emb))
    cos = (back * emb).sum(axis=1)[np.arange(50) != 3] / np.linalg.norm(back[np.arange(50) != 3], axis=1)
    assert cos.min() > 0.999 and (back[3] == 0).all()
    assert quantise_rows(emb)["embeddings"].dtype == np.int8


def test_loaded_bundle_scores_like_the_saved_one(saved):
    bundle, folder = saved
    loaded = load_bundle(folder)
    x = torch.randn(2, DIMS["image_features"])
    # float16 weights: outputs agree to about three significant digits
    torch.testing.assert_close(loaded.heads.image(x), bundle.heads.image(x), rtol=1e-2, atol=2e-3)
    feats = torch.randn(3, 4 * DIMS["joint"] + 2)
    torch.testing.assert_close(loaded.ranker(feats), bundle.ranker(feats), rtol=1e-2, atol=2e-3)


def test_vocab_hash_depends_on_order_and_content():
    assert vocab_hash(["a", "b"]) == vocab_hash(["a", "b"])
    assert vocab_hash(["a", "b"]) != vocab_hash(["b", "a"])
    assert vocab_hash(["a b"]) != vocab_hash(["a", "b"])
    assert len(vocab_hash(["x"])) == 16


def test_edited_vocabulary_is_refused(saved):
    _, folder = saved
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["tags"][0] = "cat run"
    (folder / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(SlimeError, match="vocabulary hash"):
        load_bundle(folder)


def test_heads_that_do_not_match_dims_are_refused(saved):
    _, folder = saved
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["dims"]["text"] = 7  # as if the bundle were for another text encoder
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SlimeError, match="heads.safetensors does not match the manifest's encoders/dims .*txt 7-d"):
        load_bundle(folder)


def test_joint_dim_mismatch_is_refused(saved):
    _, folder = saved
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["dims"]["joint"] = 5
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SlimeError, match="does not match the manifest"):
        load_bundle(folder)


def test_tag_embeddings_of_wrong_shape_are_refused(tmp_path):
    bundle = tiny_bundle()
    bundle.tag_text = bundle.tag_text[:2]
    folder = save_bundle(bundle, tmp_path / "b")
    with pytest.raises(SlimeError, match=r"tag embeddings \(2, 6\) do not match 3 tags x 6"):
        load_bundle(folder)


def test_pool_of_wrong_dimension_is_refused(tmp_path):
    bundle = tiny_bundle()
    bundle.pool_embeddings["enc"] = bundle.pool_embeddings["enc"][:, :7]
    folder = save_bundle(bundle, tmp_path / "b")
    with pytest.raises(SlimeError, match="pool embeddings of enc are 7-d; the manifest says 8"):
        load_bundle(folder)


def test_missing_bundle(tmp_path):
    with pytest.raises(SlimeError, match="no attacker bundle here"):
        load_bundle(tmp_path)


@pytest.mark.slow
def test_default_bundle_is_consistent(default_bundle):
    b = default_bundle
    assert b.path == DEFAULT_BUNDLE
    m = b.manifest
    assert m["attacker"] == "lite2-minilm" and m["image_encoder"] == "lite2" and m["text_encoder"] == "minilm"
    assert len(b.tags) == m["n_tags"] == len(b.tag_counts) == len(b.tag_text)
    assert np.all(np.diff(b.tag_counts[b.tag_counts > 0]) <= 0)  # most frequent first
    np.testing.assert_allclose(np.linalg.norm(b.tag_text, axis=1), 1.0, atol=2e-3)
    n_pool = len(b.pool["images"])
    assert n_pool == m["training_data"]["train_images"] + m["training_data"]["dev_images"]
    assert len(b.pool["splits"]) == len(b.pool["tags"]) == n_pool
    assert {"lite0", "lite1", "lite2"} <= set(b.encoders())
    for name, emb in b.pool_embeddings.items():
        assert emb.shape == (n_pool, m["dims"]["image"]), name
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=2e-3)


def test_pool_row_scale_of_the_wrong_length_is_refused(saved):
    from safetensors.numpy import load_file, save_file

    _, folder = saved
    arrays = load_file(folder / "pool_enc.safetensors")
    save_file({"embeddings": arrays["embeddings"], "row_scale": arrays["row_scale"][:3]}, folder / "pool_enc.safetensors")
    with pytest.raises(SlimeError, match=r"pool_enc.safetensors: row_scale has shape \(3,\), not one per pool row"):
        load_bundle(folder)
