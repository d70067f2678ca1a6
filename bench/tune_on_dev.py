"""Re-decide the offline attacker's modelling choices on Flickr8k dev (issue #20): what was tried, what dev said.

Every variant trains the contrastive heads on the 5,909 training photos and is scored on the 1,000 dev photos
(never in training), victim lite0 aligned by ridge on N = 300 pairs drawn from the training photos, top k = 10,
the frequency prior's weight chosen on dev for each variant. One neighbourhood scorer over the full training
vocabulary serves every variant, so neighbourhood F1 is comparable across vocabulary sizes.

    python bench/tune_on_dev.py --only base,min2 --epochs 8      # a few variants
    python bench/tune_on_dev.py                                   # all; JSON in bench/results/tune_on_dev.json

Needs ../shared/data/flickr8k_8k_224. Embeddings and tag parses come from the same cache `slime build` fills.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from slime_core.infra import settings
from slime_core.stages import align, retrieve
from slime_core.stages.data import load_folder
from slime_core.stages.encoders import EmbeddingCache, get_encoder
from slime_core.stages.metrics import NeighbourhoodScorer, exact_prf
from slime_core.stages.retrieve import HeadConfig
from slime_core.stages.tags import make_parser
from slime_core.training import build, build_scale

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flickr8k_8k_224"
OUT = Path(__file__).resolve().parent / "results" / "tune_on_dev.json"
N_ALIGN, K = 300, 10


class World:
    """Everything the variants share: splits, tags, cached embeddings, the dev victim and the scorer."""

    def __init__(self, data: Path):
        samples = load_folder(data)
        self.train = [s for s in samples if s.split == "train"]
        self.dev = [s for s in samples if s.split == "dev"]
        cache = settings.embeddings_cache()
        tags = build_scale.cached_tags(self.train + self.dev, make_parser("spacy"), "spacy", cache)
        self.train_tags, self.dev_tags = tags[: len(self.train)], tags[len(self.train):]
        self.counts = Counter(t for c in self.train_tags for t in c)
        self.full_vocab = sorted(self.counts, key=lambda t: (-self.counts[t], t))
        emb = EmbeddingCache(cache)
        paths = [str(s.path) for s in self.train + self.dev]
        self.A = emb.encode_images(get_encoder("lite2"), paths, batch_size=64, chunk=2048, progress=True)
        self.victims = {v: emb.encode_images(get_encoder(v), paths, batch_size=64, chunk=2048, progress=True)
                        for v in ("lite0", "lite1")}
        self.text = get_encoder("minilm")
        self.full_text = build_scale.embed_tags(cache, lambda device=None: self.text, self.full_vocab)
        self.semantics = build._semantics(get_encoder("lite2"), self.text, paths)
        self.n = len(self.train)
        self.scorer = NeighbourhoodScorer(self.full_vocab, self.full_text, self.text.encode_texts, m=5)
        self.dev_refs = [list(c) for c in self.dev_tags]
        # The dev victim: lite0 mapped by ridge on N training pairs (the attack as a user meets it).
        idx = align.choose_pairs(self.n, N_ALIGN, seed=0)
        fit = align.fit_alignment(self.victims["lite0"][idx], self.A[idx])
        self.dev_aligned = fit.transform(self.victims["lite0"][self.n:])

    def vocab(self, min_count: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        keep = [i for i, t in enumerate(self.full_vocab) if self.counts[t] >= min_count]
        return [self.full_vocab[i] for i in keep], self.full_text[keep], np.array(
            [self.counts[self.full_vocab[i]] for i in keep], np.float32)

    def score(self, top: list[list[str]]) -> dict:
        ex = [exact_prf(p, r)["f1"] for p, r in zip(top, self.dev_refs)]
        nb = [self.scorer.score(p, r)["f1"] for p, r in zip(top, self.dev_refs)]
        return {"exact_f1": round(float(np.mean(ex)), 4), "neighbourhood_f1": round(float(np.mean(nb)), 4)}


def augmented(w: World, how: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Training inputs: the attacker's own embeddings plus aligned victim copies of the same photos.
    'crossfit': 5-fold ridge over the whole pool (as `slime build` did); 'n300': maps fitted on 300 random
    training pairs, as noisy as the attack at N = 300; 'none': the attacker's own embeddings only."""
    out = {"true": w.A}
    for v, X in w.victims.items():
        if how == "crossfit":
            out[v] = build.cross_fitted(X, w.A, 5, seed)
        elif how == "n300":
            idx = align.choose_pairs(w.n, N_ALIGN, seed + 1)
            out[v] = align.fit_alignment(X[idx], w.A[idx]).transform(X)
    return out


ALPHAS, BETAS, VOTE_FLOOR, VOTE_NEIGHBOURS, VOTE_TEMPERATURE = (0.0, 0.5, 1.0, 2.0), (0.0, 2.0, 4.0), 1e-3, 80, 0.1


def neighbour_votes(E: np.ndarray, A_train: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(n, V) share of each tag among the 80 nearest training photos' tags, weighted by softmax(cosine / 0.1)."""
    S = E @ A_train.T
    nn = np.argsort(-S, axis=1)[:, :VOTE_NEIGHBOURS]
    sims = np.take_along_axis(S, nn, axis=1)
    wts = np.exp((sims - sims.max(axis=1, keepdims=True)) / VOTE_TEMPERATURE)
    W = np.zeros_like(S)
    np.put_along_axis(W, nn, wts / wts.sum(axis=1, keepdims=True), axis=1)
    return W @ P


def run(w: World, name: str, min_count: int = 2, aug: str = "crossfit", heads: HeadConfig = HeadConfig(),
        sampled: build_scale.NegativeSampling | None = None) -> dict:
    t0 = time.time()
    vocab, text, counts = w.vocab(min_count)
    tag_id = {t: i for i, t in enumerate(vocab)}
    pos = np.zeros((w.n, len(vocab)), bool)
    for i, c in enumerate(w.train_tags):
        pos[i, [tag_id[t] for t in c if t in tag_id]] = True
    variants = augmented(w, aug)
    X = np.concatenate([retrieve.image_features(E[: w.n], w.semantics) for E in variants.values()])
    P = np.tile(pos, (len(variants), 1))
    torch.manual_seed(heads.seed)
    if sampled is None:  # every vocabulary tag a negative at every step
        model = retrieve.train_heads(X, text, P, heads, progress=True)
    else:
        model = build_scale.train_heads_sampled(X, text, build_scale.SparseRows.from_lists(
            [list(np.flatnonzero(r)) for r in P], len(vocab)), heads, sampled, "cpu", progress=True)
    tag_vecs = retrieve.project_tags(model, text)
    prior = retrieve.log_prior(counts)
    index = retrieve.TagIndex(retrieve.prior_keys(tag_vecs, prior))
    scale = float(model.scale().detach())
    result = {"name": name, "vocab": len(vocab), "min_count": min_count, "aug": aug, "heads": vars(heads).copy(),
              "sampled": vars(sampled).copy() if sampled else None, "scale": round(scale, 2)}
    P = pos.astype(np.float32)
    for victim, E in (("lite0_n300", w.dev_aligned), ("oracle", w.A[w.n:])):
        u = retrieve.project_images(model, retrieve.image_features(E, w.semantics))
        votes = neighbour_votes(E, w.A[: w.n], P)
        by_alpha = {}
        for a in ALPHAS:
            q, keys = retrieve.with_prior(u, tag_vecs, prior, scale, a)
            scores = q @ keys.T
            for beta in BETAS:
                ids = np.argsort(-(scores + beta * np.log(votes + VOTE_FLOOR)), axis=1)[:, :K]
                by_alpha[(a, beta)] = w.score([[vocab[i] for i in row] for row in ids])
        both = lambda key: by_alpha[key]["exact_f1"] + by_alpha[key]["neighbourhood_f1"]
        best = max([key for key in by_alpha if key[1] == 0], key=both)
        fused = max(by_alpha, key=both)
        result[victim] = {"alpha": best[0], **by_alpha[best],
                          "fused": {"alpha": fused[0], "beta": fused[1], **by_alpha[fused]}}
    result["seconds"] = round(time.time() - t0, 1)
    return result


def variants(epochs: int) -> dict:
    h = HeadConfig(epochs=epochs, batch_size=512)
    return {
        "base": dict(),
        "min1": dict(min_count=1), "min3": dict(min_count=3), "min5": dict(min_count=5),
        "linear": dict(heads=replace(h, hidden=0)),
        "no_hinge": dict(heads=replace(h, hard_negatives=0)),
        "sampled": dict(sampled=build_scale.NegativeSampling(batch_size=256, random=2048, hard_per_image=8)),
        "temp_0.05": dict(heads=replace(h, temperature=0.05)), "temp_0.1": dict(heads=replace(h, temperature=0.1)),
        "aug_none": dict(aug="none"), "aug_n300": dict(aug="n300"),
        "d512": dict(heads=replace(h, d_joint=512)),
        "epochs_x2": dict(heads=replace(h, epochs=2 * epochs)),
    }, h


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    table, h = variants(args.epochs)
    names = [n for n in args.only.split(",") if n] or list(table)
    w = World(args.data)
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in names:
        kw = {"heads": h} | table[name]
        done[name] = run(w, name, **kw)
        print(json.dumps(done[name]), flush=True)
        args.out.write_text(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
