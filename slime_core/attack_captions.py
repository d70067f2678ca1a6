"""The attack's captions of a batch of images, and the two caption priors that need no victim embedding -- a random
public caption and the caption of the mean public embedding -- which `slime eval`, the defence curves, `slime audit`
and the app put every attack caption beside."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from slime_core.infra.errors import SlimeError


def write_captions(attacker, writer, tags, aligned: np.ndarray, k: int, label: str, progress: bool) -> list[str]:
    """The writer's caption of each image from its top-k tags and its attack-space embedding's (n, d) nearest
    public images' captions."""
    return [attacker.caption(t[:k], a, writer)
            for t, a in zip(tqdm(tags, desc=f"captions ({label})", disable=not progress), aligned)]


def random_public_captions(attacker, n: int, seed: int) -> list[str]:
    """The weak caption prior: n public captions drawn at random (one fixed draw per seed)."""
    public = attacker.captions_of(attacker.bundle.pool["images"])
    if not public:
        raise SlimeError(f"caption baselines need the public pool's captions; none found in {attacker.data} "
                         f"(point --pool-data at the dataset the bundle was built from).")
    return [public[i] for i in np.random.default_rng(seed).integers(len(public), size=n)]


def mean_embedding_caption(attacker, writer, k: int) -> str:
    """The writer's caption of the mean public attacker embedding: the caption prior that needs no victim
    embedding, and what an embedding destroyed by a defence aligns to. Stronger than a random caption."""
    mean = attacker.pool_attack.mean(axis=0, keepdims=True)
    mean = mean / np.linalg.norm(mean)
    return write_captions(attacker, writer, attacker.attack_aligned(mean, k).tags, mean, k, "mean embedding", False)[0]
