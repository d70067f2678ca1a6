"""Metrics: exact and neighbourhood P/R/F1 on known answers (a hand-made text space), bootstrap intervals."""

import numpy as np
import pytest

from slime_core.stages.metrics import NeighbourhoodScorer, bootstrap_ci, exact_prf, paired_difference, prf

# A 2-D "text space": dog tags point one way, car tags the other.
SPACE = {
    "black dog": [1.0, 0.0], "dark dog": [0.98, 0.2], "brown dog": [0.9, 0.44],
    "red car": [0.0, 1.0], "blue car": [0.2, 0.98],
    "dark puppy": [0.99, 0.1],  # not in the vocabulary
}
VOCAB = ["black dog", "dark dog", "brown dog", "red car", "blue car"]


def embed(tags):
    embed.calls.append(list(tags))
    vecs = np.array([SPACE[t] for t in tags], np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


embed.calls = []


@pytest.fixture
def scorer():
    embed.calls.clear()
    return NeighbourhoodScorer(VOCAB, embed(VOCAB), embed, m=2)


def test_prf_known_values():
    assert prf(1, 2, 1, 1) == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3})
    assert prf(0, 0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_exact_prf():
    assert exact_prf(["black dog", "red car"], ["black dog", "man sit on bench", "blue car"]) == pytest.approx(
        {"precision": 0.5, "recall": 1 / 3, "f1": 0.4})
    # duplicates in the retrieved list count once
    assert exact_prf(["black dog", "black dog", "x"], ["black dog"]) == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3})
    assert exact_prf([], ["a"])["f1"] == 0.0 and exact_prf(["a"], [])["f1"] == 0.0
    assert exact_prf(["a", "b"], ["b", "a"]) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_neighbours_are_the_m_nearest_plus_the_tag(scorer):
    assert scorer.neighbours(["black dog"]) == [{"black dog", "dark dog"}]
    assert scorer.neighbours(["red car"]) == [{"red car", "blue car"}]
    # a tag outside the vocabulary: itself plus its two nearest vocabulary tags
    assert scorer.neighbours(["dark puppy"]) == [{"dark puppy", "black dog", "dark dog"}]


def test_neighbourhood_prf_known_answer(scorer):
    # "dark dog" is a neighbour of the reference "black dog" (counts); "red car" is not.
    got = scorer.score(["dark dog", "red car"], ["black dog"])
    assert got == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3})
    assert exact_prf(["dark dog", "red car"], ["black dog"])["f1"] == 0.0  # exact matching sees no hit


def test_neighbourhood_recall_counts_reference_tags(scorer):
    # references: black dog (recalled through dark dog), red car (not recalled: brown dog is not near it)
    got = scorer.score(["dark dog", "brown dog"], ["black dog", "red car"])
    assert got["recall"] == pytest.approx(0.5)
    assert got["precision"] == pytest.approx(0.5)  # brown dog is not among black dog's 2 nearest


def test_neighbourhood_is_at_least_exact(scorer):
    rng = np.random.default_rng(0)
    for _ in range(20):
        got = list(rng.choice(VOCAB, size=2, replace=False))
        ref = list(rng.choice(VOCAB, size=2, replace=False))
        nb, ex = scorer.score(got, ref), exact_prf(got, ref)
        for key in ("precision", "recall"):
            assert nb[key] >= ex[key]


def test_neighbourhood_empty_reference(scorer):
    assert scorer.score(["black dog"], []) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_neighbours_are_embedded_once(scorer):
    embed.calls.clear()
    scorer.score(["dark dog"], ["black dog", "red car"])
    scorer.score(["red car"], ["black dog", "red car", "black dog"])
    assert embed.calls == [["black dog", "red car"]]


def test_bootstrap_ci():
    values = np.random.default_rng(0).random(50)
    mean, lo, hi = bootstrap_ci(values, n_boot=500, seed=3)
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi
    assert (mean, lo, hi) == bootstrap_ci(values, n_boot=500, seed=3)  # deterministic by seed
    assert bootstrap_ci(values, n_boot=500, seed=4) != (mean, lo, hi)
    # the interval is about +-1.96 standard errors
    se = values.std() / np.sqrt(len(values))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.25)
    _, lo90, hi90 = bootstrap_ci(values, n_boot=500, seed=3, level=0.9)
    assert lo <= lo90 and hi90 <= hi


def test_bootstrap_ci_degenerate():
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25, 0.25)
    assert all(np.isnan(x) for x in bootstrap_ci(np.array([])))


def test_paired_difference():
    base = np.random.default_rng(1).random(40)
    assert paired_difference(base + 0.1, base) == pytest.approx({"diff": 0.1, "ci_low": 0.1, "ci_high": 0.1})
    attack = base + np.random.default_rng(2).normal(0.05, 0.05, size=40)
    d = paired_difference(attack, base, n_boot=500, seed=0)
    assert d["diff"] == pytest.approx(float(np.mean(attack - base)))
    assert d["ci_low"] < d["diff"] < d["ci_high"]
    assert d["ci_low"] > 0  # a consistent per-image gain is significant when paired


def test_estimate_and_difference_are_the_one_shape_of_an_interval():
    import numpy as np

    from slime_core.stages.metrics import Difference, Estimate, bootstrap_ci, paired_difference

    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50) * 0.5
    e = Estimate.bootstrap(a, 200, 3)
    assert (e.mean, e.ci_low, e.ci_high) == bootstrap_ci(a, 200, 3)
    assert e.to_dict() == {"mean": e.mean, "ci_low": e.ci_low, "ci_high": e.ci_high} and e.interval == [e.ci_low, e.ci_high]
    d = Difference.paired(a, b, 200, 3)
    assert d.to_dict() == paired_difference(a, b, 200, 3) and d.significant
    assert not Difference.paired(b, a, 200, 3).significant
