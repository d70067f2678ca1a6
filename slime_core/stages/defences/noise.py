"""The `noise` defence: Gaussian noise of a given sigma on every coordinate, no formal guarantee."""

from __future__ import annotations

from slime_core.infra.errors import SlimeError
from slime_core.stages.defences.base import AdditiveNoise, DefenceSpec
from slime_core.stages.defences.registry import register_defence

MAX_NOISE = 1e6  # the noise defence's sigma (embeddings are unit vectors)


@register_defence
class Noise(AdditiveNoise):
    spec = DefenceSpec(
        "noise", "sigma: std of Gaussian noise per coordinate", "up", (0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
        "hides fine detail of each embedding once sigma*sqrt(d) >> 1",
        "no formal guarantee; the attacker's regression averages noise out over many coordinates", 0.0,
        short="strength = sigma",
        description=(
            "x + N(0, sigma^2 I). strength = sigma per coordinate. Blurs every embedding; the attacker's ridge "
            "map averages noise over d coordinates, so it needs sigma*sqrt(d) well above 1 (the signal's norm) "
            "before leakage falls -- and utility falls with it. No formal guarantee."),
    )

    def check_strength(self, st: float) -> None:
        if not (0 <= st <= MAX_NOISE):
            raise SlimeError(f"noise: sigma must be a number in 0..{MAX_NOISE:g} (got {st}); unit embeddings drown "
                             f"long before.")

    @property
    def noise_scale(self) -> float:
        return self.strength
