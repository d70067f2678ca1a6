"""The `quantise` defence: per-coordinate uniform quantisation to b bits (8 = int8, 1 = binary codes)."""

from __future__ import annotations

import numpy as np

from slime_core.infra.errors import SlimeError
from slime_core.stages.defences.base import Defence, DefenceSpec
from slime_core.stages.defences.registry import register_defence


def quantise_codes(X: np.ndarray, lo: np.ndarray, step: np.ndarray, bits: int) -> np.ndarray:
    """Integer codes 0..2^bits-1 per coordinate (values outside the calibration range are clipped)."""
    codes = np.rint((X - lo) / step)
    return np.clip(codes, 0, 2 ** bits - 1).astype(np.int32)


def dequantise(codes: np.ndarray, lo: np.ndarray, step: np.ndarray) -> np.ndarray:
    return (lo + codes * step).astype(np.float32)


@register_defence
class Quantise(Defence):
    spec = DefenceSpec(
        "quantise", "bits per coordinate (8 = int8, 1 = binary)", "down", (16, 8, 4, 2, 1),
        "sub-bin detail of each coordinate",
        "the coarse values carry the semantics; binary codes still align", None,
        short="strength = bits; 8 int8, 1 binary",
        description=(
            "per-coordinate uniform quantisation to b bits, ranges from the owner's embeddings (the calibration "
            "`fit`), released as the de-quantised values. strength = b bits (1..16): b = 8 is int8 quantisation, "
            "b = 1 is binary quantisation (one bit per coordinate, thresholded at the coordinate's median on the "
            "owner's data: these encoders' outputs are non-negative, so thresholding at 0 would release a "
            "constant). Coarsens every coordinate; int8 changes almost nothing for either side; binary keeps most"
            " of both."),
    )
    threshold: np.ndarray | None = None  # binary (1 bit): each coordinate's median on the owner's data
    lo: np.ndarray | None = None  # b > 1 bits: each coordinate's lowest value, the first bin
    step: np.ndarray | None = None  # b > 1 bits: each coordinate's bin width

    def check_strength(self, st: float) -> None:
        if not st.is_integer() or not 1 <= st <= 16:
            raise SlimeError(f"quantise: bits must be a whole number in 1..16 (8 = int8, 1 = binary), got {st:g}.")

    @property
    def bits(self) -> int:
        return int(self.strength)

    def _fit(self, X: np.ndarray) -> None:
        if self.bits == 1:
            self.threshold = np.median(X, axis=0).astype(np.float32)
        else:
            lo, hi = X.min(axis=0), X.max(axis=0)
            self.lo, self.step = lo, np.maximum(hi - lo, 1e-12) / (2 ** self.bits - 1)

    def _transform(self, X: np.ndarray, stream: int) -> np.ndarray:
        if self.bits == 1:
            return np.where(X > self.threshold, 1.0, -1.0).astype(np.float32)
        return dequantise(quantise_codes(X, self.lo, self.step, self.bits), self.lo, self.step)
