"""A session's uploaded victim pools and the maps fitted from them (the app's "Your own embeddings" page): kept in
the session, never in the shared Attacker, so one user's embeddings are neither seen by nor mixed with another's."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from slime_core.infra.errors import SlimeError
from slime_core.stages import align


def fit_session_alignment(attacker, pool: np.ndarray, n_align: int, method: str, seed: int = 0):
    """A map from an uploaded pool (bundle pool order) to the attacker's space, fitted without adding the pool
    to the shared attacker: the caller keeps it (e.g. in its session) and drops it with the session."""
    if len(pool) != len(attacker.pool_attack):
        raise SlimeError(f"the pool embeddings have {len(pool)} rows; the public pool has "
                         f"{len(attacker.pool_attack)} images.")
    idx = align.choose_pairs(len(pool), n_align, seed)
    return align.fit_alignment(pool[idx], attacker.pool_attack[idx], method)


class UploadedPools:
    """One session's uploaded victim pools and the maps fitted from them, most recently used last; at most
    `max_pools` pools and `max_fits` maps per pool. Kept in the session (never in the shared Attacker), so one
    user's embeddings are neither seen by nor mixed with another's, and go away with the session."""

    def __init__(self, max_pools: int = 4, max_fits: int = 8):
        from collections import OrderedDict

        self.max_pools, self.max_fits = max_pools, max_fits
        self.pools: OrderedDict[str, dict] = OrderedDict()

    def add(self, key: str, pool: np.ndarray) -> None:
        if key not in self.pools:
            self.pools[key] = {"pool": pool, "fits": align.FitCache(self.max_fits)}
        self.pools.move_to_end(key)
        while len(self.pools) > self.max_pools:
            self.pools.popitem(last=False)

    def fit(self, attacker, key: str, n_align: int, method: str, seed: int = 0):
        """(the fitted map, the alignment prior: a constant embedding's held-out cosine) for a pool added before."""
        entry = self.pools[key]
        self.pools.move_to_end(key)
        return entry["fits"].get((n_align, method, seed), lambda: (
            fit_session_alignment(attacker, entry["pool"], n_align, method, seed),
            align.prior_cosine(attacker.pool_attack, n_align, method, seed)))


def attack_rows(attacker, fit, rows: np.ndarray, names: Sequence[str], k: int, victim: str = "upload") -> list:
    """AttackResults for victim embeddings through a given fitted map (no caption, no scene graph)."""
    from slime_core.attack_result import AttackResult

    batch = attacker.attack_batch(fit, rows, k, n_neighbours=5)
    return [AttackResult.from_batch(batch, i, image=name, victim=victim, attacker=attacker.bundle.attacker, fit=fit,
                                    n_align=fit.n_pairs, k=k) for i, name in enumerate(names)]
