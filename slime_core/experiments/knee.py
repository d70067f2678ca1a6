"""Where a defence curve bends, and where it stops the measurable leak.

With utility kept u = recall@1 / recall@1(no defence) and leakage kept
l = (neighbourhood_f1 - frequent) / (neighbourhood_f1(no defence) - frequent), clipped to [0, 1], the
knee is the Kneedle point of the (u, l) curve: the strength farthest from the chord between its lowest-
and highest-utility points. `stop_index` is the weakest strength at which neighbourhood F1 is no longer
significantly above the prior. Rows are the `slime defend` JSON objects (`defence_curves.measure`).
"""

from __future__ import annotations

import numpy as np

from slime_core.stages.defences import defence_spec


def tradeoff(row: dict, undefended: dict) -> dict:
    """Utility kept and leakage-beyond-prior kept, both relative to no defence."""
    u0 = undefended["utility"]["recall_at_1"] or 1.0
    base = row["baselines"]["frequent"]["neighbourhood_f1"]
    l0 = undefended["leakage"]["neighbourhood_f1"] - base
    u = row["utility"]["recall_at_1"] / u0
    lk = (row["leakage"]["neighbourhood_f1"] - base) / l0 if l0 > 1e-9 else 0.0
    lk = float(np.clip(lk, 0.0, 1.0))
    return {"utility_kept": u, "leakage_kept": lk, "score": u - lk}


def knee_index(rows: list[dict], undefended: dict | None = None) -> int:
    """Kneedle on the (utility kept, leakage kept) points: the point farthest from the straight line
    between the lowest- and highest-utility points, i.e. where the trade-off bends. Degenerate curves
    (all points equal in utility or leakage) fall back to the point with the best utility - leakage."""
    undefended = undefended or rows[0]
    pts = np.array([[t["utility_kept"], t["leakage_kept"]] for t in (tradeoff(r, undefended) for r in rows)])
    u, lk = pts[:, 0], pts[:, 1]
    a, b = int(np.argmin(u)), int(np.argmax(u))
    span = pts[b] - pts[a]
    if len(rows) < 3 or np.ptp(u) < 1e-9 or np.ptp(lk) < 1e-9 or np.hypot(*span) < 1e-9:
        score = u - lk
        return int(max(range(len(rows)), key=lambda i: (round(score[i], 12), u[i], -i)))
    dist = np.abs(span[0] * (pts[:, 1] - pts[a, 1]) - span[1] * (pts[:, 0] - pts[a, 0])) / np.hypot(*span)
    return int(np.argmax(np.round(dist, 12)))


def stop_index(rows: list[dict]) -> int | None:
    """The first row (in the given order of strengths) whose neighbourhood F1 is no longer significantly
    above the prior baseline (the 95% interval of the paired difference reaches 0): the defence has
    stopped the measurable tag leak there. Strengths are taken weakest first whatever order they came in.
    None when no strength does."""
    if not rows:
        return None
    up = defence_spec(rows[0]["defence"]).stronger == "up"
    order = sorted(range(len(rows)), key=lambda i: rows[i]["strength"] if up else -rows[i]["strength"])
    for i in order:
        if rows[i]["leakage"]["neighbourhood_f1_vs_frequent"]["ci_low"] <= 0:
            return i
    return None


def mark_knee(rows: list[dict], undefended: dict) -> int:
    i, stop = knee_index(rows, undefended), stop_index(rows)
    for j, r in enumerate(rows):
        r["tradeoff"] = tradeoff(r, undefended)
        r["knee"] = j == i
        r["stops_leak"] = j == stop
    return i
