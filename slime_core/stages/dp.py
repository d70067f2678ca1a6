"""Differential-privacy calibration of the noise defences (`gaussian`, `laplace` in slime_core/stages/defences/).

Embeddings are unit-L2 vectors, so one embedding's L2 sensitivity is 2 and its L1 sensitivity 2 sqrt(d).
gaussian: classic (Dwork & Roth 2014, Thm A.1, eps < 1) or the exact analytic Gaussian mechanism (Balle &
Wang 2018); laplace: pure eps-DP with scale L1-sensitivity / eps. eps = inf means no noise.
"""

from __future__ import annotations

import math

from slime_core.infra.errors import SlimeError

L2_SENSITIVITY = 2.0  # ||x - x'||_2 <= 2 for unit vectors


def l1_sensitivity(d: int) -> float:
    """||x - x'||_1 <= sqrt(d) ||x - x'||_2 <= 2 sqrt(d) for unit-L2 vectors in d dimensions."""
    return 2.0 * math.sqrt(d)


MIN_EPSILON = 1e-6  # smaller epsilons give sigmas beyond float32 (and no embedding survives far larger ones)


def check_eps_delta(eps: float, delta: float | None = None) -> None:
    if not eps > 0:
        raise SlimeError(f"epsilon must be > 0 (got {eps}); use 'inf' for no noise.")
    if eps < MIN_EPSILON:
        raise SlimeError(f"epsilon {eps:g} is below {MIN_EPSILON:g}: the noise would overflow; use a larger epsilon.")
    if delta is not None and not 0 < delta < 1:
        raise SlimeError(f"delta must be in (0, 1) (got {delta}).")


def classic_gaussian_sigma(eps: float, delta: float, sensitivity: float = L2_SENSITIVITY) -> float:
    """sigma = sensitivity * sqrt(2 ln(1.25/delta)) / eps (Dwork & Roth 2014, Thm A.1; valid for eps < 1)."""
    check_eps_delta(eps, delta)
    if eps >= 1:
        raise SlimeError(f"the classic Gaussian calibration holds only for epsilon < 1 (got {eps}); "
                         f"use calibration='analytic'.")
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / eps


def analytic_delta(sigma: float, eps: float, sensitivity: float = L2_SENSITIVITY) -> float:
    """The exact delta of the Gaussian mechanism with noise sigma at epsilon (Balle & Wang 2018, Thm 8)."""
    from scipy.special import log_ndtr

    a = sensitivity / (2 * sigma)
    b = eps * sigma / sensitivity
    # Phi(a - b) - e^eps Phi(-a - b), the second term in log space (e^eps overflows for large eps)
    first = math.exp(float(log_ndtr(a - b)))
    second = math.exp(min(eps + float(log_ndtr(-a - b)), 700.0))
    return max(first - second, 0.0)


def analytic_gaussian_sigma(eps: float, delta: float, sensitivity: float = L2_SENSITIVITY) -> float:
    """Smallest sigma whose Gaussian mechanism is (eps, delta)-DP, by bisection on `analytic_delta`."""
    check_eps_delta(eps, delta)
    lo, hi = 1e-12, sensitivity
    while analytic_delta(hi, eps, sensitivity) > delta:
        hi *= 2
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if analytic_delta(mid, eps, sensitivity) > delta:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-10:
            break
    return hi


def gaussian_sigma(eps: float, delta: float = 1e-5, calibration: str = "analytic") -> float:
    if math.isinf(eps) and eps > 0:
        return 0.0
    if calibration == "analytic":
        return analytic_gaussian_sigma(eps, delta)
    if calibration == "classic":
        return classic_gaussian_sigma(eps, delta)
    raise SlimeError(f"unknown calibration '{calibration}'; use analytic or classic.")


def laplace_scale(eps: float, d: int) -> float:
    if math.isinf(eps) and eps > 0:
        return 0.0
    check_eps_delta(eps)
    return l1_sensitivity(d) / eps
