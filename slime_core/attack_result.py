"""What an attack returns: `BatchAttack` for many victim embeddings at once (the one batch core,
`Attacker.attack_batch`, every caller shares) and `AttackResult` for one image, as the CLI, the app and the report
show it. Scores are rounded once, here, for every surface."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

import numpy as np


@dataclass
class BatchAttack:
    """Victim embeddings after the attack: where they land in attack space and what they retrieve."""

    aligned: np.ndarray  # (n, d_attack) the victim embeddings in attack space, unit rows
    scored_tags: list[list[tuple[str, float]]]  # per row, the top-k retrieved (tag, score), best first
    neighbours: list[list[tuple[str, float]]]  # per row, the nearest public photos (name, cosine); [] if not asked
    cosines: np.ndarray | None = None  # (n,) cosine with each image's true attacker embedding, where it was given
    projected: np.ndarray | None = field(default=None, repr=False)  # (n, d_head) `Attacker.project(aligned)`

    @property
    def tags(self) -> list[list[str]]:
        return [[t for t, _ in row] for row in self.scored_tags]

    def top(self, k: int) -> list[list[str]]:
        return [t[:k] for t in self.tags]


@dataclass
class AttackResult:
    image: str | None
    victim: str
    attacker: str
    n_align: int
    k: int
    alignment_cosine: float  # held-out mean cosine of the fitted map
    tags: list[dict]  # [{"tag", "score"}], best first
    neighbours: list[dict]  # [{"image", "score"}], nearest public images in attack space (JSON key: "neighbors")
    caption: str | None = None
    scene_graph: dict | None = None  # objects, attributes, relations, scene (when asked for)
    final_caption: str | None = None  # written from chosen scene-graph parts (the paper's ablation)
    aligned: np.ndarray | None = field(default=None, repr=False)  # the image's embedding in attack space
    # with a low-fidelity maker (else None): {"method", "seconds", "image": None here; the CLI fills in the PNG's path}
    lowfi: dict | None = None
    # with a low-fidelity maker (else None): COCO classes {"tags": named by the top-k tags' nouns, "generated":
    # detected in the generated image, "nearest": detected in the nearest public photo ([] where the bundle has no
    # pool_objects.json), "union": all three, each class once, in that order}
    objects: dict | None = None
    lowfi_image: object | None = field(default=None, repr=False)  # the generated PIL image (not serialised)
    # what the user should know about this result (align.collapse_warnings: the embedding maps onto the prior)
    warnings: list[str] = field(default_factory=list)

    UNSERIALISED = ("aligned", "lowfi_image")
    JSON_KEYS = {"neighbours": "neighbors"}  # the published JSON keeps its first spelling; the code has one

    def to_dict(self) -> dict:
        return {self.JSON_KEYS.get(f.name, f.name): copy.deepcopy(getattr(self, f.name)) for f in fields(self)
                if f.name not in self.UNSERIALISED}

    @classmethod
    def from_batch(cls, batch: BatchAttack, row: int, *, image: str | None, victim: str, attacker: str, fit,
                   n_align: int, k: int, **extra) -> "AttackResult":
        """Row `row` of a batch attack through the map `fit` (fitted on `n_align` pairs), as one image's result."""
        return cls(image, victim, attacker, n_align, k, round(fit.heldout_cosine, 4),
                   [{"tag": t, "score": round(s, 4)} for t, s in batch.scored_tags[row]],
                   [{"image": n, "score": round(s, 4)} for n, s in batch.neighbours[row]],
                   aligned=batch.aligned[row], **extra)
