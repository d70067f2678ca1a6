"""What a store audit's summary says, computed in bounded memory: per attribute a threshold calibrated on public
photos, how many stored embeddings cross it (beside the public photos' own rate, the prior), the embeddings most
exposed, the tags most often recovered, and the rows that could not be scored.

Calibration. An attribute score (`stages.attributes.attribute_scores`) is a logit, not a probability, so "is there a
child?" needs a threshold. It is set on the public dev photos the attacker never trained on and that are not among
the N leaked pairs, embedded by the victim and aligned by the same map as the store (the attacker's own embeddings
where the victim's are not at hand): the score above which the share of flagged photos equals the share that truly
show the attribute (from their caption tags). That share is the prior printed beside the store's rate, and the
flag's precision on those photos is printed beside it too: how often a flag is right, against the prior a random
flag would have.

`RunningSummary.add` folds in one part table at a time (a resumed run folds the parts already written, read back,
in the same order), keeping counters and a 20-row heap: the summary never holds the results.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from slime_core.stages import align
from slime_core.stages.attributes import Attributes, attribute_scores, normalise
from slime_core.stages.stores import SKIP_REASONS

TOP_EXPOSED = 20
FIRST_SKIPPED = 100
TOP_TAGS = 20


@dataclass
class Calibration:
    thresholds: np.ndarray  # (n_attr,) score at and above which an embedding is flagged
    prior: np.ndarray  # (n_attr,) share of the calibration photos that show the attribute
    precision: np.ndarray  # (n_attr,) share of flagged calibration photos that show it (NaN: none flagged)
    photos: int
    source: str  # which photos and embeddings, in words


def pool_truth(attacker, rows: np.ndarray, attributes: Attributes) -> np.ndarray:
    """(len(rows), n_attr) bool: whether any caption tag of each public pool photo shows each attribute."""
    tags = attacker.bundle.pool.get("tags") or [[]] * len(attacker.pool_attack)
    texts = [[normalise(t) for t in tags[i]] for i in rows]
    return np.array([[any(a.matches(t) for t in ts) for a in attributes.items] for ts in texts], bool).reshape(
        len(rows), len(attributes))


def calibration_rows(attacker, n_align: int, seed: int) -> tuple[np.ndarray, str]:
    """Public pool rows to calibrate on: dev photos outside the leaked pairs (the attacker never trained on them);
    where the bundle has too few, every pool photo outside the pairs, then the whole pool (said in the source)."""
    pool = attacker.bundle.pool
    leaked = set(align.choose_pairs(len(attacker.pool_attack), n_align, seed).tolist())
    splits = pool.get("splits") or ["train"] * len(attacker.pool_attack)
    dev = np.array([i for i, s in enumerate(splits) if s == "dev" and i not in leaked], np.int64)
    if len(dev) >= 20:
        return dev, f"{len(dev)} public dev photos outside the {n_align} leaked pairs"
    rest = np.array([i for i in range(len(splits)) if i not in leaked], np.int64)
    if len(rest) >= 20:
        return rest, f"{len(rest)} public pool photos outside the {n_align} leaked pairs (few dev photos)"
    return np.arange(len(splits)), f"all {len(splits)} public pool photos (a small pool: leaked pairs included)"


def calibrate(attacker, fit, victim: str, attributes: Attributes, n_align: int, seed: int) -> Calibration:
    """Thresholds matching each attribute's share on the calibration photos (module docstring)."""
    rows, source = calibration_rows(attacker, n_align, seed)
    # The victim's embeddings of pool photos are a lookup when the bundle or the user's --victim-pool has them;
    # an encoder victim would embed (or pay an API for) each photo, so there the attacker's own embeddings stand in.
    if victim in attacker.bundle.pool_embeddings or victim in getattr(attacker, "_extra_pools", {}):
        aligned = fit.transform(attacker.victim_rows(victim, rows))
        source += f", embedded by {victim} and aligned"
    else:
        aligned, source = attacker.pool_attack[rows], source + ", the attacker's own embeddings"
    scores = attribute_scores(attacker, aligned, attributes)
    truth = pool_truth(attacker, rows, attributes)
    prior = truth.mean(axis=0)
    thresholds = matching_thresholds(scores, prior)
    hit = scores >= thresholds
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = (hit & truth).sum(axis=0) / hit.sum(axis=0)
    return Calibration(thresholds, prior, precision, len(rows), source)


def matching_thresholds(scores: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Per column of `scores` (rows, attributes), the score at and above which the share of rows flagged equals
    `prior`: the flagged-th highest score (nobody shows the attribute: just above the highest)."""
    out = np.empty(scores.shape[1], np.float32)
    for j in range(scores.shape[1]):
        ranked = np.sort(scores[:, j])[::-1]
        flagged = int(round(prior[j] * len(ranked)))
        out[j] = ranked[flagged - 1] if flagged else np.nextafter(ranked[0], np.float32(np.inf))
    return out


@dataclass
class RunningSummary:
    """Counts over every part folded in so far; `result()` is the summary's dict."""

    names: list[str]
    calibration: Calibration
    prior_tags: list[str] = field(default_factory=list)  # the k most frequent training tags: the tag prior
    scored: int = 0
    flagged: np.ndarray = None
    score_sum: np.ndarray = None
    skipped: Counter = field(default_factory=Counter)
    first_skipped: list = field(default_factory=list)
    tag_counts: Counter = field(default_factory=Counter)
    _heap: list = field(default_factory=list)  # (margin, -order, row dict): the TOP_EXPOSED largest margins
    _order: int = 0  # rows folded so far: ties in the heap go to the earlier row, so every run agrees

    def __post_init__(self):
        self.flagged = np.zeros(len(self.names), np.int64)
        self.score_sum = np.zeros(len(self.names), np.float64)

    def add(self, table, skipped: list) -> None:
        """One part: its result table (id, tags, tag_scores, attr_<name>...) and its skipped rows [(id, reason)]."""
        for row_id, reason in skipped:
            self.skipped[reason] += 1
            if len(self.first_skipped) < FIRST_SKIPPED:
                self.first_skipped.append({"id": row_id, "reason": reason})
        n = table.num_rows
        if not n:
            return
        scores = np.column_stack([table.column(f"attr_{a}").to_numpy() for a in self.names]).astype(np.float32)
        margins = scores - self.calibration.thresholds
        self.scored += n
        self.flagged += (margins >= 0).sum(axis=0)
        self.score_sum += scores.sum(axis=0, dtype=np.float64)
        flat = table.column("tags").combine_chunks().flatten()
        self.tag_counts.update(dict(zip(*np.unique(flat.to_numpy(zero_copy_only=False), return_counts=True))))
        self._keep_exposed(table, scores, margins)
        self._order += n

    def _keep_exposed(self, table, scores: np.ndarray, margins: np.ndarray) -> None:
        best = margins.max(axis=1)
        take = np.argsort(-best, kind="stable")[:TOP_EXPOSED]  # only these can enter the top 20
        ids = table.column("id")
        for i in take:
            item = (float(best[i]), -(self._order + int(i)), int(i))
            if len(self._heap) < TOP_EXPOSED or item[:2] > self._heap[0][:2]:
                row = {"id": ids[int(i)].as_py(), "tags": table.column("tags")[int(i)].as_py(),
                       "scores": {a: float(s) for a, s in zip(self.names, scores[i])},
                       "attribute": self.names[int(np.argmax(margins[i]))], "margin": float(best[i])}
                entry = (item[0], item[1], row)
                (heapq.heappush if len(self._heap) < TOP_EXPOSED else heapq.heapreplace)(self._heap, entry)

    def result(self) -> dict:
        cal, n = self.calibration, max(self.scored, 1)
        attributes = [{"name": a, "threshold": float(cal.thresholds[j]), "flagged": int(self.flagged[j]),
                       "share": self.flagged[j] / n if self.scored else float("nan"),
                       "mean_score": self.score_sum[j] / n if self.scored else float("nan"),
                       "prior": float(cal.prior[j]), "precision": float(cal.precision[j])}
                      for j, a in enumerate(self.names)]
        exposed = [row for _, _, row in sorted(self._heap, key=lambda e: (e[0], e[1]), reverse=True)]
        common = sorted(self.tag_counts.items(), key=lambda tc: (-tc[1], tc[0]))[:TOP_TAGS]
        return {"rows_scored": self.scored, "rows_skipped": sum(self.skipped.values()),
                "skipped": dict(self.skipped), "first_skipped": self.first_skipped,
                "skip_reasons": list(SKIP_REASONS), "attributes": attributes, "most_exposed": exposed,
                "top_tags": [{"tag": str(t), "rows": int(c), "share": c / n, "in_prior": str(t) in self.prior_tags}
                             for t, c in common],
                "calibration": {"photos": cal.photos, "source": cal.source}}
