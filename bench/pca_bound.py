"""Could an exact bound make the neighbour votes' pool product cheaper? (README, `slime audit` speed.)

    python bench/pca_bound.py

For audited rows like bench_audit.py's (lite0, N = 300), each pool photo's cosine is bounded from its PCA
projection: approx +- |query residual| * |photo residual|. A photo can be skipped exactly only when its upper bound
is below the 80th-best lower bound (the votes' 80 neighbours). Printed per PCA rank: how many of the 6,909 pool
photos stay candidates (median, 90th percentile over 512 rows) -- what an exact two-stage search would still score.
"""

from __future__ import annotations

import numpy as np

from slime_core.pipeline import Attacker

NEIGHBOURS = 80


def main() -> None:
    attacker = Attacker()
    fit = attacker.alignment("lite0", 300)
    P = attacker.pool_attack.astype(np.float32)
    pool = attacker.bundle.pool_embeddings["lite0"].astype(np.float32)
    rng = np.random.default_rng(0)
    A = fit.transform(0.7 * pool[rng.integers(len(pool), size=512)] + 0.3 * pool[rng.integers(len(pool), size=512)])
    _, _, Vt = np.linalg.svd(P - P.mean(axis=0), full_matrices=False)
    for r in (64, 128, 256, 384):
        B = Vt[:r]
        Pr, Ar = P @ B.T, A @ B.T
        p_res, a_res = np.linalg.norm(P - Pr @ B, axis=1), np.linalg.norm(A - Ar @ B, axis=1)
        slack = a_res[:, None] * p_res[None, :]
        approx = Ar @ Pr.T
        tau = np.sort(approx - slack, axis=1)[:, -NEIGHBOURS]
        cand = (approx + slack >= tau[:, None]).sum(axis=1)
        print(f"rank {r:4d}: candidates median {np.median(cand):,.0f}, p90 {np.percentile(cand, 90):,.0f} of {len(P):,}"
              f" (mean residual norms: rows {a_res.mean():.2f}, pool {p_res.mean():.2f})")


if __name__ == "__main__":
    main()
