"""The app's exploratory measurements: held-out cosine per (victim, method, N), a 2-D view of the
alignment, which tags leak, and merging evaluation runs over N."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from slime_core.infra.errors import SlimeError
from slime_core.stages import align
from slime_core.stages.metrics import Estimate, paired_difference, tag_scores


def n_grid(pool_size: int, points: int = 6, low: int = 10) -> list[int]:
    """Roughly log-spaced N values from `low` to the whole pool."""
    grid = np.unique(np.round(np.geomspace(max(low, 2), pool_size, points)).astype(int))
    return [int(n) for n in grid]


def alignment_curve(attacker, victims: Sequence[str], methods: Sequence[str], ns: Sequence[int], seed: int = 0,
                    progress: Callable[[float, str], None] | None = None) -> list[dict]:
    """Held-out cosine of each fitted map: one row per (victim, method, N), beside its prior (`prior_cosine`:
    what a constant, no-information victim embedding scores under the same held-out scheme). Procrustes on
    unequal dims is skipped with a note."""
    # The prior depends on the attacker's pool, the method and N only: computed once, not once per victim.
    priors = {(m, int(n)): align.prior_cosine(attacker.pool_attack, int(n), m, seed) for m in methods for n in ns}
    rows, jobs = [], [(v, m, n) for v in victims for m in methods for n in ns]
    for i, (v, m, n) in enumerate(jobs):
        if progress:
            progress(i / max(len(jobs), 1), f"{v} / {m} / N={n}")
        try:
            fit = attacker.alignment(v, int(n), m, seed)
            cosine, note = float(fit.heldout_cosine), ""
        except SlimeError as err:
            cosine, note = None, str(err)
        rows.append({"victim": v, "method": m, "N": int(n), "heldout_cosine": cosine, "note": note,
                     "prior_cosine": priors[(m, int(n))]})
    if progress:
        progress(1.0, "done")
    return rows


def projection(attacker, victim: str, n_align: int, method: str, seed: int = 0, n_points: int = 150) -> dict:
    """2-D PCA of attack-space embeddings of pool images left out of the fit, and their aligned victim
    embeddings, in one shared basis."""
    X = attacker.victim_pool(victim)
    fit = attacker.alignment(victim, n_align, method, seed)
    train = set(align.choose_pairs(len(X), n_align, seed).tolist())
    held = [i for i in range(len(X)) if i not in train] or list(range(len(X)))
    held = np.asarray(held[:n_points])
    true, aligned = attacker.pool_attack[held], fit.transform(X[held])
    both = np.vstack([true, aligned])
    centre = both.mean(axis=0)
    _, _, vt = np.linalg.svd(both - centre, full_matrices=False)
    pt, pa = (true - centre) @ vt[:2].T, (aligned - centre) @ vt[:2].T
    cos = align.cosines(true, aligned)
    names = [attacker.bundle.pool["images"][i] for i in held]
    return {"true": pt, "aligned": pa, "names": names, "cosine": cos, "held_out": len(held)}


def merge_results(parts: list[dict]) -> dict:
    """One evaluation result from several runs over different N on the same images."""
    if not parts:
        raise SlimeError("no evaluation results to merge.")
    out = dict(parts[0], rows=[], captions=[])
    for p in parts:
        out["rows"] += p["rows"]
        out["captions"] += p.get("captions", [])
    out["rows"].sort(key=lambda r: (r["n_align"], r["k"]))
    return out


def per_tag_leakage(attacker, samples, refs: list[list[str]], victim: str, n_align: int, k: int, method: str = "ridge",
                    seed: int = 0, min_count: int = 2):
    """Which tags leak: per retrieved tag, how often it was retrieved and how often it was right (precision),
    and per reference tag how often it was recalled; sorted by hits."""
    import pandas as pd

    X = attacker.embed(victim, [str(s.path) for s in samples])
    aligned = attacker.alignment(victim, n_align, method, seed).transform(X)
    pred = [[t for t, _ in row] for row in attacker.retrieve(aligned, k)]
    stats: dict[str, dict] = {}
    for p, r in zip(pred, refs):
        rs = set(r)
        for t in p:
            s = stats.setdefault(t, {"retrieved": 0, "hits": 0, "in_references": 0})
            s["retrieved"] += 1
            s["hits"] += t in rs
        for t in rs:
            stats.setdefault(t, {"retrieved": 0, "hits": 0, "in_references": 0})["in_references"] += 1
    rows = [{"tag": t, **s, "precision": s["hits"] / s["retrieved"] if s["retrieved"] else 0.0,
             "recall": s["hits"] / s["in_references"] if s["in_references"] else 0.0}
            for t, s in stats.items() if s["retrieved"] >= min_count or s["hits"]]
    df = pd.DataFrame(rows, columns=["tag", "retrieved", "hits", "in_references", "precision", "recall"])
    return df.sort_values(["hits", "precision"], ascending=False).reset_index(drop=True)


OWN_LEAKAGE_HELP = ("Your model's embeddings of the public dev photos that were not among the N leaked pairs, attacked "
                    "like the audited ones and scored against those photos' caption tags; the prior is the k most "
                    "frequent training tags, which needs no embedding. Interval: paired bootstrap 95% over photos.")


def own_model_leakage(attacker, fit, pool: np.ndarray, n_align: int, k: int, scorer, seed: int = 0,
                      n_boot: int = 1000, min_images: int = 10) -> dict | None:
    """Tag leakage of an uploaded model where it can be measured honestly: the public dev photos (never used to
    train the attacker's heads) that are not among the N leaked pairs, scored against their caption tags (kept in
    the bundle), beside the k most frequent training tags. `pool` is the upload in bundle pool order and `fit`
    the map fitted on its first N pairs (`align.choose_pairs`, same seed). None when too few such photos remain."""
    p = attacker.bundle.pool
    leaked = set(align.choose_pairs(len(pool), n_align, seed).tolist())
    held = [i for i, split in enumerate(p["splits"]) if split == "dev" and i not in leaked and p["tags"][i]]
    if len(held) < min_images:
        return None
    refs = [p["tags"][i] for i in held]
    batch = attacker.attack_batch(fit, pool[held], k, A_true=attacker.pool_attack[held], own_rows=np.array(held))
    attack = tag_scores(batch.tags, refs, scorer)
    prior = tag_scores([attacker.frequent_tags(k)] * len(held), refs, scorer)
    out = {"images": len(held), "k": k}
    for metric in ("exact_f1", "neighbourhood_f1"):
        out[metric] = {**Estimate.bootstrap(attack[metric], n_boot, seed).to_dict(), "prior": float(prior[metric].mean()),
                       "vs_prior": paired_difference(attack[metric], prior[metric], n_boot, seed)}
    return out
