"""Sensitive-attribute AUCs where people read them: the "Sensitive attributes" section of `slime report`, and the
Your own embeddings page (each uploaded embedding's attribute scores, beside the AUCs a built-in victim reaches).

The report's section (`report_section`) is measured in the report's own run, on its test photos and embeddings (the
defence set-up's `X_test`, `A_test`): for each N of the report, the attacker's own cached map on the same N pool pairs
as its attack grid (`Attacker.alignment`, the report's method and seed), and the oracle (the attacker's own embedding of
each photo, no alignment), ROC AUC per attribute with its 95% bootstrap interval (`attribute_eval.attribute_rows`:
the same resamples for every system, so the differences to the oracle are paired), beside chance (0.5), and each
attribute's prevalence among these photos. An attribute is "not measurable here", with the reason, where its
prevalence on the sample is 0 or 1, or (the packaged table on a small vocabulary) where none of its words is in a tag
of the attacker's vocabulary; a user's table (`--attributes`) is checked against the vocabulary where it enters.

On the page (`uploaded_attribute_scores`) a score is a logit, so each uploaded embedding's is shown as its margin over
a threshold set on the same model's embeddings of public photos (`store_summary.calibration_rows`: dev photos outside
the N leaked pairs, aligned by the same map): the score above which the share of flagged photos equals the share whose
caption tags show the attribute (its prior), as `slime audit` sets it. `built_in_aucs` gives the AUCs of a built-in
victim: `bench/attribute_auc.py`'s measured JSON when it exists for that victim, this attacker and the packaged
table, else measured here by `attribute_eval.evaluate_attributes` on the photos given (a small sample); `source` says
which.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from slime_core.experiments.attribute_eval import (
    CHANCE,
    LEVEL,
    SCORE_TEXT,
    TRUTH_TEXT,
    attribute_rows,
    evaluate_attributes,
)
from slime_core.experiments.store_summary import calibration_rows, matching_thresholds, pool_truth
from slime_core.infra import settings
from slime_core.stages.attributes import DEFAULT_NAME, Attributes, attribute_scores, attribute_truth, load_attributes
from slime_core.stages.attributes import normalise
from slime_core.stages.encoders.base import l2_normalise

AUC_MEANS = ("AUC is the chance that a photo showing the attribute gets a higher score from its embedding than a photo "
             "that does not: 0.5 is chance (a coin toss), 1.0 puts every such photo first. The oracle is the "
             "attacker's own embedding of the photo, what a perfect map from the victim's space would reach.")
NOT_MEASURABLE = "not measurable here"
MEASURED_DIR = settings.REPO / "bench" / "results"


def split_by_vocabulary(attributes: Attributes, vocab) -> tuple[Attributes | None, dict[str, str]]:
    """(the attributes that some vocabulary tag shows, or None; name -> why not, for the others)."""
    tags = [normalise(t) for t in vocab]
    usable, missing = [], {}
    for a in attributes.items:
        if any(a.matches(t) for t in tags):
            usable.append(a)
        else:
            missing[a.name] = (f"none of its words ({', '.join(a.words[:4])}{', ...' if len(a.words) > 4 else ''}) "
                               f"is in a tag of this attacker's vocabulary ({len(tags):,} tags)")
    return (Attributes(tuple(usable), attributes.source) if usable else None), missing


def _unscored_row(attribute, truth: np.ndarray, labels, reason: str) -> dict:
    return {"attribute": attribute.name, "about": attribute.about, "n_tags": 0, "n_positive": int(truth.sum()),
            "prevalence": float(truth.mean()), "auc": {label: None for label in labels}, "reason": reason}


def report_section(setup, samples, n_aligns, attributes: Attributes | None = None) -> dict:
    """The report's "Sensitive attributes" section (module docstring), JSON-ready: systems labelled "N=30", ...,
    "oracle"; one row per attribute in table order, `measurable` False with `reason` where it has no AUC here."""
    attacker, spec = setup.attacker, setup.spec
    attributes = attributes or load_attributes()
    samples = [s for s in samples if s.path is not None]
    truth = np.stack([attribute_truth(s.captions, attributes) for s in samples]).reshape(len(samples), -1)
    usable, missing = split_by_vocabulary(attributes, attacker.bundle.tags)
    A = l2_normalise(setup.A_test)
    aligned, systems = {}, {}
    for n in sorted({int(n) for n in n_aligns} | {spec.n}):  # the report's main N among them
        aligned[f"N={n}"] = attacker.alignment(spec.victim, n, spec.method, spec.seed).transform(setup.X_test)
        systems[f"N={n}"] = {"victim": spec.victim, "n_align": n, "method": spec.method,
                             "alignment_cosine": float(np.mean(np.sum(aligned[f"N={n}"] * A, axis=1)))}
    aligned["oracle"] = A
    systems["oracle"] = {"victim": attacker.bundle.image_encoder, "n_align": None, "method": "identity",
                         "alignment_cosine": 1.0}
    rows = {}
    if usable is not None:
        keep = [attributes.names.index(name) for name in usable.names]
        scores = {label: attribute_scores(attacker, X, usable) for label, X in aligned.items()}
        rows = {r["attribute"]: r for r in attribute_rows(usable, attacker.bundle.tags, truth[:, keep], scores,
                                                           setup.n_boot, spec.seed)}
    out = []
    for j, a in enumerate(attributes.items):
        row = rows.get(a.name) or _unscored_row(a, truth[:, j], systems, missing.get(a.name, ""))
        out.append(row | {"measurable": row["reason"] is None})
    return {"victim": spec.victim, "attacker": attacker.bundle.attacker, "method": spec.method, "seed": spec.seed,
            "n_images": len(samples), "bootstrap": setup.n_boot, "level": LEVEL, "chance": CHANCE,
            "attributes_file": attributes.source, "systems": systems, "main": f"N={spec.n}",
            "what_auc_means": AUC_MEANS, "score": SCORE_TEXT, "truth": TRUTH_TEXT, "rows": out}


def uploaded_attribute_scores(attacker, fit, pool: np.ndarray, X: np.ndarray, names, n_align: int, seed: int = 0,
                              attributes: Attributes | None = None) -> dict:
    """Each uploaded embedding's attribute scores (X: the victim embeddings to audit; `pool`: the same model's
    embeddings of the public pool, in bundle order; `fit`: the map fitted on its first N pairs, same seed), as
    margins over thresholds calibrated on that model's embeddings of held-out public photos (module docstring)."""
    attributes = attributes or load_attributes()
    usable, missing = split_by_vocabulary(attributes, attacker.bundle.tags)
    if usable is None:
        return {"attributes": [], "rows": [], "not_scored": missing}
    rows, source = calibration_rows(attacker, n_align, seed)
    truth = pool_truth(attacker, rows, usable)
    cal = attribute_scores(attacker, fit.transform(pool[rows]), usable)
    prior = truth.mean(axis=0)
    thresholds = matching_thresholds(cal, prior)
    hit = cal >= thresholds
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = (hit & truth).sum(axis=0) / hit.sum(axis=0)
    margins = attribute_scores(attacker, fit.transform(X), usable) - thresholds
    return {"attributes": [{"name": a.name, "about": a.about, "threshold": float(t), "prior": float(p),
                            "precision": None if np.isnan(q) else float(q)}
                           for a, t, p, q in zip(usable.items, thresholds, prior, precision)],
            "calibration": f"{source}, embedded by your model and aligned", "calibration_photos": len(rows),
            "rows": [{"embedding": str(name), "margins": {a: float(m) for a, m in zip(usable.names, row)},
                      "flagged": [a for a, m in zip(usable.names, row) if m >= 0]} for name, row in zip(names, margins)],
            "not_scored": missing}


def built_in_aucs(attacker, victim: str, samples, *, n_aligns=(30, 300), n_boot: int = 200,
                  measured_dir: Path | None = MEASURED_DIR, attributes: Attributes | None = None) -> dict:
    """The attribute AUCs of a built-in victim (`evaluate_attributes`' dict plus `source`, in words): read from
    `measured_dir`/attribute_auc_<victim>.json where it was measured for this attacker and the packaged table
    (`attributes` None), else measured now on `samples` at the N of `n_aligns` the pool allows."""
    path = Path(measured_dir) / f"attribute_auc_{victim}.json" if measured_dir is not None and attributes is None \
        else None
    if path is not None and path.is_file():
        result = json.loads(path.read_text())
        if (result.get("victim"), result.get("attacker"), result.get("attributes_file")) == \
                (victim, attacker.bundle.attacker, DEFAULT_NAME):
            return _as_section(result) | {
                "source": f"measured by bench/attribute_auc.py on {result['n_images']:,} public test photos "
                          f"({result['bootstrap']:,} resamples; {path.name})", "measured": True}
    ns = tuple(n for n in n_aligns if n <= len(attacker.pool_attack)) or (len(attacker.pool_attack),)
    result = evaluate_attributes(attacker, samples, victim=victim, n_aligns=ns, n_boot=n_boot, attributes=attributes)
    return _as_section(result) | {"source": f"computed here on {result['n_images']:,} public test photos "
                                            f"({n_boot:,} resamples; no measured file for {victim})", "measured": False}


def _as_section(result: dict) -> dict:
    """`evaluate_attributes`' dict with what the report's section adds (`report_section`'s keys): its main system
    (the largest N), the words on AUC, and each row's `measurable`."""
    systems = result["systems"]
    main = max((label for label in systems if label != "oracle"), key=lambda label: systems[label]["n_align"])
    return result | {"main": main, "what_auc_means": AUC_MEANS,
                     "rows": [r | {"measurable": r["reason"] is None} for r in result["rows"]]}
