"""Victim space -> attacker space, fitted on N leaked (victim, attacker) pairs of the same public images.

Methods
  lstsq       the paper's one-step least squares W = argmin ||XW - Y|| (minimum-norm solution via lstsq)
  ridge       least squares + lambda ||W||^2, lambda chosen by exact leave-one-out error (the default:
              plain least squares interpolates and collapses when N is near the input dimension)
  procrustes  W orthogonal (only when both spaces have the same dimension)
Inputs and outputs are (n, d) float32 arrays; outputs are L2-normalised.
`prior_cosine` is the alignment prior: the held-out cosine a constant (no-information) victim embedding gets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from slime_core.infra.errors import SlimeError
from slime_core.infra.registry import Registry
from slime_core.stages.encoders.base import l2_normalise

LAMBDAS = np.logspace(-4, 2, 13)  # relative to the mean eigenvalue of X X^T
LOO_ROWS = 256  # leave-one-out error is averaged over at most this many pairs (an unbiased sample)

# Alignment methods by name, in registration order (the default, ridge, first). A method takes the checked,
# unit-normalised pairs (X, Y) and returns an Alignment: adding one is one decorated function, not a new branch.
METHODS: Registry[Callable[[np.ndarray, np.ndarray], "Alignment"]] = Registry("alignment method")


def register_alignment_method(name: str):
    """Decorator: register `fit(X, Y) -> Alignment` as the alignment method `name`."""
    return METHODS.register(name)


def list_alignment_methods() -> list[str]:
    """The registered alignment method names, the default first."""
    return METHODS.names()


def alignment_method(name: str):
    """The fit function registered as `name`, or a one-line SlimeError that names the known ones."""
    return METHODS.get(name)


@dataclass
class Alignment:
    W: np.ndarray  # (d_victim, d_attacker)
    method: str
    n_pairs: int
    heldout_cosine: float  # mean cosine(aligned, true) on pairs left out of the fit
    lam: float | None = None
    info: dict = field(default_factory=dict)
    # The adaptive attacker's map may take a constant extra feature (an intercept; `fit_adaptive`): its value,
    # appended to every input row by `transform`, or None for a map without one.
    intercept_scale: float | None = None

    @property
    def input_dim(self) -> int:
        """The victim embeddings' dimension this map takes."""
        return self.W.shape[0] - (self.intercept_scale is not None)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, d_victim) victim embeddings -> (n, d_attacker) unit vectors in attack space."""
        X = check_embeddings(X, "victim embeddings", dim=self.input_dim)
        if self.intercept_scale is not None:
            X = with_intercept(X, self.intercept_scale)
        return l2_normalise(X @ self.W)


# Row norms an embedding can have. Real encoders give ~0.1-1,000 (unit vectors, raw CLIP ~10-30, int8 or binary codes
# in the hundreds); beyond these bounds float32 arithmetic under- or overflows (a norm of 1e30 squares to inf, a
# denormal row to 0) and every cosine comes out 0.00 - such a file is scaled wrongly or corrupt, and is refused.
MIN_ROW_NORM, MAX_ROW_NORM = 1e-12, 1e12
_CHUNK = 4096  # rows checked at a time in float64 (bounded extra memory for big files)


def check_embeddings(X, what: str, dim: int | None = None) -> np.ndarray:
    """A float32 (n, d) array, or a SlimeError that says what is wrong with it: the one gate every embedding
    passes where it enters (files, uploads, pools, the attack). Refused: non-numeric dtypes (strings, objects,
    booleans, complex), shapes other than (n, d), NaN/inf (also values that overflow float32), all-zero rows and
    rows whose norm lies outside [MIN_ROW_NORM, MAX_ROW_NORM] (denormals, values scaled by 1e30)."""
    try:
        raw = np.asarray(X)
    except (TypeError, ValueError) as err:
        raise SlimeError(f"{what}: not a numeric array ({err}).") from None
    if raw.dtype.kind not in "fiu":
        raise SlimeError(f"{what}: not a numeric array (dtype {raw.dtype}); embeddings are floats or integers.")
    if raw.ndim == 1:
        raw = raw[None, :]
    if raw.ndim != 2 or raw.shape[0] == 0 or raw.shape[1] == 0:
        raise SlimeError(f"{what}: expected a 2-D array (n, d) with n >= 1, got shape {raw.shape}.")
    if dim is not None and raw.shape[1] != dim:
        raise SlimeError(f"{what}: dimension {raw.shape[1]} does not match the expected {dim}.")
    norms, bad = np.empty(len(raw)), np.zeros(len(raw), bool)
    for start in range(0, len(raw), _CHUNK):
        block = raw[start:start + _CHUNK].astype(np.float64)
        bad[start:start + _CHUNK] = ~np.isfinite(block).all(axis=1)
        with np.errstate(over="ignore", invalid="ignore"):
            norms[start:start + _CHUNK] = np.linalg.norm(block, axis=1)  # inf for 1e300: refused as out of range
    if bad.any():
        raise SlimeError(f"{what}: {int(bad.sum())} row(s) contain NaN or inf (first: row {int(np.argmax(bad))}).")
    zero = norms == 0
    if zero.any():
        raise SlimeError(f"{what}: {int(zero.sum())} row(s) are all zeros (first: row {int(np.argmax(zero))}).")
    out = (norms < MIN_ROW_NORM) | (norms > MAX_ROW_NORM)
    if raw.dtype.kind == "f" and raw.dtype.itemsize > 4:
        out |= (np.abs(raw).max(axis=1) > np.finfo(np.float32).max)
    if out.any():
        i = int(np.argmax(out))
        raise SlimeError(f"{what}: row {i} has norm {norms[i]:.3g} ({int(out.sum())} row(s) outside "
                         f"{MIN_ROW_NORM:g}..{MAX_ROW_NORM:g}); embeddings have norms near 1-1,000, so the values "
                         f"are scaled wrongly (denormal or overflowing in float32) or the file is corrupt.")
    return raw.astype(np.float32)


def check_pairs(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X, Y = check_embeddings(X, "victim embeddings"), check_embeddings(Y, "attacker embeddings")
    if len(X) != len(Y):
        raise SlimeError(f"mismatched pairs: {len(X)} victim embeddings but {len(Y)} attacker embeddings.")
    if len(X) < 2:
        raise SlimeError("alignment needs at least 2 (victim, attacker) pairs.")
    return l2_normalise(X), l2_normalise(Y)


def cosines(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Cosine of each row of A with the same row of B, (n,): how close each aligned embedding lands to the
    true one. The one place this is computed (evaluation, defence curves, audit, explorer)."""
    return np.sum(l2_normalise(A) * l2_normalise(B), axis=1)


def mean_cosine(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.mean(cosines(A, B)))


@register_alignment_method("ridge")
def _ridge(X: np.ndarray, Y: np.ndarray, lambdas=LAMBDAS) -> Alignment:
    """Kernel form W = X^T (XX^T + lam I)^-1 Y: one factorisation serves every lambda, the hat matrix is
    H = Q diag(e / (e + lam)) Q^T with (Q, e) the eigenpairs of the Gram matrix XX^T, and leave-one-out predictions
    are exact: y_i - e_i / (1 - H_ii). With more pairs than dims the thin SVD X = Q S V^T gives the same non-zero
    eigenpairs at O(n d^2) instead of O(n^3): a minute less at n = 6,909 pairs (the whole pool)."""
    n = len(X)
    if n <= X.shape[1]:
        evals, Q = np.linalg.eigh(X @ X.T)
        evals = np.clip(evals, 0, None)
    else:
        Q, sv, _ = np.linalg.svd(X, full_matrices=False)
        evals = sv ** 2
    QtY = Q.T @ Y
    rows = np.random.default_rng(0).permutation(n)[:LOO_ROWS]
    Qr, Yr = Q[rows], Y[rows]
    scale = float(evals.sum()) / n or 1.0  # the mean eigenvalue of the n x n Gram matrix, zeros included
    best = None
    for lam in lambdas * scale:
        shrink = (evals / (evals + lam)).astype(np.float32)  # eigenvalues of the hat matrix H
        fitted = Qr @ (shrink[:, None] * QtY)
        h = (Qr * Qr) @ shrink
        loo = Yr - (Yr - fitted) / np.maximum(1 - h, 1e-6)[:, None]
        cos = mean_cosine(loo, Yr)
        if best is None or cos > best[1]:
            best = (lam, cos)
    lam, cos = best
    alpha = Q @ ((1.0 / (evals + lam)).astype(np.float32)[:, None] * QtY)
    return Alignment((X.T @ alpha).astype(np.float32), "ridge", n, cos, float(lam / scale))


def _lstsq_weights(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    from scipy.linalg import lstsq, qr, solve_triangular

    if len(X) < X.shape[1]:
        # Fewer pairs than dims: the minimum-norm solution from a QR of X^T (X = R^T Q^T, W = Q R^-T Y),
        # the answer lstsq gives, at O(d N^2) and without squaring X's condition number.
        Q, R = qr(X.T, mode="economic", check_finite=False)
        diag = np.abs(np.diag(R))
        if diag.min() > 1e-6 * diag.max():
            return Q @ solve_triangular(R, Y, trans="T", check_finite=False)
    # LAPACK gelsy (complete orthogonal factorisation): numpy's SVD-based lstsq's solution, faster.
    return lstsq(X, Y, lapack_driver="gelsy", check_finite=False)[0]


def _procrustes_weights(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    from scipy.linalg import orthogonal_procrustes

    return orthogonal_procrustes(X, Y)[0]


def _kfold_cosine(X: np.ndarray, Y: np.ndarray, solve, folds: int = 5, seed: int = 0) -> float:
    order = np.random.default_rng(seed).permutation(len(X))
    cosines = []
    for held in np.array_split(order, min(folds, len(X))):
        train = np.setdiff1d(order, held)
        W = solve(X[train], Y[train])
        cosines.append(np.sum(l2_normalise(X[held] @ W) * Y[held], axis=1))
    return float(np.mean(np.concatenate(cosines)))


def _closed_form(name: str, solve, X: np.ndarray, Y: np.ndarray) -> Alignment:
    """A one-step map W = solve(X, Y), its held-out cosine from 5 folds (no hyper-parameter to choose)."""
    return Alignment(solve(X, Y).astype(np.float32), name, len(X), _kfold_cosine(X, Y, solve))


@register_alignment_method("lstsq")
def _fit_lstsq(X: np.ndarray, Y: np.ndarray) -> Alignment:
    return _closed_form("lstsq", _lstsq_weights, X, Y)


@register_alignment_method("procrustes")
def _fit_procrustes(X: np.ndarray, Y: np.ndarray) -> Alignment:
    if X.shape[1] != Y.shape[1]:
        raise SlimeError(f"Procrustes needs equal dimensions; victim has {X.shape[1]}, attacker {Y.shape[1]}. Use ridge or lstsq.")
    return _closed_form("procrustes", _procrustes_weights, X, Y)


def fit_alignment(X, Y, method: str = "ridge") -> Alignment:
    """Fit a map from victim embeddings X (n, dv) to attacker embeddings Y (n, da) of the same images."""
    fit = alignment_method(method)
    X, Y = check_pairs(X, Y)
    return fit(X, Y)


COLLAPSE_COSINE = 0.999  # aligned output this close to the pairs' mean: the prior's answer, whatever the image
PRIOR_MARGIN = 1e-3  # held-out cosine within this of the constant-embedding prior: the map learned nothing
OFF_SPAN_RATIO = 0.2  # pre-normalisation length below this share of the leaked pairs' median: outside what the map saw


def describe_fit(fit: Alignment, X_pairs: np.ndarray, Y_pairs: np.ndarray) -> Alignment:
    """Store on `fit` what `collapse_warnings` compares an embedding with: the unit mean direction of the attacker
    embeddings of its N pairs, and the median length of the pairs' mapped (unit) victim embeddings before the
    final normalisation."""
    fit.info["mean_direction"] = l2_normalise(np.asarray(Y_pairs, np.float32).mean(axis=0, keepdims=True))[0]
    raw = l2_normalise(check_embeddings(X_pairs, "victim embeddings")[:LOO_ROWS]) @ fit.W  # a sample is enough
    fit.info["median_length"] = float(np.median(np.linalg.norm(raw, axis=1)))
    return fit


def collapse_warnings(fit: Alignment, X: np.ndarray) -> list[str]:
    """Warnings for each row of victim embeddings X that the map sends onto its pairs' mean (cosine >= 0.999 with
    it: the attack answers with the prior, not the image) or that lies mostly outside the span of the leaked pairs
    (its mapped length under 20% of theirs), and one warning for the whole fit when its held-out cosine is not above
    the constant-embedding prior (`fit.info["prior_cosine"]`); [] for a fit without `describe_fit`'s figures."""
    if "mean_direction" not in fit.info:
        return []
    X = l2_normalise(check_embeddings(X, "victim embeddings", dim=fit.input_dim))
    raw = (with_intercept(X, fit.intercept_scale) if fit.intercept_scale is not None else X) @ fit.W
    out = []
    prior = fit.info.get("prior_cosine")
    if prior is not None and fit.heldout_cosine <= prior + PRIOR_MARGIN:
        out.append(f"the alignment's held-out cosine {fit.heldout_cosine:.3f} is not above the {prior:.3f} a constant "
                   f"embedding gets: on these N={fit.n_pairs} pairs the victim embeddings tell nothing about the "
                   f"attacker's (too few pairs, or a pool file in another order or from another encoder).")
        return out  # every embedding then lands near the mean: the per-row warnings would only repeat this one
    for i, (row, cos) in enumerate(zip(raw, l2_normalise(raw) @ fit.info["mean_direction"])):
        which = f"row {i}: " if len(X) > 1 else ""
        if cos >= COLLAPSE_COSINE:
            out.append(f"{which}the alignment maps this embedding onto the mean of the leaked pairs (cosine {cos:.3f}); "
                       f"its tags are the prior's, not the image's. Is it a constant or averaged embedding?")
        elif np.linalg.norm(row) < OFF_SPAN_RATIO * fit.info["median_length"]:
            out.append(f"{which}this embedding lies mostly outside what the alignment learned from the leaked pairs "
                       f"(mapped length {np.linalg.norm(row):.2f} vs their median {fit.info['median_length']:.2f}); "
                       f"is it from the victim encoder named?")
    return out


class FitCache:
    """Fitted maps by key, at most `bound` of them, the least recently used dropped first: the one cache of fitted
    maps (the Attacker keeps one for the bundle's pools; an app session keeps its own for its uploads)."""

    def __init__(self, bound: int):
        from collections import OrderedDict

        self.bound = bound
        self._fits: OrderedDict = OrderedDict()

    def get(self, key, fit):
        """The map under `key`, made by `fit()` on a miss."""
        if key in self._fits:
            self._fits.move_to_end(key)
            return self._fits[key]
        made = self._fits[key] = fit()
        while len(self._fits) > self.bound:
            self._fits.popitem(last=False)
        return made

    def drop(self, which) -> None:
        """Forget the maps whose key satisfies `which(key)` (their pairs changed)."""
        for key in [key for key in self._fits if which(key)]:
            del self._fits[key]

    def __len__(self) -> int:
        return len(self._fits)

    def __iter__(self):
        return iter(list(self._fits))


def choose_pairs(pool_size: int, n: int, seed: int = 0) -> np.ndarray:
    """Indices of the N leaked pairs drawn from the public pool."""
    if n > pool_size:
        raise SlimeError(f"N={n} alignment pairs asked for, but the public pool holds only {pool_size} images.")
    if n < 2:
        raise SlimeError(f"N={n}: alignment needs at least 2 pairs.")
    return np.sort(np.random.default_rng(seed).choice(pool_size, size=n, replace=False))


def with_intercept(Z: np.ndarray, scale: float) -> np.ndarray:
    """Z with a constant column `scale` appended (an intercept for the attacker's linear map)."""
    return np.concatenate([Z, np.full((len(Z), 1), scale, np.float32)], axis=1)


def fit_adaptive(Z: np.ndarray, Y: np.ndarray, method: str = "ridge"):
    """The adaptive attacker's alignment on defended pairs: the map with and without an intercept
    (a constant feature), keeping the one with the better held-out cosine on its own pairs (no test data).
    The intercept matters when a defence removes the embeddings' common offset (median-thresholded binary
    codes); elsewhere the two fits agree. Returns (Alignment, used_intercept); the map owns its intercept
    (`intercept_scale`), so callers transform raw embeddings either way."""
    plain = fit_alignment(Z, Y, method)
    if method == "procrustes":
        return plain, False
    scale = float(np.linalg.norm(Z, axis=1).mean()) or 1.0
    biased = fit_alignment(with_intercept(Z, scale), Y, method)
    biased.intercept_scale = scale
    return (biased, True) if biased.heldout_cosine > plain.heldout_cosine else (plain, False)


def prior_cosine(pool_attack: np.ndarray, n_align: int, method: str = "ridge", seed: int = 0) -> float:
    """The alignment prior: the held-out cosine a constant (no-information) victim embedding gets under the same
    held-out scheme as `fit_alignment` on the same N pairs. A map from a constant input can only output one
    direction, the mean of the attacker embeddings it was fitted on, so each held-out pair is predicted by the mean
    of the others: leave-one-out over the same sampled rows for ridge, the same 5 folds for lstsq/procrustes."""
    idx = choose_pairs(len(pool_attack), n_align, seed)
    Y = l2_normalise(np.asarray(pool_attack, dtype=np.float32)[idx])
    n = len(Y)
    if method == "ridge":  # _ridge's leave-one-out rows
        rows = np.random.default_rng(0).permutation(n)[:LOO_ROWS]
        pred = (Y.sum(axis=0, keepdims=True) - Y[rows]) / (n - 1)
        return mean_cosine(pred, Y[rows])
    order = np.random.default_rng(0).permutation(n)  # _kfold_cosine's folds
    held_cosines = []
    for held in np.array_split(order, min(5, n)):
        mean = l2_normalise(Y[np.setdiff1d(order, held)].mean(axis=0, keepdims=True))
        held_cosines.append(Y[held] @ mean[0])
    return float(np.mean(np.concatenate(held_cosines)))
