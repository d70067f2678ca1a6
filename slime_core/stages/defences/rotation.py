"""The `rotation` defence: a secret random orthogonal rotation, which preserves every cosine."""

from __future__ import annotations

import numpy as np

from slime_core.stages.defences.base import DefenceSpec, KeyedSwitch
from slime_core.stages.defences.registry import register_defence


def random_orthogonal(d: int, seed: int) -> np.ndarray:
    """Haar-random orthogonal d x d matrix (QR of a Gaussian matrix with the sign fix)."""
    g = np.random.default_rng(seed).standard_normal((d, d))
    q, r = np.linalg.qr(g)
    return (q * np.sign(np.diag(r))).astype(np.float32)


@register_defence
class Rotation(KeyedSwitch):
    spec = DefenceSpec(
        "rotation", "0 = off, 1 = random orthogonal rotation with a secret key", "up", (0, 1),
        "only an attacker reusing a map fitted on undefended embeddings",
        "an attacker with leaked pairs: least squares recovers the rotation, ridge is rotation-equivariant",
        0.0,
        short="0 = off, 1 = on",
        description=(
            "x @ R, R a random orthogonal matrix from the secret seed. strength: 0 = off, 1 = on. Preserves every"
            " cosine, so utility is untouched -- and the attacker's linear map absorbs R: least squares on >= d "
            "pairs recovers R exactly, and ridge is exactly rotation-equivariant (W' = R^T W), so leakage is "
            "UNCHANGED. It only stops an attacker who reuses a map fitted on undefended embeddings. It is here to"
            " show that honestly."),
        refit_absorbs=True,
    )
    R: np.ndarray | None = None  # the secret d x d rotation, once fitted (on)

    def _fit(self, X: np.ndarray) -> None:
        if self.strength == 1:
            self.R = random_orthogonal(X.shape[1], self.seed)

    def _transform(self, X: np.ndarray, stream: int) -> np.ndarray:
        return X @ self.R
