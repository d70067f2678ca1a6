"""Is the bundle's int8 pool harmless? The same attack with the pool as stored (int8 + a scale per row) and with
the float32 embeddings it was made from (recomputed through the embedding cache): alignment cosine and top-10 tags
on the Flickr8k test photos, victim lite0, N = 300.

    python bench/quantisation_check.py [--data ../shared/data/flickr8k_8k_224]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from slime_core.pipeline import Attacker
from slime_core.stages.data import load_folder
from slime_core.stages.metrics import exact_prf
from slime_core.stages.tags import make_parser, tags_of_samples

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flickr8k_8k_224"


def attack(attacker: Attacker, X: np.ndarray, A: np.ndarray) -> tuple[float, list[list[str]]]:
    attacker._alignments.clear()
    fit = attacker.alignment("lite0", 300)
    aligned = fit.transform(X)
    cos = float(np.mean(np.sum(aligned / np.linalg.norm(aligned, axis=1, keepdims=True) * A, axis=1)))
    return cos, [[t for t, _ in row] for row in attacker.retrieve(aligned, 10)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    attacker = Attacker(data=args.data)
    test = [s for s in load_folder(args.data, "test") if s.path is not None]
    refs = [list(c) for c in tags_of_samples(test, make_parser("spacy"))]
    X = attacker.embed("lite0", [str(s.path) for s in test])
    A = attacker.embed("lite2", [str(s.path) for s in test])
    pool = [str(p) for p in attacker.pool_paths()]
    stored = {name: emb.copy() for name, emb in attacker.bundle.pool_embeddings.items()}
    out = {}
    for label in ("int8 (as shipped)", "float32 (from the cache)"):
        if label.startswith("float32"):
            for name in ("lite0", "lite2"):
                attacker.bundle.pool_embeddings[name] = attacker.embed(name, pool)
            attacker.pool_attack = attacker.bundle.pool_embeddings["lite2"]
        cos, tags = attack(attacker, X, A)
        out[label] = {"test_cosine": round(cos, 5),
                      "exact_f1": round(float(np.mean([exact_prf(t, r)["f1"] for t, r in zip(tags, refs)])), 5),
                      "tags": tags}
    same = np.mean([a == b for a, b in zip(*(v.pop("tags") for v in out.values()))])
    out["identical top-10 lists"] = round(float(same), 4)
    out["largest pool difference (max abs)"] = {name: float(np.abs(stored[name] - attacker.embed(name, pool)).max())
                                                for name in ("lite0", "lite2")}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
