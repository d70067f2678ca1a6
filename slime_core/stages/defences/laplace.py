"""The `laplace` defence: the Laplace mechanism, pure epsilon-differential privacy of every embedding."""

from __future__ import annotations

import math

import numpy as np

from slime_core.infra.errors import SlimeError
from slime_core.stages.defences.base import AdditiveNoise, DefenceSpec
from slime_core.stages.defences.registry import register_defence
from slime_core.stages.dp import check_eps_delta, laplace_scale


@register_defence
class Laplace(AdditiveNoise):
    spec = DefenceSpec(
        "laplace", "epsilon of the Laplace mechanism (L1 sensitivity 2*sqrt(d))", "down",
        (math.inf, 100000, 30000, 10000, 3000, 1000, 100, 1),
        "pure epsilon-differential privacy of every single embedding, against any attacker",
        "pays sqrt(d) for L1 sensitivity: even noisier than the Gaussian mechanism at equal epsilon", math.inf,
        short="strength = epsilon",
        description=(
            "the Laplace mechanism, pure eps-DP per embedding. strength = eps. L1 sensitivity of a unit-L2 vector"
            " difference is at most 2*sqrt(d), so b = 2*sqrt(d)/eps per coordinate. Same story as `gaussian`, "
            "noisier (pure DP pays sqrt(d) for L1)."),
    )

    def check_strength(self, st: float) -> None:
        check_eps_delta(st, None)

    @property
    def noise_scale(self) -> float:
        """The Laplace scale b per coordinate: it depends on the dimension, known once fitted."""
        if self.d is None:
            raise SlimeError("laplace: fit or transform first (the scale depends on the dimension).")
        return laplace_scale(self.strength, self.d)

    def _draw(self, rng: np.random.Generator, scale: float, shape: tuple) -> np.ndarray:
        return rng.laplace(0.0, scale, shape)

    def _describe_more(self) -> dict:
        return super()._describe_more() if self.d is not None else {}
