"""Speed of the offline attack on this machine (issue 2's budgets). Run: python bench/bench_attack.py

Times (median of repeats, after one warm-up):
  attack from a given victim embedding (align -> tags -> neighbours)     budget 50 ms
  the same with the victim encoder's forward pass on one photo           budget 150 ms
  alignment fit at N=700 (ridge with leave-one-out lambda; lstsq)        budget 100 ms
  top-k query against 1M random tags through the faiss index             budget 50 ms
The index's recall@10 against exact search is measured on 1M tags clustered like the real vocabulary (each
real projected tag plus small noise); on isotropic random vectors every approximate index loses recall.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from slime_core.attack_spec import AttackSpec
from slime_core.pipeline import Attacker, default_data
from slime_core.stages import align
from slime_core.stages.retrieve import TagIndex


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--tags", type=int, default=1_000_000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    attacker = Attacker()
    image = sorted((default_data() / "images").glob("*.jpg"))[0]
    x = attacker.embed("lite0", [str(image)])[0]
    attacker.alignment("lite0", 300)
    encoder = attacker.encoder("lite0")
    out = {
        "attack_from_embedding_ms": timed(lambda: attacker.attack(embedding=x, spec=AttackSpec("lite0", 300)), args.repeats),
        "attack_with_encoder_ms": timed(lambda: attacker.attack(embedding=encoder.encode_images([str(image)])[0],
                                                                spec=AttackSpec("lite0", 300)), args.repeats),
    }
    X, Y = attacker.bundle.pool_embeddings["lite0"][:700], attacker.pool_attack[:700]
    out["align_fit_n700_ridge_ms"] = timed(lambda: align.fit_alignment(X, Y, "ridge"), 5)
    out["align_fit_n700_lstsq_ms"] = timed(lambda: align.fit_alignment(X, Y, "lstsq"), 5)
    rng = np.random.default_rng(0)
    d = attacker.tag_vecs.shape[1] + 1
    keys = rng.standard_normal((args.tags, d), dtype=np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    t = time.perf_counter()
    index = TagIndex(keys)
    out["index_build_1m_s"] = time.perf_counter() - t
    q = rng.standard_normal((1, d), dtype=np.float32)
    out["query_1m_tags_ms"] = timed(lambda: index.search(q, 10), args.repeats)
    real = np.hstack([attacker.tag_vecs, attacker.prior[:, None] / attacker.prior.max()])
    copies = real[rng.integers(len(real), size=args.tags)] + 0.05 * rng.standard_normal((args.tags, d), dtype=np.float32)
    del keys, index
    clustered = TagIndex(copies)
    queries = real[rng.integers(len(real), size=50)] + 0.2 * rng.standard_normal((50, d), dtype=np.float32)
    exact = np.argsort(-(queries @ copies.T), axis=1)[:, :10]
    found = clustered.search(queries, 10)[1]
    out["recall_at_10_vs_exact_clustered"] = float(np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact, found)]))
    out["device"] = f"CPU, torch threads {torch.get_num_threads()}"
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
