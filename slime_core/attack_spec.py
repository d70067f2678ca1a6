"""What one attack (or one grid of attacks) asks for, checked once where it is made.

Every surface -- the `slime` commands, the app's pages, the audit report -- builds an `AttackSpec`
before any slow work, so the same mistake gets the same one-line `SlimeError` everywhere:

    spec = AttackSpec(victim="lite0", n_align=(30, 300), k=(5, 10)).within(attacker)

`__post_init__` checks what needs no attacker (N >= 2, k >= 1, a known method, a seed >= 0);
`within(attacker)` checks what needs one (N at most the public pool, k at most the vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass

from slime_core.infra.errors import SlimeError
from slime_core.stages.align import alignment_method


def parse_ints(text, what: str = "value") -> list[int]:
    """'10,30,100' (or an int, or a list) -> [10, 30, 100]; a SlimeError naming `what` otherwise."""
    if isinstance(text, int):
        return [text]
    items = list(text) if isinstance(text, (list, tuple)) else [t for t in str(text).split(",") if t.strip()]
    if not items:
        raise SlimeError(f"{what}: no values given (expected comma-separated whole numbers).")
    out = []
    for item in items:
        try:
            out.append(int(str(item).strip()))
        except ValueError:
            raise SlimeError(f"{what}: expected comma-separated whole numbers, got {text!r}.") from None
    return out


def _as_tuple(value, what: str) -> tuple[int, ...]:
    return tuple(parse_ints(value, what))


@dataclass(frozen=True)
class AttackSpec:
    """victim encoder, N leaked pairs (one or several), k tags (one or several), alignment method, pair seed."""

    victim: str = "lite0"
    n_align: tuple[int, ...] | int = (300,)
    k: tuple[int, ...] | int = (10,)
    method: str = "ridge"
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "n_align", _as_tuple(self.n_align, "N (alignment pairs)"))
        object.__setattr__(self, "k", _as_tuple(self.k, "k (tags)"))
        if not self.victim or not str(self.victim).strip():
            raise SlimeError("no victim encoder named.")
        for n in self.n_align:
            if n < 2:
                raise SlimeError(f"N={n}: alignment needs at least 2 leaked pairs.")
        for k in self.k:
            if k < 1:
                raise SlimeError(f"k={k}: k must be at least 1.")
        alignment_method(self.method)  # an unknown name: the registry's one-line error
        if int(self.seed) != self.seed or self.seed < 0:
            raise SlimeError(f"seed must be a whole number >= 0, got {self.seed!r}.")

    # One N / one k, for the surfaces that attack at a single point (they call `single()` first, so each is then
    # the only value). Both are the largest of a grid: N and k are given in any order ("300,30"), so the last
    # value would be an arbitrary pick, and the largest is the point a grid's curves end at.
    @property
    def n(self) -> int:
        return max(self.n_align)

    @property
    def top_k(self) -> int:
        return max(self.k)

    def single(self) -> "AttackSpec":
        """Self, after checking it names one N and one k (a single attack, not a grid)."""
        if len(self.n_align) > 1 or len(self.k) > 1:
            raise SlimeError(f"one attack takes one N and one k (got N={','.join(map(str, self.n_align))}, "
                             f"k={','.join(map(str, self.k))}).")
        return self

    def within(self, attacker) -> "AttackSpec":
        """Self, after checking N against the attacker's public pool and k against its vocabulary."""
        return self.within_sizes(len(attacker.pool_attack), len(attacker.bundle.tags))

    def within_sizes(self, pool_size: int, vocabulary: int) -> "AttackSpec":
        for n in self.n_align:
            if n > pool_size:
                raise SlimeError(f"N={n} alignment pairs asked; the public pool holds {pool_size} images "
                                 f"(use 2..{pool_size}).")
        for k in self.k:
            if k > vocabulary:
                raise SlimeError(f"k={k} tags asked; the attacker's vocabulary holds {vocabulary} tags "
                                 f"(use 1..{vocabulary}).")
        return self
