"""Ranker: interaction features, the grouped margin loss, the residual (retrieval-preserving) start, training."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slime_core.stages.rank import DCNRanker, RankerConfig, grouped_margin_loss, pair_features, rerank, train_ranker
from slime_core.stages.retrieve import TagIndex, with_prior


def unit(rng, *shape):
    return F.normalize(torch.from_numpy(rng.normal(size=shape).astype(np.float32)), dim=-1)


def test_pair_features_layout():
    rng = np.random.default_rng(0)
    u, v, prior = unit(rng, 3, 4), unit(rng, 3, 4), torch.tensor([0.0, 1.0, 2.0])
    f = pair_features(u, v, prior)
    assert f.shape == (3, 4 * 4 + 2)
    torch.testing.assert_close(f[:, :4], u)
    torch.testing.assert_close(f[:, 4:8], v)
    torch.testing.assert_close(f[:, 8:12], u * v)
    torch.testing.assert_close(f[:, 12:16], (u - v).abs())
    torch.testing.assert_close(f[:, -2], (u * v).sum(-1))
    torch.testing.assert_close(f[:, -1], prior)


def test_pair_features_broadcasts_one_image():
    rng = np.random.default_rng(1)
    u, v = unit(rng, 4), unit(rng, 5, 4)
    f = pair_features(u, v, torch.zeros(5))
    assert f.shape == (5, 18)
    torch.testing.assert_close(f, pair_features(u.expand(5, 4), v, torch.zeros(5)))


def test_grouped_margin_loss_zero_when_positives_win_by_margin():
    scores = torch.tensor([[1.0, 0.5, 0.0], [0.2, 0.9, 0.6]])
    pos = torch.tensor([[True, False, False], [False, True, False]])
    assert grouped_margin_loss(scores, pos, n_hard=2, margin=0.2).item() == 0.0


def test_grouped_margin_loss_known_value():
    scores = torch.tensor([[0.5, 0.6, 0.0]])
    pos = torch.tensor([[True, False, False]])
    # hardest negatives 0.6 and 0.0: gaps relu(0.2 - 0.5 + 0.6) = 0.3, relu(0.2 - 0.5 + 0.0) = 0 -> 0.3 / 1 / 2
    assert grouped_margin_loss(scores, pos, n_hard=2, margin=0.2).item() == pytest.approx(0.15, abs=1e-6)
    # n_hard beyond the group size is clipped to the candidates (and positives never count as negatives)
    assert grouped_margin_loss(scores, pos, n_hard=10, margin=0.2).item() == pytest.approx(0.3 / 3, abs=1e-6)


def test_grouped_margin_loss_without_positives_is_zero():
    scores = torch.tensor([[0.5, 0.6]])
    assert grouped_margin_loss(scores, torch.zeros(1, 2, dtype=torch.bool), n_hard=1, margin=0.2).item() == 0.0


def test_untrained_ranker_reproduces_retrieval():
    """Residual with a zero-initialised output layer: score = scale * cos + alpha * prior, exactly."""
    rng = np.random.default_rng(2)
    d, V, n, c = 8, 40, 5, 12
    u = unit(rng, n, d).numpy()
    tag_vecs = unit(rng, V, d).numpy()
    prior = np.log1p(rng.integers(0, 20, size=V)).astype(np.float32)
    scale, alpha = 12.0, 0.7
    q, keys = with_prior(u, tag_vecs, prior, scale, alpha)
    want_scores, want_ids = TagIndex(keys).search(q, c)
    torch.manual_seed(0)
    ranker = DCNRanker(d, scale=scale, alpha=alpha).eval()
    shuffled = np.ascontiguousarray(want_ids[:, ::-1])  # candidates in the wrong order
    scores, ids = rerank(ranker, u, shuffled, tag_vecs, prior)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-4)


def ranking_problem(seed: int):
    """Positives are the candidates whose tag vector has a large first coordinate -- not the nearest ones,
    so plain retrieval order is wrong and the ranker has something to learn."""
    rng = np.random.default_rng(seed)
    d, V, n, c = 8, 60, 48, 10
    tag_vecs = unit(rng, V, d).numpy()
    u = unit(rng, n, d).numpy()
    prior = np.zeros(V, np.float32)
    cand = np.argsort(-(u @ tag_vecs.T), axis=1)[:, :c]
    positives = np.zeros((n, V), bool)
    positives[:, tag_vecs[:, 0] > 0.4] = True
    return u, cand, positives, tag_vecs, prior


def group_loss(ranker, u, cand, positives, tag_vecs, prior):
    n, c = cand.shape
    feats = pair_features(torch.from_numpy(u).repeat_interleave(c, 0), torch.from_numpy(tag_vecs[cand]).reshape(n * c, -1),
                          torch.from_numpy(prior[cand]).reshape(-1))
    with torch.no_grad():
        scores = ranker(feats).reshape(n, c)
    pos = torch.from_numpy(np.take_along_axis(positives, cand, axis=1))
    keep = pos.any(dim=1)
    return grouped_margin_loss(scores[keep], pos[keep], 5, 0.2).item()


def test_train_ranker_reduces_loss():
    u, cand, positives, tag_vecs, prior = ranking_problem(3)
    cfg = RankerConfig(candidates=10, epochs=15, groups_per_batch=16, hard_negatives=5, margin=0.2, lr=3e-3)
    torch.manual_seed(0)
    before = group_loss(DCNRanker(u.shape[1], scale=1.0).eval(), u, cand, positives, tag_vecs, prior)
    ranker = train_ranker(u, cand, positives, tag_vecs, prior, cfg, scale=1.0, alpha=0.0)
    assert not ranker.training
    after = group_loss(ranker, u, cand, positives, tag_vecs, prior)
    assert after < 0.5 * before
    # and on new images it puts a positive first more often than retrieval order does
    u2 = unit(np.random.default_rng(11), 40, u.shape[1]).numpy()
    cand2 = np.argsort(-(u2 @ tag_vecs.T), axis=1)[:, :10]
    _, ranked = rerank(ranker, u2, cand2, tag_vecs, prior)
    is_positive = positives[0]  # every image has the same positive tags here
    assert np.mean(is_positive[ranked[:, 0]]) > np.mean(is_positive[cand2[:, 0]]) + 0.2


def test_train_ranker_is_deterministic():
    u, cand, positives, tag_vecs, prior = ranking_problem(4)
    cfg = RankerConfig(candidates=10, epochs=2, groups_per_batch=16)
    a = train_ranker(u, cand, positives, tag_vecs, prior, cfg)
    b = train_ranker(u, cand, positives, tag_vecs, prior, cfg)
    for k, t in a.state_dict().items():
        torch.testing.assert_close(t, b.state_dict()[k], msg=k)
