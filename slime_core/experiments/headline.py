"""The numbers behind the app's headline: one photo's leak beside its prior, and where it sits among the demo
gallery's photos. Pure functions (no streamlit) so the pages stay layout only; the words are
`present.headline_words`.

classify_tags        each retrieved tag: "exact" (a reference tag), "neighbourhood" (one of the 5 nearest
                     vocabulary tags of a reference tag) or "miss"
exact_f1 / neighbourhood_f1 / caption_rouge   one photo's scores (`metrics`' definitions, from precomputed sets)
percentile           where one photo's score sits among all test photos
photo_scores         per-photo tag F1 of the attack and of its prior for many photos at once
gallery_table / scores_by_name   the demo gallery's reference tags and every photo's score (percentile, default)
default_photo        the photo at the median of the gallery's neighbourhood-F1 gains over the prior (a stated rule)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from slime_core.infra.errors import SlimeError
from slime_core.stages.caption_metrics import rouge_l_best
from slime_core.stages.metrics import exact_prf, prf
from slime_core.stages.tags import tags_of_samples

TAG_CLASSES = ("exact", "neighbourhood", "miss")
DEFAULT_SETTINGS = {"victim": "lite0", "n_align": 300, "k": 10, "method": "ridge"}  # the gallery's default-photo scores
DEFAULT_RULE = ("the test photo whose gain in neighbourhood tag F1 (green and amber tags) over the most frequent tags "
                "is the median of the gallery's photos at the default settings (victim lite0, N = 300, k = 10; ties: "
                "first by file name) - a typical photo, not a hand-picked one")


# ---- one photo ---------------------------------------------------------------------------------------

def classify_tags(pred: Sequence[str], refs: Sequence[str], near: Sequence[set] | None = None) -> list[tuple[str, str]]:
    """(tag, class) per retrieved tag. `near`: each reference tag's neighbour set (itself included), or None
    when the neighbourhood is not known yet (then a non-exact tag is a "miss")."""
    ref = set(refs)
    covered = set().union(*near) if near else set()
    return [(t, "exact" if t in ref else "neighbourhood" if t in covered else "miss") for t in pred]


def exact_f1(pred: Sequence[str], refs: Sequence[str]) -> float:
    return exact_prf(pred, refs)["f1"]


def neighbourhood_f1(pred: Sequence[str], refs: Sequence[str], near: Sequence[set]) -> float:
    """NeighbourhoodScorer.score's F1 from precomputed neighbour sets (one per reference tag, in order)."""
    got, ref = list(dict.fromkeys(pred)), list(dict.fromkeys(refs))
    if not ref:
        return 0.0
    by_tag = dict(zip(refs, near))
    sets = [by_tag[t] for t in ref]
    covered = set().union(*sets)
    got_set = set(got)
    return prf(sum(t in covered for t in got), len(got), sum(bool(s & got_set) for s in sets), len(ref))["f1"]


def percentile(value: float, values: Sequence[float]) -> float:
    """Percent of `values` below `value`, ties counted half (mid-rank): 50 for the median."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        raise SlimeError("no scores to rank the photo among.")
    return float(100.0 * ((v < value).sum() + 0.5 * (v == value).sum()) / len(v))


def default_photo(names: Sequence[str], scores: Sequence[float]) -> str:
    """The photo whose score is the (lower) median of all photos; ties go to the first name in sorted order."""
    if not names or len(names) != len(scores):
        raise SlimeError("default_photo needs one score per photo.")
    order = sorted(range(len(names)), key=lambda i: (scores[i], names[i]))
    return names[order[(len(order) - 1) // 2]]


# ---- many photos (percentile, default photo) ------------------------------------------------------------

def photo_scores(attacker, X: np.ndarray, refs: Sequence[Sequence[str]], near: Sequence[Sequence[set]] | None,
                 victim: str, n_align: int, k: int, method: str = "ridge", seed: int = 0) -> dict:
    """Per photo (rows of X, victim embeddings): exact and neighbourhood tag F1 of the attack and of the
    k most frequent tags. Arrays of length len(X)."""
    tags = attacker.attack_batch(attacker.alignment(victim, n_align, method, seed), X, k).tags
    prior = attacker.frequent_tags(k)
    out = {"exact_f1": [exact_f1(t, r) for t, r in zip(tags, refs)],
           "prior_exact_f1": [exact_f1(prior, r) for r in refs]}
    if near is not None:
        out["neighbourhood_f1"] = [neighbourhood_f1(t, r, n) for t, r, n in zip(tags, refs, near)]
        out["prior_neighbourhood_f1"] = [neighbourhood_f1(prior, r, n) for r, n in zip(refs, near)]
    return {key: np.asarray(v) for key, v in out.items()}


def gallery_references(samples, parser, scorer=None) -> dict:
    """{photo name: {"refs": reference tags (from its captions), "near": each reference tag's neighbour set as a
    sorted list, or None without a scorer}}: everything scoring a gallery photo needs, JSON-ready."""
    counts = tags_of_samples(samples, parser)
    refs = [list(c) for c in counts]
    out = {}
    if scorer is not None:
        scorer.neighbours(sorted({t for r in refs for t in r}))  # one batch through the text encoder
    for s, r in zip(samples, refs):
        near = [sorted(n) for n in scorer.neighbours(r)] if scorer is not None else None
        out[s.name] = {"refs": r, "near": near}
    return out


def gallery_table(attacker, samples, parser, victim: str, n_align: int, k: int, method: str = "ridge") -> dict:
    """The demo gallery's table, JSON-ready: each photo's reference tags and their neighbourhoods
    (`gallery_references`), and each photo's exact tag F1 at these settings (which picks the default photo)."""
    refs = gallery_references(samples, parser, attacker.scorer())
    X = attacker.cache.encode_images(attacker.encoder(victim), [str(s.path) for s in samples])
    r = [refs[s.name]["refs"] for s in samples]
    near = [[set(n) for n in refs[s.name]["near"]] for s in samples]
    scores = photo_scores(attacker, X, r, near, victim, n_align, k, method)
    return {"refs": refs,
            "default_scores": {"names": [s.name for s in samples], "exact_f1": scores["exact_f1"].tolist(),
                               # exact F1 at k = 10 is too coarse for a median: half the photos tie at the
                               # prior's score; the neighbourhood F1 gain separates them
                               "gain": (scores["neighbourhood_f1"] - scores["prior_neighbourhood_f1"]).tolist()}}


def scores_by_name(attacker, X: np.ndarray, names: Sequence[str], refs: dict, victim: str, n_align: int, k: int,
                   method: str = "ridge") -> dict:
    """{photo name: exact tag F1} for the photos `names` (rows of X), `refs` as in `gallery_references`."""
    scores = photo_scores(attacker, X, [refs[n]["refs"] for n in names], None, victim, n_align, k, method)
    return dict(zip(names, scores["exact_f1"].tolist()))


def caption_rouge(caption: str, references: Sequence[str]) -> float:
    return float(rouge_l_best(caption, list(references)))
