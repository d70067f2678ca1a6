"""The `shuffle` defence: a secret permutation of the coordinates (a rotation, learnt back the same way)."""

from __future__ import annotations

import numpy as np

from slime_core.stages.defences.base import DefenceSpec, KeyedSwitch
from slime_core.stages.defences.registry import register_defence


@register_defence
class Shuffle(KeyedSwitch):
    spec = DefenceSpec(
        "shuffle", "0 = off, 1 = secret permutation of the coordinates", "up", (0, 1),
        "only an attacker reusing a map fitted on undefended embeddings",
        "an attacker with leaked pairs: a permutation is a rotation and is learnt back the same way", 0.0,
        short="0 = off, 1 = on",
        description=(
            "a secret permutation of the coordinates. strength: 0 = off, 1 = on. A permutation is a rotation: "
            "same verdict as `rotation`."),
        refit_absorbs=True,
    )
    perm: np.ndarray | None = None  # the secret order of the d coordinates, once fitted (on)

    def _fit(self, X: np.ndarray) -> None:
        if self.strength == 1:
            self.perm = np.random.default_rng(self.seed).permutation(X.shape[1])

    def _transform(self, X: np.ndarray, stream: int) -> np.ndarray:
        return X[:, self.perm].copy()
