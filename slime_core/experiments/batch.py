"""The batch attack every experiment shares: victim embeddings mapped into attack space by a fitted
alignment, how close each lands to the image's true attacker embedding, and each image's top-k tags.

Evaluation, the defence curves (adaptive and non-adaptive attacker) and the audit call `attack_batch`;
each then scores `tags` its own way (`evaluation.tag_scores`) beside its own priors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slime_core import align


@dataclass
class BatchAttack:
    aligned: np.ndarray  # (n, d_attack) the victim embeddings in attack space
    cosines: np.ndarray  # (n,) cosine of each aligned embedding with the image's true attacker embedding
    tags: list[list[str]]  # the top-k retrieved tags of each image, best first

    def top(self, k: int) -> list[list[str]]:
        return [t[:k] for t in self.tags]


def attack_batch(attacker, fit: align.Alignment, X: np.ndarray, A_true: np.ndarray, k: int,
                 intercept: bool = False, own_rows=None) -> BatchAttack:
    """`X` (n, d_victim) through `fit` (with the constant feature `align.fit_adaptive` may add), scored
    against `A_true` (n, d_attack), top-`k` tags retrieved. own_rows: the pool row of each image when it is a
    public pool photo (it must not vote for its own tags)."""
    aligned = fit.transform(align.with_intercept(X, fit) if intercept else X)
    tags = [[t for t, _ in row] for row in attacker.retrieve(aligned, k, own_rows)]
    return BatchAttack(aligned, align.cosines(aligned, A_true), tags)
