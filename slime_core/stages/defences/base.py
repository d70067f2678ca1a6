"""What every defence shares: its `DefenceSpec` (the words and policies the app, the CLI and the report read) and
the `Defence` base class (strength, secret seed, fit / transform / transform_query / describe), plus the three
families the built-in defences come in (additive noise, keyed on/off maps, kept dimensions).

A defence's own file subclasses one of these, states its `spec` beside it and registers it with
`slime_core.stages.defences.register_defence`; nothing outside that file names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from slime_core.infra.errors import SlimeError

MAX_KEPT_DIMS = 65_536  # d' of pca/projection (checked against the embeddings' own dims at fit)


@dataclass(frozen=True)
class DefenceSpec:
    """A defence described as data: read by the app, the CLI's help, the tables and the report alike."""

    name: str
    strength: str  # what the strength number means
    stronger: str  # "up" when a larger strength protects more, "down" when a smaller one does
    default_strengths: tuple
    protects: str
    does_not: str
    off: float | None = None  # the strength that means "no defence", where there is one
    short: str = ""  # the strength in a few words, for labels ("strength = sigma")
    description: str = ""  # how it works and what it does against the adaptive attacker, one paragraph
    # the strength is d', the released dimension: a curve keeps the defaults up to the embeddings' own d, d first
    released_dim: bool = False
    # a keyed linear map that an attacker refitting on defended pairs absorbs (the app warns about it)
    refit_absorbs: bool = False

    def strengths_for(self, dim: int) -> list:
        """The default strengths that apply to `dim`-dimensional embeddings; where the strength is the released
        dimension d', those up to d, with d itself (nothing dropped) first."""
        if not self.released_dim:
            return list(self.default_strengths)
        strengths = [s for s in self.default_strengths if s <= dim]
        return strengths if dim in strengths else [dim] + strengths


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


class Defence:
    """One defence at one strength with one key. `fit` on the owner's embeddings, then `transform`.

    A subclass sets `spec`, checks its strength in `check_strength`, learns its own typed state in `_fit` and
    releases in `_transform`; `options` names the keyword arguments it takes beyond strength and seed."""

    spec: ClassVar[DefenceSpec]
    options: ClassVar[tuple[str, ...]] = ()
    # the owner's own queries (e.g. text for zero-shot search) get the transform too: only a keyed map that
    # keeps the released space comparable; noise and quantisation protect what is stored, not a fresh query
    transforms_queries: ClassVar[bool] = False

    def __init__(self, strength: float, seed: int = 0):
        try:
            strength = float(strength)
        except (TypeError, ValueError):
            raise SlimeError(f"{self.name}: strength must be a number, got {strength!r}.") from None
        if math.isnan(strength):
            raise SlimeError(f"{self.name}: strength is NaN.")
        self.strength = strength
        self.seed = seed
        self.d: int | None = None  # the owner's embedding dimension, known once fitted
        self.check_strength(strength)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strength={self.strength!r}, seed={self.seed!r})"

    @property
    def name(self) -> str:
        return self.spec.name

    def check_strength(self, st: float) -> None:
        """Raise a SlimeError for a strength this defence cannot take (before any work)."""

    @property
    def is_off(self) -> bool:
        return self.spec.off is not None and self.strength == self.spec.off

    @property
    def noise_scale(self) -> float | None:
        """Per-coordinate noise std or Laplace scale for the noise defences; None otherwise."""
        return None

    def fit(self, X) -> "Defence":
        """Learn what the transform needs from the owner's embeddings (dimension, PCA basis, ranges)."""
        X = check_input(X, "owner embeddings")
        self.d = X.shape[1]
        self._fit(X)
        return self

    def _fit(self, X: np.ndarray) -> None:
        """The defence's own state from the owner's (checked) embeddings; nothing by default."""

    def _need_fit(self, X: np.ndarray) -> None:
        if self.d is None:
            raise SlimeError(f"{self.name}: call fit on the owner's embeddings first (or use apply_defence).")
        if X.shape[1] != self.d:
            raise SlimeError(f"{self.name}: fitted on {self.d}-dim embeddings, got {X.shape[1]} dims.")

    def transform(self, X, stream: int = 0) -> np.ndarray:
        """The released embeddings. `stream` separates independent noise draws made with one seed."""
        X = check_input(X)
        self._need_fit(X)
        if self.is_off:
            return X.copy()
        return self._transform(X, stream)

    def _transform(self, X: np.ndarray, stream: int) -> np.ndarray:
        raise NotImplementedError

    def transform_query(self, X) -> np.ndarray:
        """The owner's own query embeddings in the released space: only a keyed linear map applies
        (`transforms_queries`); a query is computed fresh by the owner and compared against what is stored."""
        X = check_input(X, "query embeddings")
        self._need_fit(X)
        if self.is_off or not self.transforms_queries:
            return X.copy()
        return self.transform(X)

    def describe(self) -> dict:
        out = {"defence": self.name, "strength": self.strength, "strength_means": self.spec.strength,
               "protects": self.spec.protects, "does_not_protect": self.spec.does_not}
        return {**out, **self._describe_more()}

    def _describe_more(self) -> dict:
        """What `describe` adds for this defence (its noise scale, its parameters)."""
        return {}


class AdditiveNoise(Defence):
    """Independent noise added to every coordinate of every released embedding, drawn from (seed, stream)."""

    def _transform(self, X: np.ndarray, stream: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream])
        return (X + self._draw(rng, self.noise_scale, X.shape)).astype(np.float32)

    def _draw(self, rng: np.random.Generator, scale: float, shape: tuple) -> np.ndarray:
        return rng.normal(0.0, scale, shape)

    def _describe_more(self) -> dict:
        return {"noise_scale": self.noise_scale}


class KeyedSwitch(Defence):
    """A secret keyed map that is either off (0) or on (1)."""

    transforms_queries = True

    def check_strength(self, st: float) -> None:
        if st not in (0.0, 1.0):
            raise SlimeError(f"{self.name}: strength is 0 (off) or 1 (on), got {st:g}.")


class KeptDimensions(Defence):
    """A linear map onto d' dimensions (the strength), d' at most the embeddings' own d."""

    transforms_queries = True

    def check_strength(self, st: float) -> None:
        if st < 1 or not st.is_integer() or st > MAX_KEPT_DIMS:
            raise SlimeError(f"{self.name}: d' must be a whole number in 1..{MAX_KEPT_DIMS} (got {st:g}).")

    @property
    def kept(self) -> int:
        return int(self.strength)

    def _fit(self, X: np.ndarray) -> None:
        if self.kept > X.shape[1]:
            raise SlimeError(f"{self.name}: d'={self.kept} is larger than the embedding dimension d={X.shape[1]}.")
