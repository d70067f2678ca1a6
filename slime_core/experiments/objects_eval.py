"""Objects from pixels, measured: what a detector finds in the photo versus what the attack says is there.

Reference objects: FastestDet's detections on the original photo (COCO classes). Attack objects, each from the
aligned embedding alone:
  tags       the retrieved tags' nouns mapped to COCO classes (`objects.objects_from_tags`);
  generated  detections on the low-fidelity image (`generate.py`), when one was made;
  nearest    detections on the nearest public photo (stored with the bundle: `pool_objects.json`);
  union      all of the above.
Prior: the m most frequent classes detected in the training photos, m their mean count per photo, rounded.
Per-image set P/R/F1 (`objects.object_scores`); means with bootstrap 95% intervals and the paired difference to
the prior. `detections_on_captions` scores the detector itself against the captions' nouns: the ceiling the
paper's "objects from the low-fidelity image" is compared with.
"""

from __future__ import annotations

import numpy as np

from slime_core.stages.metrics import Estimate, paired_difference
from slime_core.stages.objects import (
    detect_objects,
    frequent_objects,
    object_scores,
    objects_from_tags,
    read_pool_objects,
)


def prior_objects(train_objects: list[list[str]]) -> list[str]:
    m = max(1, round(float(np.mean([len(o) for o in train_objects])))) if train_objects else 1
    return frequent_objects(train_objects, m)


def union(*lists: list[list[str]]) -> list[list[str]]:
    return [list(dict.fromkeys(c for part in parts for c in part)) for parts in zip(*lists)]


def score_sources(sources: dict[str, list[list[str]]], reference: list[list[str]], prior: list[str],
                  n_boot: int = 1000, seed: int = 0) -> dict:
    """{source: {"precision", "recall", "f1": Estimate dict, "vs_prior": paired F1 difference}} and the prior's own row."""
    base = object_scores([prior] * len(reference), reference)
    out = {"prior": {"objects": prior, **{m: Estimate.bootstrap(v, n_boot, seed).to_dict() for m, v in base.items()}}}
    for name, pred in sources.items():
        s = object_scores(pred, reference[:len(pred)])
        out[name] = {**{m: Estimate.bootstrap(v, n_boot, seed).to_dict() for m, v in s.items()},
                     "vs_prior": paired_difference(s["f1"], base["f1"][:len(pred)], n_boot, seed), "n_images": len(pred)}
    return out


class ObjectsEval:
    """`slime eval`'s object rows: the test photos' detections (the reference) found once, the prior from the
    detections stored for the bundle's training photos, then per N the generated images' and the nearest public
    photos' objects, per k the tags' objects. None of it when the bundle stores no pool detections."""

    def __init__(self, attacker, paths: list[str], lowfi=None, n_boot: int = 1000, seed: int = 0, progress: bool = False):
        pool = read_pool_objects(attacker.bundle.path)
        self.pool = pool
        if pool is None:
            return
        splits = dict(zip(attacker.bundle.pool["images"], attacker.bundle.pool.get("splits", [])))
        self.prior = prior_objects([v for name, v in pool.items() if splits.get(name, "train") == "train"])
        self.reference = detect_objects(paths, progress, "objects in the evaluated photos")
        self.attacker, self.lowfi, self.n_boot, self.seed, self.progress = attacker, lowfi, n_boot, seed, progress

    def per_alignment(self, aligned: np.ndarray) -> dict[str, list[list[str]]]:
        """Objects that depend on N only: the nearest public photo's, and the generated image's when asked for."""
        nearest = [self.pool.get(row[0][0], []) for row in self.attacker.neighbours(aligned, 1)]
        out = {"nearest": nearest}
        if self.lowfi is not None:
            extra = {}
            if getattr(self.lowfi, "encoder", None) is not None:  # the offline generator starts from the nearest photos
                extra["init_photos"] = self.attacker.nearest_photos(aligned)
            images = self.lowfi.generate(aligned, progress=self.progress, **extra)
            out["generated"] = detect_objects(images, self.progress, "objects in the generated images")
        return out

    def row(self, fixed: dict[str, list[list[str]]], tags: list[list[str]]) -> dict:
        sources = {"tags": [objects_from_tags(t) for t in tags], **fixed}
        sources["union"] = union(*sources.values())
        return score_sources(sources, self.reference, self.prior, self.n_boot, self.seed)
