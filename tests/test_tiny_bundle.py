"""The tiny bundle the fast tests attack: written by `slime build`'s code, loaded through every check of
load_bundle and of the CLI's bundle check, with tiny random encoders standing in for the real towers."""

import json

import numpy as np

from slime_core.stages.bundle import check_bundle, vocab_hash

from conftest import TINY_ATTACKER, TINY_DIM, TINY_SPLITS, TINY_VICTIM, TINY_VICTIM_DIM


def test_tiny_bundle_is_small_and_consistent(tiny_bundle, tiny_bundle_dir):
    b = tiny_bundle
    m = b.manifest
    assert b.path == tiny_bundle_dir
    assert m["attacker"] == TINY_ATTACKER and m["image_encoder"] == m["text_encoder"] == TINY_ATTACKER
    assert m["dims"] == {"image": TINY_DIM, "image_features": TINY_DIM, "text": TINY_DIM, "joint": 16}
    assert 20 <= len(b.tags) <= 200 and m["n_tags"] == len(b.tags) and m["vocab_hash"] == vocab_hash(b.tags)
    n_pool = TINY_SPLITS.count("train") + TINY_SPLITS.count("dev")
    assert b.pool["splits"] == ["train"] * TINY_SPLITS.count("train") + ["dev"] * TINY_SPLITS.count("dev")
    assert b.encoders() == sorted([TINY_ATTACKER, TINY_VICTIM])
    assert b.pool_embeddings[TINY_ATTACKER].shape == (n_pool, TINY_DIM)
    assert b.pool_embeddings[TINY_VICTIM].shape == (n_pool, TINY_VICTIM_DIM)
    for emb in b.pool_embeddings.values():
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=2e-3)
    assert all(m["fingerprints"][n].startswith(n + "@") for n in (TINY_ATTACKER, TINY_VICTIM))


def test_tiny_bundle_passes_the_encoder_check(tiny_bundle_dir, tiny_env):
    """The fingerprints match this process's (tiny) encoders, so every surface accepts the bundle."""
    manifest = check_bundle(tiny_bundle_dir, TINY_ATTACKER, TINY_VICTIM)
    assert manifest == json.loads((tiny_bundle_dir / "manifest.json").read_text())


def test_tiny_encoders_embed_like_the_pool(tiny_attacker, tiny_data):
    """The pool embeddings are the tiny victim's own embeddings of the pool images (same cache, same model)."""
    b = tiny_attacker.bundle
    path = str(tiny_data / "images" / b.pool["images"][3])
    emb = tiny_attacker.embed(TINY_VICTIM, [path])
    assert emb.shape == (1, TINY_VICTIM_DIM)
    np.testing.assert_allclose(emb[0], b.pool_embeddings[TINY_VICTIM][3], atol=2e-3)
