"""The `gaussian` defence: the (epsilon, delta) Gaussian mechanism, differential privacy of every embedding."""

from __future__ import annotations

import math

from slime_core.infra.errors import SlimeError
from slime_core.stages.defences.base import AdditiveNoise, DefenceSpec
from slime_core.stages.defences.registry import register_defence
from slime_core.stages.dp import check_eps_delta, classic_gaussian_sigma, gaussian_sigma

CALIBRATIONS = ("analytic", "classic")


@register_defence
class Gaussian(AdditiveNoise):
    spec = DefenceSpec(
        "gaussian", "epsilon of the (epsilon, delta) Gaussian mechanism (L2 sensitivity 2)", "down",
        (math.inf, 10000, 3000, 1000, 300, 100, 10, 1),
        "(epsilon, delta)-differential privacy of every single embedding, against any attacker",
        "useful epsilon destroys utility: the noise norm is far above the embedding's norm 1", math.inf,
        short="strength = epsilon, delta 1e-5",
        description=(
            "the Gaussian mechanism, (eps, delta)-DP per embedding. strength = eps (delta a parameter, default "
            "1e-5). L2 sensitivity of a unit-norm embedding is 2 (||x - x'|| <= 2), so sigma = 2 * sqrt(2 "
            "ln(1.25/delta)) / eps (Dwork & Roth, Thm A.1, stated for eps < 1) with calibration=\"classic\"; the "
            "default calibration=\"analytic\" is the exact analytic Gaussian mechanism (Balle & Wang 2018), valid "
            "for every eps and never noisier. Protects every single embedding against any attacker, including "
            "this one; at useful eps (<= 10) the noise is orders of magnitude above the signal, so utility is "
            "destroyed long before eps is meaningful."),
    )
    options = ("delta", "calibration")

    def __init__(self, strength: float, seed: int = 0, delta: float = 1e-5, calibration: str = "analytic"):
        self.delta, self.calibration = delta, calibration  # before the strength check, which reads them
        super().__init__(strength, seed)

    def check_strength(self, st: float) -> None:
        check_eps_delta(st, self.delta)
        if self.calibration not in CALIBRATIONS:
            raise SlimeError(f"unknown calibration '{self.calibration}'; use analytic or classic.")
        if self.calibration == "classic" and st >= 1 and not math.isinf(st):
            classic_gaussian_sigma(st, self.delta)  # raises the explanatory error

    @property
    def noise_scale(self) -> float:
        return gaussian_sigma(self.strength, self.delta, self.calibration)

    def _describe_more(self) -> dict:
        return {**super()._describe_more(), "delta": self.delta, "calibration": self.calibration}
