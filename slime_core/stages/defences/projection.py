"""The `projection` defence: a secret Gaussian random projection onto d' dimensions (Johnson-Lindenstrauss)."""

from __future__ import annotations

import math

import numpy as np

from slime_core.stages.defences.base import DefenceSpec, KeptDimensions
from slime_core.stages.defences.registry import register_defence


@register_defence
class Projection(KeptDimensions):
    spec = DefenceSpec(
        "projection", "d': output dimension of a secret Gaussian random projection", "down",
        (1280, 512, 256, 128, 64, 32, 16, 8, 4),
        "information lost at small d' only",
        "a linear map: alignment on leaked pairs absorbs it like a rotation", None,
        short="strength = d'",
        description=(
            "x @ P / sqrt(d'), P a secret d x d' Gaussian matrix (Johnson-Lindenstrauss). strength = d'. "
            "Preserves cosines approximately; a linear map, so the attacker's alignment absorbs P as it absorbs a"
            " rotation. Loses information only once d' is small."),
        released_dim=True,
        refit_absorbs=True,
    )
    P: np.ndarray | None = None  # the secret d x d' projection (scaled by 1/sqrt(d')), once fitted

    def _fit(self, X: np.ndarray) -> None:
        super()._fit(X)
        st = self.kept
        P = np.random.default_rng(self.seed).standard_normal((X.shape[1], st)) / math.sqrt(st)
        self.P = P.astype(np.float32)

    def _transform(self, X: np.ndarray, stream: int) -> np.ndarray:
        return X @ self.P
