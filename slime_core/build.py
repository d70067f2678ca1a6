"""`slime build`: train the offline attacker (heads + ranker) on a dataset's train split and write a bundle.

Order: tags from captions -> vocabulary -> embeddings of every image under every offline encoder ->
cross-fitted aligned copies of the training images (so heads and ranker learn from the noisy inputs
they will see at attack time) -> contrastive heads -> frequency prior tuned on dev -> DCN-v2 ranker ->
ranker kept only if it beats retrieval on dev -> bundle.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from slime_core import align, retrieve
from slime_core.bundle import DEFAULT_BUNDLE, Bundle, save_bundle
from slime_core.data import Sample, load_folder
from slime_core.encoders import EmbeddingCache, attacker_spec, get_encoder
from slime_core.metrics import NeighbourhoodScorer, exact_prf
from slime_core.rank import RankerConfig, rerank, train_ranker
from slime_core.retrieve import HeadConfig, TagIndex
from slime_core.tags import make_parser, tags_of_captions

CACHE = Path.home() / ".cache" / "slime" / "embeddings"
ALPHAS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)


@dataclass
class BuildConfig:
    data: Path
    out: Path = DEFAULT_BUNDLE
    attacker: str = "lite2-minilm"
    victims: tuple[str, ...] = ("lite0", "lite1")  # pool embeddings kept for these; also used for augmentation
    widen_vocab: Path | None = None  # a captions.jsonl whose tags join the vocabulary (e.g. COCO)
    tag_backend: str = "spacy"
    cache: Path = CACHE
    folds: int = 5
    eval_k: int = 10
    heads: HeadConfig = field(default_factory=HeadConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    seed: int = 0


def cross_fitted(X: np.ndarray, Y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Every row of X mapped to Y's space by a ridge map fitted without that row's fold."""
    out = np.zeros_like(Y)
    for held in np.array_split(np.random.default_rng(seed).permutation(len(X)), folds):
        keep = np.setdiff1d(np.arange(len(X)), held)
        out[held] = align.fit_alignment(X[keep], Y[keep]).transform(X[held])
    return out


def class_names() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0] for i in range(1000)]


def top_tags(scores: np.ndarray, ids: np.ndarray, tags: list[str], k: int) -> list[list[str]]:
    return [[tags[i] for i in row[:k]] for row in ids]


def evaluate_tags(pred: list[list[str]], refs: list[list[str]], scorer: NeighbourhoodScorer) -> dict:
    ex = np.mean([exact_prf(p, r)["f1"] for p, r in zip(pred, refs)])
    nb = np.mean([scorer.score(p, r)["f1"] for p, r in zip(pred, refs)])
    return {"exact_f1": float(ex), "neighbourhood_f1": float(nb)}


def build(cfg: BuildConfig, progress: bool = True, log=print) -> Bundle:
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    spec = attacker_spec(cfg.attacker)
    samples = load_folder(cfg.data)
    train = [s for s in samples if s.split == "train"]
    dev = [s for s in samples if s.split == "dev"]
    pool = train + dev  # the attacker's public images
    log(f"data: {len(train)} train, {len(dev)} dev images; pool {len(pool)}")

    parser = make_parser(cfg.tag_backend)
    pool_tags = [tags_of_captions(s.captions, parser) for s in pool]
    counts = Counter(t for c in pool_tags[: len(train)] for t in c)
    extra = []
    if cfg.widen_vocab:
        wide = load_folder(cfg.widen_vocab, require_images=False)
        extra = sorted({t for s in wide for t in tags_of_captions(s.captions, parser)} - set(counts))
    vocab = sorted(counts, key=lambda t: (-counts[t], t)) + extra
    tag_id = {t: i for i, t in enumerate(vocab)}
    tag_counts = np.array([counts.get(t, 0) for t in vocab], np.float32)
    log(f"vocabulary: {len(vocab)} tags ({len(extra)} from {cfg.widen_vocab or 'no extra captions'})")

    cache = EmbeddingCache(cfg.cache)
    image_enc = get_encoder(spec["image"])
    text_enc = get_encoder(spec["text"])
    paths = [str(s.path) for s in pool]
    A = cache.encode_images(image_enc, paths, progress=progress)
    victims = {v: cache.encode_images(get_encoder(v), paths, progress=progress) for v in cfg.victims}
    tag_text = text_enc.encode_texts(vocab, batch_size=256, progress=progress)
    semantics = {}
    if hasattr(image_enc, "classify"):
        feature_norm = float(np.linalg.norm(image_enc.features(paths[:32]), axis=1).mean())
        head = image_enc.model.get_classifier()
        semantics = {"classifier_weight": head.weight.detach().numpy(), "classifier_bias": head.bias.detach().numpy(),
                     "class_text": text_enc.encode_texts(class_names()), "feature_norm": np.array([feature_norm], np.float32)}
    log(f"embeddings ready ({time.time() - t0:.0f}s)")

    # Inputs the heads see: true attacker embeddings and cross-fitted aligned victims of the same images.
    variants = {"true": A} | {f"aligned_{v}": cross_fitted(X, A, cfg.folds, cfg.seed) for v, X in victims.items()}
    positives = np.zeros((len(pool), len(vocab)), bool)
    for i, c in enumerate(pool_tags):
        positives[i, [tag_id[t] for t in c if t in tag_id]] = True
    n_train = len(train)
    feats = {name: retrieve.image_features(E, semantics) for name, E in variants.items()}
    X_train = np.concatenate([f[:n_train] for f in feats.values()])
    P_train = np.tile(positives[:n_train], (len(feats), 1))
    heads = retrieve.train_heads(X_train, tag_text, P_train, cfg.heads, progress=progress)
    log(f"heads trained ({time.time() - t0:.0f}s)")

    tag_vecs = retrieve.project_tags(heads, tag_text)
    prior = retrieve.log_prior(tag_counts)
    scale = float(heads.scale().detach())
    scorer = NeighbourhoodScorer(vocab, tag_text, lambda ts: text_enc.encode_texts(ts), m=5)
    dev_refs = [list(c) for c in pool_tags[n_train:]]
    dev_u = retrieve.project_images(heads, feats[f"aligned_{cfg.victims[0]}"][n_train:])

    def candidates(u: np.ndarray, alpha: float, k: int):
        q, keys = retrieve.with_prior(u, tag_vecs, prior, scale, alpha)
        return TagIndex(keys).search(q, k)

    by_alpha = {a: evaluate_tags(top_tags(*candidates(dev_u, a, cfg.eval_k), vocab, cfg.eval_k), dev_refs, scorer) for a in ALPHAS}
    alpha = max(ALPHAS, key=lambda a: by_alpha[a]["exact_f1"] + by_alpha[a]["neighbourhood_f1"])
    log(f"prior weight alpha={alpha} (dev: {by_alpha[alpha]})")

    U_train = retrieve.project_images(heads, X_train)
    _, cand = candidates(U_train, alpha, cfg.ranker.candidates)
    ranker = train_ranker(U_train, cand, P_train, tag_vecs, prior, cfg.ranker, scale, alpha, progress=progress)
    _, dev_cand = candidates(dev_u, alpha, cfg.ranker.candidates)
    ranked = evaluate_tags(top_tags(*rerank(ranker, dev_u, dev_cand, tag_vecs, prior), vocab, cfg.eval_k), dev_refs, scorer)
    use_ranker = ranked["exact_f1"] + ranked["neighbourhood_f1"] > by_alpha[alpha]["exact_f1"] + by_alpha[alpha]["neighbourhood_f1"]
    log(f"ranker on dev: {ranked} -> {'used' if use_ranker else 'not used (retrieval is better)'} ({time.time() - t0:.0f}s)")

    manifest = {
        "attacker": cfg.attacker, "image_encoder": spec["image"], "text_encoder": spec["text"],
        "dims": {"image": int(A.shape[1]), "image_features": int(X_train.shape[1]), "text": int(tag_text.shape[1]),
                 "joint": cfg.heads.d_joint},
        "prior_alpha": alpha, "logit_scale": scale, "use_ranker": bool(use_ranker), "candidates": cfg.ranker.candidates,
        "training_data": {"folder": Path(cfg.data).name, "train_images": n_train, "dev_images": len(dev),
                          "widen_vocab": str(cfg.widen_vocab) if cfg.widen_vocab else None, "tag_backend": cfg.tag_backend},
        "config": {"heads": asdict(cfg.heads), "ranker": asdict(cfg.ranker), "folds": cfg.folds, "seed": cfg.seed},
        "metrics": {"dev_victim": cfg.victims[0], "dev_k": cfg.eval_k, "retrieval_by_alpha": {str(a): m for a, m in by_alpha.items()},
                    "ranker": ranked},
        "build_seconds": round(time.time() - t0, 1),
    }
    # Captions stay in the dataset folder (research-use licence); the bundle keeps derived tags only.
    pool_meta = {"images": [s.name for s in pool], "splits": [s.split for s in pool],
                 "tags": [sorted(c, key=lambda t: (-c[t], t)) for c in pool_tags]}
    pool_embeddings = {spec["image"]: A} | victims
    bundle = Bundle(manifest, heads, ranker, vocab, tag_counts, tag_text, pool_meta, pool_embeddings, semantics)
    bundle.path = save_bundle(bundle, cfg.out)
    log(f"bundle written to {cfg.out} ({time.time() - t0:.0f}s)")
    return bundle
