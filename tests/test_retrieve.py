"""Retriever: the contrastive losses on hand-computed tensors, heads that learn a tiny problem, top-k search."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slime_core.infra.errors import SlimeError
from slime_core.stages.retrieve import (
    DualHeads,
    HeadConfig,
    TagIndex,
    hardest_negative_hinge,
    image_features,
    log_prior,
    multi_positive_nce,
    project_images,
    project_tags,
    train_heads,
    with_prior,
)

# ---------------------------------------------------------------- losses


def test_multi_positive_nce_known_values():
    logits = torch.tensor([[0.0, 0.0]])
    assert multi_positive_nce(logits, torch.tensor([[True, False]])).item() == pytest.approx(math.log(2))
    assert multi_positive_nce(logits, torch.tensor([[True, True]])).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    want = math.log(math.e + math.e**2 + math.e**3) - math.log(math.e + math.e**2)
    assert multi_positive_nce(logits, torch.tensor([[True, True, False]])).item() == pytest.approx(want, rel=1e-5)


def test_multi_positive_nce_averages_rows_with_positives_only():
    logits = torch.tensor([[0.0, 0.0], [5.0, -5.0], [0.0, 0.0]])
    pos = torch.tensor([[True, False], [False, False], [True, True]])
    # Row 1 has no positive and is ignored: mean(log 2, 0).
    assert multi_positive_nce(logits, pos).item() == pytest.approx(math.log(2) / 2, rel=1e-5)


def test_multi_positive_nce_has_gradient_towards_positives():
    logits = torch.tensor([[0.5, 0.2, 0.1]], requires_grad=True)
    multi_positive_nce(logits, torch.tensor([[False, True, False]])).backward()
    g = logits.grad[0]
    assert g[1] < 0 and g[0] > 0 and g[2] > 0  # descent raises the positive, lowers the negatives


def test_hardest_negative_hinge_known_values():
    sim = torch.tensor([[0.9, 0.5, 0.1, 0.8]])
    pos = torch.tensor([[True, False, False, False]])
    assert hardest_negative_hinge(sim, pos, n_hard=2, margin=0.05).item() == 0.0
    # margin 0.2: gaps 0.2 - 0.9 + 0.8 = 0.1 and 0.2 - 0.9 + 0.5 < 0 -> mean 0.05
    assert hardest_negative_hinge(sim, pos, n_hard=2, margin=0.2).item() == pytest.approx(0.05, abs=1e-6)


def test_hardest_negative_hinge_uses_the_weakest_positive():
    sim = torch.tensor([[0.9, 0.3, 0.5, 0.0]])
    pos = torch.tensor([[True, True, False, False]])
    # weakest positive 0.3 against the hardest negative 0.5 with margin 0.1: 0.1 - 0.3 + 0.5 = 0.3
    assert hardest_negative_hinge(sim, pos, n_hard=1, margin=0.1).item() == pytest.approx(0.3, abs=1e-6)


# ---------------------------------------------------------------- heads


def test_dual_heads_shapes_and_scale():
    heads = DualHeads(10, 6, 4).eval()
    u = project_images(heads, np.random.default_rng(0).normal(size=(3, 10)))
    v = project_tags(heads, np.random.default_rng(1).normal(size=(5, 6)), batch=2)  # several batches
    assert u.shape == (3, 4) and v.shape == (5, 4)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert heads.scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        heads.logit_scale.fill_(10.0)
    assert heads.scale().item() == pytest.approx(100.0, rel=1e-5)  # clamped at 100


def synthetic_problem(n_per_class: int, seed: int):
    """10 classes; image features = class prototype + noise; class c's image carries tags c and 10 + c // 2."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(0).normal(size=(10, 24))
    labels = np.repeat(np.arange(10), n_per_class)
    X = (protos[labels] + 0.5 * rng.normal(size=(len(labels), 24))).astype(np.float32)
    P = np.zeros((len(labels), 15), bool)
    P[np.arange(len(labels)), labels] = True
    P[np.arange(len(labels)), 10 + labels // 2] = True
    return X, P, labels


@pytest.fixture(scope="module")
def trained_heads():
    X, P, _ = synthetic_problem(8, seed=1)
    T = np.random.default_rng(2).normal(size=(15, 12)).astype(np.float32)
    cfg = HeadConfig(d_joint=16, epochs=25, batch_size=32, lr=1e-2, hard_negatives=3)
    return train_heads(X, T, P, cfg), T


def test_train_heads_learns(trained_heads):
    heads, T = trained_heads
    assert not heads.training
    Xt, _, labels = synthetic_problem(5, seed=9)  # fresh images
    sims = project_images(heads, Xt) @ project_tags(heads, T).T
    class_acc = np.mean(sims[:, :10].argmax(axis=1) == labels)  # which of the 10 class tags wins
    assert class_acc >= 0.8  # chance is 0.1
    group_acc = np.mean(sims[:, 10:].argmax(axis=1) == labels // 2)
    assert group_acc >= 0.8  # chance is 0.2


def test_train_heads_is_deterministic(trained_heads):
    heads, T = trained_heads
    X, P, _ = synthetic_problem(8, seed=1)
    again = train_heads(X, T, P, HeadConfig(d_joint=16, epochs=25, batch_size=32, lr=1e-2, hard_negatives=3))
    for (k, a), (_, b) in zip(heads.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_linear_heads_with_a_fixed_temperature_learn_too():
    X, P, labels = synthetic_problem(8, seed=1)
    T = np.random.default_rng(2).normal(size=(15, 12)).astype(np.float32)
    heads = train_heads(X, T, P, HeadConfig(d_joint=16, epochs=25, batch_size=32, lr=1e-2, hard_negatives=0,
                                            hidden=0, temperature=0.05))
    assert heads.image.mlp is None and heads.text.mlp is None
    assert float(heads.scale()) == pytest.approx(20.0)  # fixed: never trained
    Xt, _, labels = synthetic_problem(5, seed=9)
    sims = project_images(heads, Xt) @ project_tags(heads, T).T
    assert np.mean(sims[:, :10].argmax(axis=1) == labels) >= 0.8


def test_train_heads_shape_mismatch():
    with pytest.raises(SlimeError, match=r"positives \(4, 3\) do not match 4 images x 5 tags"):
        train_heads(np.zeros((4, 6), np.float32), np.zeros((5, 6), np.float32), np.zeros((4, 3), bool))


# ---------------------------------------------------------------- search


def brute_force(Q, V, k):
    sims = Q @ V.T
    ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, ids, axis=1), ids


def test_tag_index_exact_topk():
    rng = np.random.default_rng(0)
    V, Q = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(7, 16)).astype(np.float32)
    index = TagIndex(V)
    assert index.index is None  # small vocabularies are searched exactly
    scores, ids = index.search(Q, 10)
    want_s, want_ids = brute_force(Q, V, 10)
    assert scores.shape == ids.shape == (7, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_s, rtol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_tag_index_single_query_and_k_beyond_vocab():
    V = np.eye(4, dtype=np.float32)
    scores, ids = TagIndex(V).search(np.array([0.1, 0.9, 0.0, 0.5]), 10)
    assert ids.tolist() == [[1, 3, 0, 2]]
    np.testing.assert_allclose(scores, [[0.9, 0.5, 0.1, 0.0]], atol=1e-6)


def test_tag_index_faiss_path():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    V = rng.normal(size=(500, 16)).astype(np.float32)
    Q = rng.normal(size=(20, 16)).astype(np.float32)
    index = TagIndex(V, faiss_above=100)
    assert index.index is not None
    scores, ids = index.search(Q, 5)
    assert scores.shape == ids.shape == (20, 5)
    _, exact_ids = brute_force(Q, V, 5)
    assert np.mean(ids[:, 0] == exact_ids[:, 0]) >= 0.95  # HNSW is approximate, but not on 500 vectors
    np.testing.assert_allclose(scores, np.einsum("nd,nkd->nk", Q, V[ids]), rtol=1e-4, atol=1e-4)


def test_with_prior_inner_product():
    rng = np.random.default_rng(2)
    u = rng.normal(size=(3, 8)).astype(np.float32)
    v = rng.normal(size=(6, 8)).astype(np.float32)
    prior = log_prior(np.array([0, 1, 3, 10, 0, 2]))
    q, keys = with_prior(u, v, prior, scale=20.0, alpha=1.5)
    assert q.shape == (3, 9) and keys.shape == (6, 9) and q.dtype == keys.dtype == np.float32
    np.testing.assert_allclose(q @ keys.T, 20.0 * u @ v.T + 1.5 * prior[None, :], rtol=1e-5, atol=1e-4)


def test_log_prior():
    np.testing.assert_allclose(log_prior([0, 1, 9]), [0.0, math.log(2), math.log(10)], rtol=1e-6)


def test_prior_changes_the_ranking():
    v = np.array([[1.0, 0.0], [0.9, 0.436]], np.float32)  # tag 0 nearer, tag 1 far more frequent
    u = np.array([[1.0, 0.0]], np.float32)
    prior = log_prior(np.array([0, 100]))
    for alpha, top in ((0.0, 0), (1.0, 1)):
        q, keys = with_prior(u, v, prior, scale=1.0, alpha=alpha)
        assert TagIndex(keys).search(q, 1)[1][0, 0] == top


def test_image_features():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(4, 5)).astype(np.float32)
    assert image_features(A, {}) is not None and np.array_equal(image_features(A, {}), A)
    class_text = np.eye(3, 6, dtype=np.float32)
    W = np.zeros((3, 5), np.float32)
    W[2, 0] = 50.0  # class 2 wins wherever the first feature is positive
    semantics = {"classifier_weight": W, "classifier_bias": np.zeros(3, np.float32), "class_text": class_text,
                 "feature_norm": np.array([1.0], np.float32)}
    A[:, 0] = [1.0, 1.0, -1.0, 2.0]
    F = image_features(A, semantics)
    assert F.shape == (4, 11)
    np.testing.assert_array_equal(F[:, :5], A)
    np.testing.assert_allclose(np.linalg.norm(F[:, 5:], axis=1), 1.0, atol=1e-5)
    assert np.all(F[[0, 1, 3], 5 + 2] > 0.99)  # the text summary is class 2's name embedding
    assert F[2, 5 + 2] < 0.1


@pytest.mark.parametrize("steps", [1, 2, 10, 20, 37])
def test_one_cycle_never_divides_by_zero(steps):
    from slime_core.stages.retrieve import one_cycle

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = one_cycle(opt, 0.1, steps)
    lrs = []
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(np.isfinite(lrs)) and max(lrs) <= 0.1 + 1e-9


def test_neighbour_votes_share_the_nearest_photos_tags():
    from slime_core.stages.retrieve import NeighbourVotes

    pool_A = np.eye(4, dtype=np.float32)  # four public photos, orthogonal
    pool_tags = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]], np.float32)  # their tags over a 3-tag vocabulary
    E = np.array([[1.0, 1.0, 0.0, 0.0]], np.float32) / np.sqrt(2)  # as close to photos 0 and 1, far from 2 and 3
    shares = NeighbourVotes(neighbours=2).shares(E, pool_A, pool_tags)
    np.testing.assert_allclose(shares, [[1.0, 0.5, 0.0]], atol=1e-6)  # two equal votes: tag 0 in both, tag 1 in one
    shares = NeighbourVotes(neighbours=4, temperature=0.01).shares(E, pool_A, pool_tags)
    np.testing.assert_allclose(shares, [[1.0, 0.5, 0.0]], atol=1e-6)  # far photos weigh ~exp(-70): nothing
    shares = NeighbourVotes(neighbours=4, temperature=100.0).shares(E, pool_A, pool_tags)
    np.testing.assert_allclose(shares, [[0.5, 0.25, 0.5]], atol=1e-2)  # a flat temperature: every photo alike
    # A pool photo never votes for itself: photo 1's own tags come only from photo 0 then.
    own = NeighbourVotes(neighbours=1).shares(pool_A[[1]], pool_A, pool_tags, own_rows=np.array([1]))
    assert own[0, 1] == 0.0
    assert NeighbourVotes(weight=0.0).bonus(E, pool_A, pool_tags).max() == 0.0


def test_fused_topk_adds_the_bonus_before_ranking():
    from slime_core.stages.retrieve import fused_topk

    q, keys = np.array([[1.0, 0.0]], np.float32), np.array([[1.0, 0], [0.9, 0], [0.0, 1]], np.float32)
    scores, ids = fused_topk(q, keys, np.zeros((1, 3), np.float32), 2)
    assert ids.tolist() == [[0, 1]] and np.allclose(scores, [[1.0, 0.9]])
    scores, ids = fused_topk(q, keys, np.array([[0.0, 0.0, 2.0]], np.float32), 2)
    assert ids.tolist() == [[2, 0]] and np.allclose(scores, [[2.0, 1.0]])
    assert fused_topk(q, keys, np.zeros((1, 3)), 10)[1].shape == (1, 3)  # k above the vocabulary: all of it


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 45), st.integers(0, 2**32 - 1))
def test_top_k_is_argpartitions_set_and_best_first_breaks_ties_by_column(n, m, k, seed):
    """top_k_columns (torch.topk) finds the set np.argpartition finds, and best_first orders it by score, equal
    scores in column order (values drawn from a few levels, so ties are common)."""
    from slime_core.stages.retrieve import best_first, top_k_columns

    S = np.random.default_rng(seed).integers(0, 4, size=(n, m)).astype(np.float32)
    kk = min(k, m)
    got = top_k_columns(S, k)
    assert got.shape == (n, kk)
    want_scores = -np.sort(-S, axis=1)[:, :kk]
    np.testing.assert_array_equal(-np.sort(-np.take_along_axis(S, got, axis=1), axis=1), want_scores)
    scores, ids = best_first(S, k)
    np.testing.assert_array_equal(scores, want_scores)
    np.testing.assert_array_equal(np.take_along_axis(S, ids, axis=1), scores)
    for row_s, row_i in zip(scores, ids):
        for a in range(kk - 1):  # ties keep column order
            assert row_s[a] > row_s[a + 1] or row_i[a] < row_i[a + 1]
