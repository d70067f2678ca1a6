"""Tag-level leakage metrics and paired bootstrap intervals.

exact          P/R/F1 of the retrieved tags against the image's own tags (from its captions)
neighbourhood  a retrieved tag counts when it is a reference tag or among the m nearest vocabulary tags,
               in the text space, of some reference tag; a reference tag is recalled when it or one of
               its m neighbours was retrieved. "black dog" for "dark dog" counts; "red car" does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


def prf(hits_p: int, n_retrieved: int, hits_r: int, n_reference: int) -> dict:
    p = hits_p / n_retrieved if n_retrieved else 0.0
    r = hits_r / n_reference if n_reference else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def exact_prf(retrieved: Sequence[str], reference: Sequence[str]) -> dict:
    ref, got = set(reference), list(dict.fromkeys(retrieved))
    hits = sum(t in ref for t in got)
    return prf(hits, len(got), hits, len(ref))


class NeighbourhoodScorer:
    """Neighbourhood P/R/F1 over a tag vocabulary with text embeddings (V, d), L2-normalised."""

    def __init__(self, vocab: Sequence[str], vocab_text: np.ndarray, embed: Callable[[list[str]], np.ndarray], m: int = 5,
                 search: Callable[[np.ndarray, int], np.ndarray] | None = None, budget: int = 1 << 25):
        """`search(queries, m) -> (n, m) ids` replaces the brute-force search (e.g. chunked on a GPU for
        millions of tags); the default computes at most `budget` similarities at a time."""
        self.vocab, self.vocab_text, self.embed, self.m = list(vocab), vocab_text, embed, m
        self.search, self.budget = search, budget
        self._neighbours: dict[str, set[str]] = {}

    def _top(self, queries: np.ndarray) -> np.ndarray:
        if self.search is not None:
            return self.search(queries, self.m)
        rows = max(1, self.budget // max(len(self.vocab_text), 1))
        out = []
        for s in range(0, len(queries), rows):
            sims = queries[s : s + rows] @ self.vocab_text.T
            out.append(np.argpartition(-sims, min(self.m, sims.shape[1] - 1), axis=1)[:, : self.m])
        return np.concatenate(out)

    def neighbours(self, tags: Sequence[str]) -> list[set[str]]:
        new = [t for t in dict.fromkeys(tags) if t not in self._neighbours]
        if new:
            top = self._top(self.embed(new))
            for tag, ids in zip(new, top):
                self._neighbours[tag] = {tag} | {self.vocab[i] for i in ids}
        return [self._neighbours[t] for t in tags]

    def score(self, retrieved: Sequence[str], reference: Sequence[str]) -> dict:
        got, ref = list(dict.fromkeys(retrieved)), list(dict.fromkeys(reference))
        if not ref:
            return prf(0, len(got), 0, 0)
        near = self.neighbours(ref)
        covered = set().union(*near)
        hits_p = sum(t in covered for t in got)
        got_set = set(got)
        hits_r = sum(bool(n & got_set) for n in near)
        return prf(hits_p, len(got), hits_r, len(ref))


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-image values and its percentile bootstrap interval over images."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(values.mean()), float(lo), float(hi)


@dataclass(frozen=True)
class Estimate:
    """A mean over images with its percentile-bootstrap 95% interval: the one shape of "an estimate" in every
    experiment (evaluation, defence curves, audit). JSON: {"mean", "ci_low", "ci_high"}."""

    mean: float
    ci_low: float
    ci_high: float

    @classmethod
    def bootstrap(cls, values, n_boot: int = 1000, seed: int = 0) -> "Estimate":
        return cls(*bootstrap_ci(values, n_boot, seed))

    @property
    def interval(self) -> list[float]:
        return [self.ci_low, self.ci_high]

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True)
class Difference:
    """Attack minus a baseline, paired over images, with its bootstrap 95% interval: the leakage beyond the
    prior. The one shape of "a paired difference" everywhere. JSON: {"diff", "ci_low", "ci_high"}."""

    diff: float
    ci_low: float
    ci_high: float

    @classmethod
    def paired(cls, attack, baseline, n_boot: int = 1000, seed: int = 0) -> "Difference":
        diff = np.asarray(attack, np.float64) - np.asarray(baseline, np.float64)
        return cls(*bootstrap_ci(diff, n_boot, seed))

    @property
    def significant(self) -> bool:
        """The attack beats the baseline: the whole 95% interval is above 0."""
        return self.ci_low > 0

    def to_dict(self) -> dict:
        return {"diff": self.diff, "ci_low": self.ci_low, "ci_high": self.ci_high}


def paired_difference(attack: np.ndarray, baseline: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """`Difference.paired(...)` as its JSON dict (what result rows carry)."""
    return Difference.paired(attack, baseline, n_boot, seed).to_dict()


TAG_METRICS = ("exact_precision", "exact_recall", "exact_f1", "neighbourhood_precision", "neighbourhood_recall",
               "neighbourhood_f1")


def tag_scores(pred: list[list[str]], refs: list[list[str]], scorer: NeighbourhoodScorer) -> dict[str, np.ndarray]:
    """Every tag metric (TAG_METRICS) per image: exact P/R/F1 and the scorer's neighbourhood P/R/F1, as arrays."""
    rows = []
    for p, r in zip(pred, refs):
        ex, nb = exact_prf(p, r), scorer.score(p, r)
        rows.append([ex["precision"], ex["recall"], ex["f1"], nb["precision"], nb["recall"], nb["f1"]])
    arr = np.asarray(rows, np.float64).reshape(-1, len(TAG_METRICS))
    return {m: arr[:, i] for i, m in enumerate(TAG_METRICS)}
