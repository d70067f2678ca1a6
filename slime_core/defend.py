"""Defences: transforms an embedding owner applies to its image embeddings before they leave it.

Every defence is a `Defence` with one numeric `strength` (its meaning depends on the defence, below),
a secret `seed` (the owner's key, or the noise stream) and, for the data-dependent ones, a `fit` on the
owner's own embeddings. `apply_defence(name, X, strength, seed)` fits on X and transforms X in one call:
the owner defends everything it releases (public pool and private images alike) with the same key.

Inputs are float32 (n, d) embeddings, L2-normalised as every encoder here returns them. Outputs are
float32 (n, d_out) with d_out = d except for `pca` and `projection` (d_out = d'). Outputs are NOT
re-normalised (post-processing cannot weaken a DP guarantee, and cosine users normalise anyway).

The threat model the curves measure (see `experiments/defence_curves.py`): the attacker holds N leaked
(defended victim embedding, public image) pairs and refits its alignment on the DEFENDED pairs. What each
defence does against that attacker -- its strength in a few words (`short`), how it works (`description`),
what it protects and what not -- is data on its `DefenceSpec` in `SPECS` below, read by the app and the
report alike.

None of these stops the attack and keeps the embedding useful at once: the curves show where each sits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from slime_core.dp import check_eps_delta, classic_gaussian_sigma, gaussian_sigma, laplace_scale
from slime_core.errors import SlimeError


MAX_NOISE = 1e6  # the noise defence's sigma (embeddings are unit vectors)
MAX_KEPT_DIMS = 65_536  # d' of pca/projection (checked against the embeddings' own dims later)

@dataclass(frozen=True)
class DefenceSpec:
    name: str
    strength: str  # what the strength number means
    stronger: str  # "up" when a larger strength protects more, "down" when a smaller one does
    default_strengths: tuple
    protects: str
    does_not: str
    off: float | None = None  # the strength that means "no defence", where there is one
    short: str = ""  # the strength in a few words, for labels ("strength = sigma")
    description: str = ""  # how it works and what it does against the adaptive attacker, one paragraph


SPECS: dict[str, DefenceSpec] = {s.name: s for s in (
    DefenceSpec("noise", "sigma: std of Gaussian noise per coordinate", "up", (0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
                "hides fine detail of each embedding once sigma*sqrt(d) >> 1",
                "no formal guarantee; the attacker's regression averages noise out over many coordinates", 0.0,
                short="strength = sigma",
                description=(
                    "x + N(0, sigma^2 I). strength = sigma per coordinate. Blurs every embedding; the attacker's ridge "
                    "map averages noise over d coordinates, so it needs sigma*sqrt(d) well above 1 (the signal's norm) "
                    "before leakage falls -- and utility falls with it. No formal guarantee."),
    ),
    DefenceSpec("gaussian", "epsilon of the (epsilon, delta) Gaussian mechanism (L2 sensitivity 2)", "down",
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
    ),
    DefenceSpec("laplace", "epsilon of the Laplace mechanism (L1 sensitivity 2*sqrt(d))", "down",
                (math.inf, 100000, 30000, 10000, 3000, 1000, 100, 1),
                "pure epsilon-differential privacy of every single embedding, against any attacker",
                "pays sqrt(d) for L1 sensitivity: even noisier than the Gaussian mechanism at equal epsilon", math.inf,
                short="strength = epsilon",
                description=(
                    "the Laplace mechanism, pure eps-DP per embedding. strength = eps. L1 sensitivity of a unit-L2 vector"
                    " difference is at most 2*sqrt(d), so b = 2*sqrt(d)/eps per coordinate. Same story as `gaussian`, "
                    "noisier (pure DP pays sqrt(d) for L1)."),
    ),
    DefenceSpec("rotation", "0 = off, 1 = random orthogonal rotation with a secret key", "up", (0, 1),
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
    ),
    DefenceSpec("shuffle", "0 = off, 1 = secret permutation of the coordinates", "up", (0, 1),
                "only an attacker reusing a map fitted on undefended embeddings",
                "an attacker with leaked pairs: a permutation is a rotation and is learnt back the same way", 0.0,
                short="0 = off, 1 = on",
                description=(
                    "a secret permutation of the coordinates. strength: 0 = off, 1 = on. A permutation is a rotation: "
                    "same verdict as `rotation`."),
    ),
    DefenceSpec("pca", "d': principal directions kept", "down", (1280, 256, 128, 64, 32, 16, 8, 4, 2),
                "the information in the discarded directions",
                "whatever lies in the kept directions, which hold the semantics; the attacker aligns them", None,
                short="strength = d' kept",
                description=(
                    "projection on the top d' principal directions of the owner's embeddings (uncentred SVD, so dot "
                    "products are those of the best rank-d' approximation). strength = d' (1..d). Removes the information"
                    " in the discarded directions; the attacker aligns what is left. Semantic content is concentrated in "
                    "the top directions, so leakage falls slowly until d' is small; utility falls with it. Protects "
                    "against nothing at large d'."),
    ),
    DefenceSpec("projection", "d': output dimension of a secret Gaussian random projection", "down",
                (1280, 512, 256, 128, 64, 32, 16, 8, 4),
                "information lost at small d' only",
                "a linear map: alignment on leaked pairs absorbs it like a rotation", None,
                short="strength = d'",
                description=(
                    "x @ P / sqrt(d'), P a secret d x d' Gaussian matrix (Johnson-Lindenstrauss). strength = d'. "
                    "Preserves cosines approximately; a linear map, so the attacker's alignment absorbs P as it absorbs a"
                    " rotation. Loses information only once d' is small."),
    ),
    DefenceSpec("quantise", "bits per coordinate (8 = int8, 1 = binary)", "down", (16, 8, 4, 2, 1),
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
    ),
)}
DEFENCES = tuple(SPECS)


def spec(name: str) -> DefenceSpec:
    if name not in SPECS:
        raise SlimeError(f"unknown defence '{name}'; use one of {', '.join(DEFENCES)}.")
    return SPECS[name]


# --- the transforms ----------------------------------------------------------------------------------
def check_input(X, what: str = "embeddings") -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise SlimeError(f"{what}: not a numeric array ({err}).") from None
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise SlimeError(f"{what}: expected a 2-D array (n, d), got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise SlimeError(f"{what}: contains NaN or inf.")
    return X


def random_orthogonal(d: int, seed: int) -> np.ndarray:
    """Haar-random orthogonal d x d matrix (QR of a Gaussian matrix with the sign fix)."""
    g = np.random.default_rng(seed).standard_normal((d, d))
    q, r = np.linalg.qr(g)
    return (q * np.sign(np.diag(r))).astype(np.float32)


_BASES: dict = {}


def principal_basis(X: np.ndarray) -> np.ndarray:
    """All d principal directions of X (uncentred), strongest first, as the columns of a d x d orthogonal
    matrix (directions beyond X's rank complete the basis). Cached by content: a curve refits PCA on the
    same owner embeddings at every d'."""
    import hashlib

    key = (X.shape, hashlib.blake2b(np.ascontiguousarray(X).tobytes(), digest_size=16).hexdigest())
    if key not in _BASES:
        evals, vecs = np.linalg.eigh(X.T.astype(np.float64) @ X.astype(np.float64))
        _BASES.clear()  # keep one: memory stays d x d
        _BASES[key] = vecs[:, ::-1].astype(np.float32)
    return _BASES[key]


@dataclass
class Defence:
    """One defence at one strength with one key. `fit` on the owner's embeddings, then `transform`."""

    name: str
    strength: float
    seed: int = 0
    delta: float = 1e-5
    calibration: str = "analytic"
    state: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        s = spec(self.name)
        try:
            self.strength = float(self.strength)
        except (TypeError, ValueError):
            raise SlimeError(f"{self.name}: strength must be a number, got {self.strength!r}.") from None
        if math.isnan(self.strength):
            raise SlimeError(f"{self.name}: strength is NaN.")
        st = self.strength
        if self.name == "noise" and not (0 <= st <= MAX_NOISE):
            raise SlimeError(f"noise: sigma must be a number in 0..{MAX_NOISE:g} (got {st}); unit embeddings drown "
                             f"long before.")
        if self.name in ("gaussian", "laplace"):
            check_eps_delta(st, self.delta if self.name == "gaussian" else None)
            if self.name == "gaussian" and self.calibration not in ("analytic", "classic"):
                raise SlimeError(f"unknown calibration '{self.calibration}'; use analytic or classic.")
            if self.name == "gaussian" and self.calibration == "classic" and st >= 1 and not math.isinf(st):
                classic_gaussian_sigma(st, self.delta)  # raises the explanatory error
        if self.name in ("rotation", "shuffle") and st not in (0.0, 1.0):
            raise SlimeError(f"{self.name}: strength is 0 (off) or 1 (on), got {st:g}.")
        if self.name in ("pca", "projection") and (st < 1 or not st.is_integer() or st > MAX_KEPT_DIMS):
            raise SlimeError(f"{self.name}: d' must be a whole number in 1..{MAX_KEPT_DIMS} (got {st:g}).")
        if self.name == "quantise" and (not st.is_integer() or not 1 <= st <= 16):
            raise SlimeError(f"quantise: bits must be a whole number in 1..16 (8 = int8, 1 = binary), got {st:g}.")
        self.spec = s

    @property
    def is_off(self) -> bool:
        return self.spec.off is not None and self.strength == self.spec.off

    @property
    def noise_scale(self) -> float | None:
        """Per-coordinate noise std (noise, gaussian) or Laplace scale b (laplace); None otherwise."""
        if self.name == "noise":
            return self.strength
        if self.name == "gaussian":
            return gaussian_sigma(self.strength, self.delta, self.calibration)
        if self.name == "laplace":
            if "d" not in self.state:
                raise SlimeError("laplace: fit or transform first (the scale depends on the dimension).")
            return laplace_scale(self.strength, self.state["d"])
        return None

    def fit(self, X) -> "Defence":
        """Learn what the transform needs from the owner's embeddings (dimension, PCA basis, ranges)."""
        X = check_input(X, "owner embeddings")
        n, d = X.shape
        self.state = {"d": d}
        st = int(self.strength) if self.name in ("pca", "projection", "quantise") else None
        if self.name in ("pca", "projection") and st > d:
            raise SlimeError(f"{self.name}: d'={st} is larger than the embedding dimension d={d}.")
        if self.name == "pca":
            if n < 2:
                raise SlimeError("pca: needs at least 2 owner embeddings to fit on.")
            # beyond the data's rank (d' > n) the basis is completed with an orthonormal complement
            basis = principal_basis(X)[:, :st].copy()
            basis *= np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(st)])  # deterministic signs
            self.state["basis"] = basis.astype(np.float32)
        elif self.name == "projection":
            P = np.random.default_rng(self.seed).standard_normal((d, st)) / math.sqrt(st)
            self.state["P"] = P.astype(np.float32)
        elif self.name == "rotation" and self.strength == 1:
            self.state["R"] = random_orthogonal(d, self.seed)
        elif self.name == "shuffle" and self.strength == 1:
            self.state["perm"] = np.random.default_rng(self.seed).permutation(d)
        elif self.name == "quantise":
            if st == 1:
                self.state["threshold"] = np.median(X, axis=0).astype(np.float32)
            else:
                lo, hi = X.min(axis=0), X.max(axis=0)
                self.state["lo"], self.state["step"] = lo, np.maximum(hi - lo, 1e-12) / (2 ** st - 1)
        return self

    def _need_fit(self, X: np.ndarray) -> None:
        if "d" not in self.state:
            raise SlimeError(f"{self.name}: call fit on the owner's embeddings first (or use apply_defence).")
        if X.shape[1] != self.state["d"]:
            raise SlimeError(f"{self.name}: fitted on {self.state['d']}-dim embeddings, got {X.shape[1]} dims.")

    def transform(self, X, stream: int = 0) -> np.ndarray:
        """The released embeddings. `stream` separates independent noise draws made with one seed."""
        X = check_input(X)
        self._need_fit(X)
        name, st = self.name, self.strength
        if self.is_off:
            return X.copy()
        if name in ("noise", "gaussian", "laplace"):
            rng = np.random.default_rng([self.seed, stream])
            scale = self.noise_scale
            noise = rng.laplace(0.0, scale, X.shape) if name == "laplace" else rng.normal(0.0, scale, X.shape)
            return (X + noise).astype(np.float32)
        if name == "rotation":
            return X @ self.state["R"]
        if name == "shuffle":
            return X[:, self.state["perm"]].copy()
        if name == "pca":
            return X @ self.state["basis"]
        if name == "projection":
            return X @ self.state["P"]
        if name == "quantise":
            if int(st) == 1:
                return np.where(X > self.state["threshold"], 1.0, -1.0).astype(np.float32)
            return dequantise(quantise_codes(X, self.state["lo"], self.state["step"], int(st)),
                              self.state["lo"], self.state["step"])
        raise AssertionError(name)

    def transform_query(self, X) -> np.ndarray:
        """The owner's own query embeddings (e.g. text for zero-shot search) in the released space: only the
        keyed linear part (rotation, shuffle, pca, projection) applies. Noise and quantisation protect what is
        stored and released; a query is computed fresh by the owner and compared against that."""
        X = check_input(X, "query embeddings")
        self._need_fit(X)
        if self.is_off or self.name in ("noise", "gaussian", "laplace", "quantise"):
            return X.copy()
        return self.transform(X)

    def describe(self) -> dict:
        out = {"defence": self.name, "strength": self.strength, "strength_means": self.spec.strength,
               "protects": self.spec.protects, "does_not_protect": self.spec.does_not}
        if self.name in ("noise", "gaussian") or (self.name == "laplace" and "d" in self.state):
            out["noise_scale"] = self.noise_scale
        if self.name == "gaussian":
            out["delta"], out["calibration"] = self.delta, self.calibration
        return out


def quantise_codes(X: np.ndarray, lo: np.ndarray, step: np.ndarray, bits: int) -> np.ndarray:
    """Integer codes 0..2^bits-1 per coordinate (values outside the calibration range are clipped)."""
    codes = np.rint((X - lo) / step)
    return np.clip(codes, 0, 2 ** bits - 1).astype(np.int32)


def dequantise(codes: np.ndarray, lo: np.ndarray, step: np.ndarray) -> np.ndarray:
    return (lo + codes * step).astype(np.float32)


def make_defence(name: str, strength: float, seed: int = 0, **kwargs) -> Defence:
    return Defence(name, strength, seed, **kwargs)


def apply_defence(name: str, X, strength: float, seed: int = 0, **kwargs) -> np.ndarray:
    """Fit on X and transform X: what an owner releasing all of X at once would publish."""
    return make_defence(name, strength, seed, **kwargs).fit(X).transform(X)


def parse_strengths(text: str | list) -> list[float]:
    """'0,0.05,0.1' -> [0.0, 0.05, 0.1]; 'inf' allowed (no noise for the DP mechanisms)."""
    items = text if isinstance(text, (list, tuple)) else [t for t in str(text).split(",") if t.strip()]
    if not items:
        raise SlimeError("no strengths given (e.g. --strength 0,0.05,0.1).")
    out = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise SlimeError(f"strength {item!r} is not a number (use comma-separated numbers, e.g. 0,0.05,0.1).") from None
        if math.isnan(value):
            raise SlimeError("strength NaN is not allowed.")
        out.append(value)
    return out
