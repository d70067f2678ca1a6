"""The `pca` defence: projection on the top d' principal directions of the owner's embeddings."""

from __future__ import annotations

import hashlib

import numpy as np

from slime_core.infra.errors import SlimeError
from slime_core.stages.defences.base import DefenceSpec, KeptDimensions
from slime_core.stages.defences.registry import register_defence

_BASES: dict = {}


def principal_basis(X: np.ndarray) -> np.ndarray:
    """All d principal directions of X (uncentred), strongest first, as the columns of a d x d orthogonal
    matrix (directions beyond X's rank complete the basis). Cached by content: a curve refits PCA on the
    same owner embeddings at every d'."""
    key = (X.shape, hashlib.blake2b(np.ascontiguousarray(X).tobytes(), digest_size=16).hexdigest())
    if key not in _BASES:
        evals, vecs = np.linalg.eigh(X.T.astype(np.float64) @ X.astype(np.float64))
        _BASES.clear()  # keep one: memory stays d x d
        _BASES[key] = vecs[:, ::-1].astype(np.float32)
    return _BASES[key]


@register_defence
class PCA(KeptDimensions):
    spec = DefenceSpec(
        "pca", "d': principal directions kept", "down", (1280, 256, 128, 64, 32, 16, 8, 4, 2),
        "the information in the discarded directions",
        "whatever lies in the kept directions, which hold the semantics; the attacker aligns them", None,
        short="strength = d' kept",
        description=(
            "projection on the top d' principal directions of the owner's embeddings (uncentred SVD, so dot "
            "products are those of the best rank-d' approximation). strength = d' (1..d). Removes the information"
            " in the discarded directions; the attacker aligns what is left. Semantic content is concentrated in "
            "the top directions, so leakage falls slowly until d' is small; utility falls with it. Protects "
            "against nothing at large d'."),
        released_dim=True,
    )
    basis: np.ndarray | None = None  # d x d' kept directions, once fitted

    def _fit(self, X: np.ndarray) -> None:
        super()._fit(X)
        if X.shape[0] < 2:
            raise SlimeError("pca: needs at least 2 owner embeddings to fit on.")
        st = self.kept
        # beyond the data's rank (d' > n) the basis is completed with an orthonormal complement
        basis = principal_basis(X)[:, :st].copy()
        basis *= np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(st)])  # deterministic signs
        self.basis = basis.astype(np.float32)

    def _transform(self, X: np.ndarray, stream: int) -> np.ndarray:
        return X @ self.basis
