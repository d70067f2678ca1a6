"""Defences: the maths on small random arrays (shapes, norms, invertibility, DP calibration, quantisation)."""

import math

import numpy as np
import pytest

from slime_core.cli.main import main
from slime_core.stages import align
from slime_core.stages.defences import apply_defence
from slime_core.stages.defences import create_defence as make_defence
from slime_core.stages.defences import defence_spec, list_defences, parse_strengths
from slime_core.stages.defences.quantise import dequantise, quantise_codes
from slime_core.stages.defences.rotation import random_orthogonal

DEFENCES = list_defences()
SPECS = {name: defence_spec(name) for name in DEFENCES}
from slime_core.infra.errors import SlimeError
from slime_core.stages.dp import (
    analytic_delta,
    analytic_gaussian_sigma,
    classic_gaussian_sigma,
    gaussian_sigma,
    l1_sensitivity,
    laplace_scale,
)


def unit(n, d, seed=0, nonneg=False):
    X = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    if nonneg:
        X = np.abs(X)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("name", DEFENCES)
def test_every_defence_shapes_dtype_determinism(name):
    X = unit(40, 16, nonneg=True)
    strength = {"noise": 0.1, "gaussian": 5.0, "laplace": 5.0, "rotation": 1, "shuffle": 1, "pca": 6,
                "projection": 6, "quantise": 4}[name]
    Z1 = apply_defence(name, X, strength, seed=3)
    Z2 = apply_defence(name, X, strength, seed=3)
    assert Z1.dtype == np.float32 and np.isfinite(Z1).all()
    assert Z1.shape == (40, 6 if name in ("pca", "projection") else 16)
    np.testing.assert_array_equal(Z1, Z2)  # the same key gives the same release
    assert SPECS[name].protects and SPECS[name].does_not  # every defence documents both


@pytest.mark.parametrize("name,off", [("noise", 0), ("gaussian", math.inf), ("laplace", math.inf), ("rotation", 0),
                                      ("shuffle", 0)])
def test_off_strength_is_identity(name, off):
    X = unit(10, 8)
    np.testing.assert_array_equal(apply_defence(name, X, off), X)


def test_secret_keys_differ():
    X = unit(20, 8)
    for name in ("noise", "rotation", "shuffle", "projection"):
        s = 0.1 if name == "noise" else 1 if name in ("rotation", "shuffle") else 4
        assert not np.allclose(apply_defence(name, X, s, seed=1), apply_defence(name, X, s, seed=2)), name


def test_rotation_is_orthogonal_preserves_cosines_and_is_undone_by_least_squares():
    R = random_orthogonal(12, seed=5)
    np.testing.assert_allclose(R.T @ R, np.eye(12), atol=1e-5)
    X = unit(50, 12)
    Z = apply_defence("rotation", X, 1, seed=5)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(Z @ Z.T, X @ X.T, atol=1e-5)  # utility untouched
    W = np.linalg.lstsq(Z, X, rcond=None)[0]  # the attacker's least squares on >= d leaked pairs
    np.testing.assert_allclose(Z @ W, X, atol=1e-4)
    np.testing.assert_allclose(W, R.T, atol=1e-4)


@pytest.mark.parametrize("name", ["rotation", "shuffle"])
def test_ridge_alignment_is_blind_to_rotation_and_shuffle(name):
    """Ridge is rotation-equivariant: the attacker's aligned output is the same with or without the defence."""
    X, Y = unit(60, 10, seed=1), unit(60, 7, seed=2)
    Z = apply_defence(name, X, 1, seed=9)
    clean, defended = align.fit_alignment(X, Y, "ridge"), align.fit_alignment(Z, Y, "ridge")
    np.testing.assert_allclose(defended.transform(Z), clean.transform(X), atol=1e-4)
    assert defended.heldout_cosine == pytest.approx(clean.heldout_cosine, abs=1e-4)


def test_shuffle_is_a_permutation():
    X = unit(5, 9)
    Z = apply_defence("shuffle", X, 1, seed=4)
    np.testing.assert_allclose(np.sort(Z, axis=1), np.sort(X, axis=1))
    assert not np.array_equal(Z, X)


def test_noise_scale_matches_sigma():
    X = np.zeros((200, 50), np.float32)
    X[:, 0] = 1
    Z = apply_defence("noise", X, 0.3, seed=0)
    assert (Z - X).std() == pytest.approx(0.3, rel=0.03)
    d = make_defence("noise", 0.3).fit(X)
    assert not np.array_equal(d.transform(X, stream=0), d.transform(X, stream=1))  # independent draws


def test_classic_gaussian_sigma_formula():
    eps, delta = 0.5, 1e-5
    assert classic_gaussian_sigma(eps, delta) == pytest.approx(2 * math.sqrt(2 * math.log(1.25 / delta)) / eps)
    with pytest.raises(SlimeError, match="epsilon < 1"):
        classic_gaussian_sigma(2.0, delta)


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0, 5.0, 100.0])
def test_analytic_gaussian_sigma_is_tight_and_never_noisier(eps):
    delta = 1e-5
    sigma = analytic_gaussian_sigma(eps, delta)
    assert analytic_delta(sigma, eps) <= delta * (1 + 1e-6)
    assert analytic_delta(sigma * 0.99, eps) > delta  # smallest such sigma
    if eps < 1:
        assert sigma <= classic_gaussian_sigma(eps, delta)
    assert gaussian_sigma(eps, delta, "analytic") == sigma


def test_gaussian_mechanism_noise_matches_calibration():
    X = unit(300, 64)
    d = make_defence("gaussian", 0.5, delta=1e-5, calibration="classic").fit(X)
    Z = d.transform(X)
    assert (Z - X).std() == pytest.approx(classic_gaussian_sigma(0.5, 1e-5), rel=0.03)
    assert d.describe()["noise_scale"] == pytest.approx(classic_gaussian_sigma(0.5, 1e-5))


def test_laplace_scale_and_l1_sensitivity():
    d = 64
    assert laplace_scale(2.0, d) == pytest.approx(2 * math.sqrt(d) / 2.0)
    X, Y = unit(500, d, 1), -unit(500, d, 1)  # antipodal pairs: ||x - y||_2 = 2, the worst case
    assert np.abs(X - Y).sum(axis=1).max() <= l1_sensitivity(d) + 1e-4
    Z = apply_defence("laplace", unit(400, d), 4.0, seed=0) - unit(400, d)
    assert np.abs(Z).mean() == pytest.approx(laplace_scale(4.0, d), rel=0.03)  # E|Laplace(b)| = b


def test_quantise_int8_round_trip_and_binary():
    X = unit(100, 16, nonneg=True)
    d = make_defence("quantise", 8).fit(X)
    Z = d.transform(X)
    step = d.step  # the defence's own fitted state, as typed attributes
    assert np.all(np.abs(Z - X) <= step / 2 + 1e-6)
    codes = quantise_codes(X, d.lo, step, 8)
    assert codes.min() >= 0 and codes.max() <= 255
    np.testing.assert_allclose(dequantise(codes, d.lo, step), Z, atol=1e-6)
    B = apply_defence("quantise", X, 1)
    assert set(np.unique(B)) == {-1.0, 1.0}
    assert 0.4 < (B > 0).mean() < 0.6  # median threshold: non-negative inputs do not collapse to one code


def test_pca_full_rank_keeps_dot_products_and_truncation_shrinks():
    X = unit(30, 8)
    Z = apply_defence("pca", X, 8)
    np.testing.assert_allclose(Z @ Z.T, X @ X.T, atol=1e-4)
    Z2 = apply_defence("pca", X, 2)
    assert Z2.shape == (30, 2)
    assert np.all(np.linalg.norm(Z2, axis=1) <= 1 + 1e-5)


def test_projection_approximately_preserves_cosines():
    X = unit(20, 1024)
    Z = apply_defence("projection", X, 1024, seed=0)
    Zn = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    assert np.abs(Zn @ Zn.T - X @ X.T).max() < 0.2
    with pytest.raises(SlimeError, match="larger than the embedding dimension"):
        apply_defence("projection", X[:, :8], 9)


@pytest.mark.parametrize("name,strength,msg", [
    ("nope", 1, "unknown defence"), ("gaussian", 0, "epsilon must be > 0"), ("laplace", -1, "epsilon must be > 0"),
    ("noise", -0.1, "sigma must be"), ("rotation", 0.5, "0 \\(off\\) or 1"), ("pca", 2.5, "whole number"),
    ("projection", 0, "whole number"), ("quantise", 0, "1..16"), ("quantise", 17, "1..16"),
    ("noise", "x", "must be a number"),
])
def test_bad_strengths_are_slime_errors(name, strength, msg):
    with pytest.raises(SlimeError, match=msg):
        make_defence(name, strength)


def test_fit_errors():
    X = unit(10, 8)
    with pytest.raises(SlimeError, match="larger than the embedding dimension"):
        apply_defence("pca", X, 9)
    Z = apply_defence("pca", unit(3, 8), 8)  # d' above the data's rank: completed basis, still a rotation
    np.testing.assert_allclose(Z @ Z.T, unit(3, 8) @ unit(3, 8).T, atol=1e-5)
    with pytest.raises(SlimeError, match="fit"):
        make_defence("rotation", 1).transform(X)
    with pytest.raises(SlimeError, match="8 dims"):
        make_defence("rotation", 1).fit(unit(10, 6)).transform(X)
    with pytest.raises(SlimeError, match="NaN"):
        apply_defence("noise", np.full((2, 3), np.nan), 0.1)
    with pytest.raises(SlimeError, match="delta"):
        make_defence("gaussian", 1.0, delta=2.0)


def test_parse_strengths():
    assert parse_strengths("0,0.05, 0.1") == [0, 0.05, 0.1]
    assert parse_strengths("inf,10") == [math.inf, 10]
    for bad in ("", "a,1", "nan"):
        with pytest.raises(SlimeError):
            parse_strengths(bad)


def test_cli_rejects_bad_input_in_one_line(capsys):
    assert main(["defend", "--defence", "nope"]) == 2
    assert main(["defend", "--defence", "noise", "--strength", "0,x"]) == 2
    assert main(["defend", "--defence", "gaussian", "--strength", "0"]) == 2
    assert main(["report", "--defence", "noise,pca", "--strength", "1"]) == 2
    assert main(["report", "--no-defences", "--out", "r.txt"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 5


def test_queries_get_only_the_keyed_linear_part_of_a_defence():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 12)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    q = X[:5] + 0.1
    rot = make_defence("rotation", 1, seed=7).fit(X)
    np.testing.assert_allclose(rot.transform_query(q) @ rot.transform(X).T, q @ X.T, atol=1e-5)  # cosines kept
    for name, strength in (("noise", 0.5), ("quantise", 1)):
        d = make_defence(name, strength).fit(X)
        np.testing.assert_array_equal(d.transform_query(q), q)  # stored vectors are noised/coded, queries not
    pca = make_defence("pca", 4).fit(X)
    assert pca.transform_query(q).shape == (5, 4)
    with pytest.raises(SlimeError, match="fitted on 12-dim"):
        rot.transform_query(q[:, :6])


def test_every_spec_carries_its_short_name_and_description_as_data():
    spec = defence_spec
    for name in DEFENCES:
        s = spec(name)
        assert s.short and s.description, name
        assert "\n" not in s.description and "  " not in s.description  # one paragraph, as the app shows it
    assert spec("noise").short == "strength = sigma"
    assert spec("rotation").description.startswith("x @ R, R a random orthogonal matrix")
