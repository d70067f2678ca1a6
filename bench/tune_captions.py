"""Choose the caption step on Flickr8k dev (issue #20): neighbour-caption writers, judged against both caption priors.

Dev photos (never trained on) attacked as lite0 aligned by ridge on N = 300 training pairs; their nearest public
images are searched among the training photos only (a dev photo is in the public pool, and must not find itself).
Every writer is scored by best-match ROUGE-L over the photo's 5 captions, beside the two caption priors that need
no victim embedding: a random public caption, and the same writer's caption of the mean public embedding.

    python bench/tune_captions.py [--images 500]      # JSON in bench/results/tune_captions.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from slime_core.infra import settings
from slime_core.stages import align
from slime_core.stages.caption_metrics import rouge_l_best, rouge_l_matrix
from slime_core.stages.data import load_folder
from slime_core.stages.encoders import EmbeddingCache, get_encoder
from slime_core.stages.metrics import Difference, Estimate
from slime_core.stages.write import mbr_choice

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flickr8k_8k_224"
OUT = Path(__file__).resolve().parent / "results" / "tune_captions.json"


KS, TEMPERATURES = (5, 10, 20, 40, 80), (0.01, 0.02, 0.05, 10.0)


def choices(query: np.ndarray, A_train: np.ndarray, train_caps: list[list[str]]) -> dict[str, str]:
    """Every writer's caption for one attack-space embedding, its neighbours among the training photos. One ROUGE-L
    matrix over the 20 nearest photos' captions serves every variant (`MBRWriter` computes the same per call)."""
    sims = A_train @ query
    near = np.argsort(-sims)[: max(KS)]
    caps = [c for j in near for c in train_caps[j][:5]]
    weight = np.array([sims[j] for j in near for _ in train_caps[j][:5]])
    start = np.concatenate([[0], np.cumsum([len(train_caps[j][:5]) for j in near])])
    M = rouge_l_matrix(caps)
    firsts = start[:5]  # the consensus writer: the first caption of each of the 5 nearest, unweighted
    out = {"consensus (5 nearest, first captions)": caps[firsts[mbr_choice(M[np.ix_(firsts, firsts)], np.zeros(5), 1.0)]]}
    for k in KS:
        m = start[k]
        for t in TEMPERATURES:
            out[f"mbr k={k} t={t}"] = caps[mbr_choice(M[:m, :m], weight[:m], t)]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--images", type=int, default=500, help="dev photos scored (seeded draw)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    samples = load_folder(args.data)
    train = [s for s in samples if s.split == "train"]
    dev = [s for s in samples if s.split == "dev"]
    dev = [dev[i] for i in sorted(np.random.default_rng(0).choice(len(dev), min(args.images, len(dev)), replace=False))]
    cache = EmbeddingCache(settings.embeddings_cache())
    emb = {v: {split: cache.encode_images(get_encoder(v), [str(s.path) for s in part], batch_size=64)
               for split, part in (("train", train), ("dev", dev))} for v in ("lite2", "lite0")}
    A_train, A_dev = emb["lite2"]["train"], emb["lite2"]["dev"]
    idx = align.choose_pairs(len(train), 300, seed=0)
    fit = align.fit_alignment(emb["lite0"]["train"][idx], A_train[idx])
    queries = {"lite0 N=300": fit.transform(emb["lite0"]["dev"]), "oracle (lite2)": A_dev}
    train_caps = [s.captions for s in train]
    refs = [s.captions for s in dev]
    mean = A_train.mean(axis=0)
    mean /= np.linalg.norm(mean)
    rng = np.random.default_rng(0)
    random_caps = [train_caps[i][rng.integers(5)] for i in rng.integers(len(train), size=len(dev))]
    random_rl = np.array([rouge_l_best(c, r) for c, r in zip(random_caps, refs)])
    mean_caps = choices(mean, A_train, train_caps)
    mean_rl = {w: np.array([rouge_l_best(c, r) for r in refs]) for w, c in mean_caps.items()}
    picked = {label: [choices(q, A_train, train_caps) for q in tqdm(Q, desc=label)] for label, Q in queries.items()}
    out = {"images": len(dev), "random_caption_rouge_l": round(float(random_rl.mean()), 4), "writers": {}}
    for w in mean_caps:
        row = {"mean_embedding_caption": mean_caps[w], "mean_caption_rouge_l": round(float(mean_rl[w].mean()), 4)}
        for label, rows in picked.items():
            rl = np.array([rouge_l_best(c[w], r) for c, r in zip(rows, refs)])
            row[label] = {"rouge_l": Estimate.bootstrap(rl, 1000).to_dict(),
                          "vs_mean_caption": Difference.paired(rl, mean_rl[w], 1000).to_dict(),
                          "vs_random_caption": Difference.paired(rl, random_rl, 1000).to_dict()}
        out["writers"][w] = row
        print(f"{w:40s} mean-cap {row['mean_caption_rouge_l']:.3f}  " + "  ".join(
            f"{label}: {row[label]['rouge_l']['mean']:.3f}" for label in picked), flush=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
