"""How well the attack tells which photos show a sensitive attribute (children, people, a beach, ...): ROC AUC per
attribute on a held-out split, beside chance (0.5) and the oracle.

Each test photo gets one score per attribute from its aligned embedding (`stages.attributes.attribute_scores`: the
best retrieval score among the attribute's vocabulary tags) and a ground truth from its own captions (one of the
attribute's words in any of them: `attribute_truth`). The AUC is the chance that a photo showing the attribute
scores above one that does not (ties count half): 0.5 is chance, 1.0 a perfect ranking. Systems: the victim's
embeddings through the ridge map fitted on N public pairs, for each N; and the oracle, the attacker's own image
embedding of the photo (no alignment: what the attack would reach with a perfect map).

Intervals follow `stages.metrics`: a 95% percentile bootstrap over images (1,000 resamples of the images, seeded,
`numpy.random.default_rng(seed).integers`); the AUC is recomputed on each resample and the estimate's `mean` is the
AUC on all images. Every system is scored on the same resamples, so `vs_oracle` (the attack's AUC minus the
oracle's) is a paired difference. An attribute present in none or in all of the photos has no AUC (None, with the
reason); a resample left with one class only is dropped from its interval (counted in `dropped_resamples`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from slime_core.infra.errors import SlimeError
from slime_core.pipeline import Attacker, check_held_out
from slime_core.stages.attributes import Attributes, attribute_scores, attribute_truth, load_attributes
from slime_core.stages.data import Sample
from slime_core.stages.metrics import Difference, Estimate

CHANCE = 0.5
LEVEL = 0.95
SCORE_TEXT = ("per attribute, the highest retrieval score (logit_scale * cosine + alpha * log-count prior) "
              "among the vocabulary tags that contain one of its words")
TRUTH_TEXT = "one of the attribute's words (whole words) in any of the photo's captions"


def rank_auc(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """ROC AUC along the last axis (Mann-Whitney U with mid-ranks for ties): scores and truth of shape (..., n).
    NaN where a row has no positive or no negative."""
    scores, truth = np.asarray(scores, np.float64), np.asarray(truth, bool)
    ranks = rankdata(scores, axis=-1)  # average ranks: a tie between a positive and a negative counts half
    n_pos = truth.sum(axis=-1)
    n_neg = truth.shape[-1] - n_pos
    u = np.where(truth, ranks, 0.0).sum(axis=-1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) image indices: the same draws as `metrics.bootstrap_ci`, shared by every system (paired)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(values: np.ndarray) -> tuple[float, float]:
    if np.isnan(values).all():  # every resample had one class only (a handful of photos): no interval
        return float("nan"), float("nan")
    lo, hi = np.nanpercentile(values, [(1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100])
    return float(lo), float(hi)


def auc_estimate(scores: np.ndarray, truth: np.ndarray, idx: np.ndarray) -> tuple[Estimate, np.ndarray]:
    """The AUC on all images with its bootstrap interval over the resamples `idx`, and the resampled AUCs (for
    paired differences; NaN where a resample has one class only)."""
    boot = rank_auc(scores[idx], truth[idx])
    return Estimate(float(rank_auc(scores, truth)), *_interval(boot)), boot


def _difference(point: float, boot: np.ndarray, ref_point: float, ref_boot: np.ndarray) -> Difference:
    return Difference(point - ref_point, *_interval(boot - ref_boot))


def attribute_rows(attributes: Attributes, vocab, truth: np.ndarray, scores: dict[str, np.ndarray], n_boot: int,
                   seed: int) -> list[dict]:
    """One JSON-ready row per attribute: its prevalence and, per system (label -> (n, n_attributes) scores), its AUC
    with interval, whether the interval clears chance, and (attacks) the paired difference to the oracle."""
    idx = resamples(len(truth), n_boot, seed)
    tag_ids = attributes.tag_ids(vocab)
    rows = []
    for j, a in enumerate(attributes.items):
        t = truth[:, j]
        row = {"attribute": a.name, "about": a.about, "n_tags": int(len(tag_ids[a.name])),
               "n_positive": int(t.sum()), "prevalence": float(t.mean()), "auc": {}, "reason": None}
        if t.all() or not t.any():
            row["auc"] = {label: None for label in scores}
            row["reason"] = (f"{'every' if t.all() else 'no'} photo's captions mention it (prevalence "
                             f"{t.mean():.0%}): an AUC needs photos with and without the attribute")
            rows.append(row)
            continue
        boots = {}
        for label, s in scores.items():
            est, boots[label] = auc_estimate(s[:, j], t, idx)
            row["auc"][label] = est.to_dict() | {"beats_chance": est.ci_low > CHANCE,
                                                 "dropped_resamples": int(np.isnan(boots[label]).sum())}
        if "oracle" in scores:
            ref = row["auc"]["oracle"]["mean"]
            for label in scores:
                if label != "oracle":
                    diff = _difference(row["auc"][label]["mean"], boots[label], ref, boots["oracle"])
                    row["auc"][label]["vs_oracle"] = diff.to_dict()
        rows.append(row)
    return rows


def evaluate_attributes(attacker: Attacker, samples: list[Sample], *, victim: str = "lite0",
                        n_aligns=(30, 300), method: str = "ridge", seed: int = 0, n_boot: int = 1000,
                        attributes: Attributes | None = None, progress: bool = False) -> dict:
    """Attribute ROC AUCs of the attack on `samples` (held-out photos with captions) for each N, beside the
    oracle: a JSON-ready dict (rows as `attribute_rows`; systems labelled "N=30", ..., "oracle")."""
    samples = [s for s in samples if s.path is not None]
    if not samples:
        raise SlimeError("no images to score attributes on (the split has captions only).")
    check_held_out(attacker, samples)
    vocab = attacker.bundle.tags
    attributes = attributes or load_attributes(vocab=vocab)
    attributes.tag_ids(vocab)  # an attribute no tag shows fails here, before any embedding
    paths = [str(s.path) for s in samples]
    truth = np.stack([attribute_truth(s.captions, attributes) for s in samples])
    X = attacker.embed(victim, paths, progress=progress)
    A = attacker.embed(attacker.bundle.image_encoder, paths, progress=progress)
    scores, systems = {}, {}
    for n in n_aligns:
        fit = attacker.alignment(victim, n, method, seed)
        aligned = fit.transform(X)
        scores[f"N={n}"] = attribute_scores(attacker, aligned, attributes)
        systems[f"N={n}"] = {"victim": victim, "n_align": n, "method": method,
                             "alignment_cosine": float(np.mean(np.sum(aligned * A, axis=1)))}
    oracle_fit = attacker.alignment(attacker.bundle.image_encoder, max(n_aligns), method, seed)  # the identity
    scores["oracle"] = attribute_scores(attacker, oracle_fit.transform(A), attributes)
    systems["oracle"] = {"victim": attacker.bundle.image_encoder, "n_align": None, "method": oracle_fit.method,
                         "alignment_cosine": 1.0}
    return {"victim": victim, "attacker": attacker.bundle.attacker, "method": method, "seed": seed,
            "n_images": len(samples), "bootstrap": n_boot, "level": LEVEL, "chance": CHANCE,
            "attributes_file": attributes.source, "systems": systems,
            "score": SCORE_TEXT, "truth": TRUTH_TEXT,
            "rows": attribute_rows(attributes, vocab, truth, scores, n_boot, seed)}

