"""One attacked image scored: tag P/R/F1 beside its priors, a written caption beside a random public one."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages import caption_metrics as cm
from slime_core.stages import metrics


def image_tag_scores(pred: list[str], refs: list[str], scorer) -> dict:
    """Every tag metric of one image (`metrics.tag_scores` for a batch of one)."""
    return {m: float(v[0]) for m, v in metrics.tag_scores([pred], [refs], scorer).items()}


def single_image_scores(attacker, result, refs: list[str], scorer) -> list[dict]:
    """Tag P/R/F1 of the attack beside the baselines (most frequent tags, nearest public image's tags)
    for one attacked image."""
    k = len(result.tags)
    pred = [t["tag"] for t in result.tags]
    nearest = attacker.neighbour_tags(result.aligned[None, :], k)[0]
    rows = {"attack": image_tag_scores(pred, refs, scorer),
            "most frequent tags": image_tag_scores(attacker.frequent_tags(k), refs, scorer),
            "nearest public image": image_tag_scores(nearest, refs, scorer)}
    out = []
    for metric in rows["attack"]:
        a = rows["attack"][metric]
        out.append({"metric": metric, "attack": a, "most frequent tags": rows["most frequent tags"][metric],
                    "nearest public image": rows["nearest public image"][metric],
                    "attack - frequent": a - rows["most frequent tags"][metric],
                    "attack - nearest": a - rows["nearest public image"][metric]})
    return out


def _score_caption(caption: str, refs: Sequence[str]) -> tuple[dict, str | None]:
    """score_caption, or (without WordNet) every metric but METEOR and a note saying how to add it."""
    try:
        return cm.score_caption(caption, refs), None
    except MissingModelError as err:
        refs = [r for r in refs if r and r.strip()]
        rouge = cm._rouge().score_multi(refs, caption) if cm.tokens(caption) else None
        out = {"bleu4": cm.bleu4(caption, refs),
               **{k: rouge[k].fmeasure if rouge else 0.0 for k in ("rouge1", "rouge2", "rougeL")}, "meteor": None}
        return out, str(err)


def caption_scores(caption: str, refs: Sequence[str], public_captions: Sequence[str], seed: int = 0
                   ) -> tuple[list[dict], str | None]:
    """BLEU-4/ROUGE/METEOR of a written caption beside a random public caption (the prior baseline), and a
    note when a metric could not be computed."""
    if not [r for r in refs if r and r.strip()]:
        raise SlimeError("no reference captions to score the caption against.")
    got, note = _score_caption(caption, refs)
    base = _score_caption(public_captions[np.random.default_rng(seed).integers(len(public_captions))], refs)[0] \
        if public_captions else None
    rows = []
    for k, v in got.items():
        b = base[k] if base else None
        rows.append({"metric": k, "caption": v, "random public caption": b,
                     "difference": v - b if v is not None and b is not None else None})
    return rows, note
