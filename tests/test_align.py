"""Alignment: known linear maps recovered on synthetic data, ridge beating least squares near N = d, errors."""

import numpy as np
import pytest

from slime_core.infra.errors import SlimeError
from slime_core.stages import align
from slime_core.stages.align import Alignment, check_embeddings, choose_pairs, fit_alignment, mean_cosine
from slime_core.stages.encoders.base import l2_normalise


def unit_rows(rng, n, d):
    return l2_normalise(rng.normal(size=(n, d)))


def orthonormal_rows(rng, d_in, d_out):
    """(d_in, d_out) with orthonormal rows: maps unit vectors to unit vectors, so the map survives
    the L2 normalisation fit_alignment applies to both sides."""
    q, _ = np.linalg.qr(rng.normal(size=(d_out, d_out)))
    return q[:d_in].astype(np.float32)


@pytest.fixture(scope="module")
def exact_problem():
    rng = np.random.default_rng(1)
    W = orthonormal_rows(rng, 8, 16)
    X = unit_rows(rng, 120, 8)
    return X, X @ W, W


def test_lstsq_recovers_known_map(exact_problem):
    X, Y, W = exact_problem
    fit = fit_alignment(X, Y, "lstsq")
    assert isinstance(fit, Alignment)
    assert fit.method == "lstsq" and fit.n_pairs == len(X) and fit.W.shape == (8, 16) and fit.W.dtype == np.float32
    np.testing.assert_allclose(fit.W, W, atol=1e-4)
    assert fit.heldout_cosine == pytest.approx(1.0, abs=1e-4)


def test_ridge_recovers_known_map(exact_problem):
    X, Y, W = exact_problem
    fit = fit_alignment(X, Y)  # ridge is the default
    assert fit.method == "ridge" and fit.lam is not None and fit.lam > 0
    fresh = unit_rows(np.random.default_rng(2), 50, 8)
    assert mean_cosine(fit.transform(fresh), fresh @ W) > 0.999
    assert fit.heldout_cosine > 0.999
    # With noise-free data the leave-one-out choice picks the smallest lambda on the grid.
    assert fit.lam == pytest.approx(1e-4)


def test_procrustes_recovers_rotation():
    rng = np.random.default_rng(3)
    Q = orthonormal_rows(rng, 12, 12)
    X = unit_rows(rng, 60, 12)
    fit = fit_alignment(X, X @ Q, "procrustes")
    np.testing.assert_allclose(fit.W, Q, atol=1e-4)
    np.testing.assert_allclose(fit.W @ fit.W.T, np.eye(12), atol=1e-4)
    assert fit.heldout_cosine == pytest.approx(1.0, abs=1e-4)


def test_procrustes_requires_equal_dims(exact_problem):
    X, Y, _ = exact_problem
    with pytest.raises(SlimeError, match="Procrustes needs equal dimensions; victim has 8, attacker 16"):
        fit_alignment(X, Y, "procrustes")


def test_transform_output_is_unit_norm(exact_problem):
    X, Y, _ = exact_problem
    out = fit_alignment(X, Y).transform(X[:5] * 3.0)
    assert out.shape == (5, 16) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert fit_alignment(X, Y).transform(X[0]).shape == (1, 16)  # a single vector is one row


def test_ridge_beats_lstsq_near_n_equals_d():
    """The prototype's lesson: with N ~ d noisy pairs least squares interpolates the noise; ridge does not."""
    rng = np.random.default_rng(4)
    d_in, d_out, n = 64, 48, 64
    W = rng.normal(size=(d_in, d_out))
    make = lambda m: (lambda X: (X, X @ W + 0.8 * rng.normal(size=(m, d_out)) * np.linalg.norm(X @ W, axis=1).mean() / np.sqrt(d_out)))(rng.normal(size=(m, d_in)))
    X, Y = make(n)
    Xt, Yt = make(500)
    truth = l2_normalise(Xt @ W)
    ridge, lstsq = fit_alignment(X, Y, "ridge"), fit_alignment(X, Y, "lstsq")
    ridge_test, lstsq_test = mean_cosine(ridge.transform(Xt), truth), mean_cosine(lstsq.transform(Xt), truth)
    assert ridge_test > lstsq_test + 0.05
    # Both held-out estimates are cosines, and ridge's leave-one-out estimate is honest (close to test-set truth
    # measured against the noisy targets).
    for fit in (ridge, lstsq):
        assert -1.0 <= fit.heldout_cosine <= 1.0
    assert abs(ridge.heldout_cosine - mean_cosine(ridge.transform(Xt), Yt)) < 0.1


def test_heldout_cosine_is_low_for_unrelated_spaces():
    rng = np.random.default_rng(5)
    X, Y = unit_rows(rng, 80, 10), unit_rows(rng, 80, 10)
    for method in ("ridge", "lstsq", "procrustes"):
        fit = fit_alignment(X, Y, method)
        assert -1.0 <= fit.heldout_cosine < 0.4, method


# ---------------------------------------------------------------- errors


def test_mismatched_pair_counts():
    with pytest.raises(SlimeError, match="mismatched pairs: 5 victim embeddings but 4 attacker embeddings"):
        fit_alignment(np.ones((5, 3)), np.ones((4, 3)))


def test_fewer_than_two_pairs():
    with pytest.raises(SlimeError, match="at least 2"):
        fit_alignment(np.ones((1, 3)), np.ones((1, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows(bad):
    X = np.ones((6, 3), np.float32)
    X[4, 1] = bad
    with pytest.raises(SlimeError, match=r"victim embeddings: 1 row\(s\) contain NaN or inf \(first: row 4\)"):
        fit_alignment(X, np.ones((6, 3)))
    with pytest.raises(SlimeError, match="attacker embeddings: 1 row"):
        fit_alignment(np.ones((6, 3)), X)


def test_wrong_dimension_at_transform(exact_problem):
    X, Y, _ = exact_problem
    fit = fit_alignment(X, Y, "lstsq")
    with pytest.raises(SlimeError, match="dimension 5 does not match the expected 8"):
        fit.transform(np.ones((2, 5)))


@pytest.mark.parametrize("value,message", [
    (np.ones((2, 3, 4)), "expected a 2-D array"),
    (np.ones((0, 4)), "expected a 2-D array"),
    ([["a", "b"]], "not a numeric array"),
])
def test_check_embeddings_rejects(value, message):
    with pytest.raises(SlimeError, match=message):
        check_embeddings(value, "x")


def test_check_embeddings_accepts_vector_and_lists():
    out = check_embeddings([1, 2, 3], "x", dim=3)
    assert out.shape == (1, 3) and out.dtype == np.float32


def test_unknown_method():
    with pytest.raises(SlimeError, match="unknown alignment method 'cca'"):
        fit_alignment(np.eye(3), np.eye(3), "cca")


def test_choose_pairs():
    idx = choose_pairs(100, 30, seed=7)
    assert len(idx) == 30 and len(set(idx)) == 30 and np.all(np.diff(idx) > 0) and idx.max() < 100
    np.testing.assert_array_equal(idx, choose_pairs(100, 30, seed=7))
    assert not np.array_equal(idx, choose_pairs(100, 30, seed=8))
    np.testing.assert_array_equal(choose_pairs(5, 5), np.arange(5))


def test_choose_pairs_errors():
    with pytest.raises(SlimeError, match="N=101 alignment pairs asked for, but the public pool holds only 100"):
        choose_pairs(100, 101)
    with pytest.raises(SlimeError, match="N=1: alignment needs at least 2"):
        choose_pairs(100, 1)


def test_cosines_row_by_row_and_their_mean():
    import numpy as np

    from slime_core.stages.align import cosines, mean_cosine

    A = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], np.float32)
    B = np.array([[2.0, 0.0], [1.0, 0.0], [-3.0, -4.0]], np.float32)
    assert np.allclose(cosines(A, B), [1.0, 0.0, -1.0])
    assert abs(mean_cosine(A, B) - 0.0) < 1e-7


@pytest.mark.parametrize("n, d", [(40, 16), (16, 40), (16, 16)])
def test_ridge_is_the_closed_form_on_both_sides_of_n_equals_d(n, d):
    """More pairs than dims goes through the thin SVD, fewer through the Gram matrix: both must be ridge itself,
    W = (X^T X + lam I)^-1 X^T Y at the lambda they chose (lam is stored relative to the mean Gram eigenvalue)."""
    from slime_core.stages.align import _ridge

    rng = np.random.default_rng(n * 100 + d)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = (X @ rng.normal(size=(d, 5)) + 0.5 * rng.normal(size=(n, 5))).astype(np.float32)
    fit = _ridge(X, Y)
    lam = fit.lam * float((X.astype(np.float64) ** 2).sum()) / n
    X64 = X.astype(np.float64)
    W = np.linalg.solve(X64.T @ X64 + lam * np.eye(d), X64.T @ Y)
    assert np.allclose(fit.W, W, atol=1e-4 * np.abs(W).max())


def test_an_adaptive_map_owns_its_intercept():
    """fit_adaptive's map with a constant feature transforms raw victim embeddings itself: no caller appends the
    column. Known answer: victim codes that lost their common offset (centred) map back onto offset targets only
    with the intercept, and transform equals the explicit column-appended product."""
    from slime_core.stages.encoders.base import l2_normalise

    rng = np.random.default_rng(0)
    Z = rng.standard_normal((200, 8)).astype(np.float32)
    Y = l2_normalise(Z[:, :4] * 0.1 + np.array([3.0, 0, 0, 0], np.float32))  # a large shared offset
    fit, used = align.fit_adaptive(Z, Y, "lstsq")
    assert used and fit.intercept_scale is not None and fit.input_dim == 8 and fit.W.shape == (9, 4)
    out = fit.transform(Z[:5])
    explicit = l2_normalise(align.with_intercept(Z[:5], fit.intercept_scale) @ fit.W)
    np.testing.assert_allclose(out, explicit, atol=1e-6)
    with pytest.raises(SlimeError, match="dimension 9"):
        fit.transform(np.ones((1, 9), np.float32))


def test_fit_cache_keeps_the_bound_and_drops_least_recently_used():
    cache = align.FitCache(2)
    made = []
    fit = lambda key: (lambda: made.append(key) or key)  # noqa: E731
    assert cache.get("a", fit("a")) == "a" and cache.get("b", fit("b")) == "b"
    cache.get("a", fit("a"))  # a hit: "a" becomes the most recently used
    cache.get("c", fit("c"))  # over the bound: "b" goes
    assert made == ["a", "b", "c"] and sorted(cache) == ["a", "c"] and len(cache) == 2
    cache.drop(lambda key: key == "a")
    assert list(cache) == ["c"]
