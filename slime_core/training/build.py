"""`slime build`: train the offline attacker (heads + ranker) on a dataset's train split and write a bundle.

Order: tags from captions -> vocabulary (tags of >= min_count training photos) -> embeddings of every image
under every offline encoder -> (augment="crossfit": cross-fitted aligned copies of the training images) ->
contrastive heads -> the frequency prior's and the neighbour votes' weights tuned on dev, dev seen as the attack
meets it (the first victim aligned on N = 300 training pairs) -> DCN-v2 ranker, kept only if it beats retrieval
on dev -> bundle. The defaults are the choices Flickr8k dev made (README, "Modelling choices").

Paper scale (COCO, ViT-bigG-14, millions of tags) goes through the same steps with the parts in
`build_scale`: chunked resumable embedding (multi-GPU under `accelerate launch`), sparse positives,
sampled negatives for the heads, and exact chunked GPU search instead of dense (n, V) matrices.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from slime_core.infra import settings
from slime_core.infra.errors import SlimeError
from slime_core.stages import align, retrieve
from slime_core.stages.bundle import DEFAULT_BUNDLE, Bundle, save_bundle
from slime_core.stages.data import load_folder
from slime_core.stages.encoders import (
    AttackerCfg,
    EmbeddingCache,
    attacker_cfg,
    effective_overrides,
    fingerprint,
    get_encoder,
)
from slime_core.stages.metrics import NeighbourhoodScorer, exact_prf
from slime_core.stages.objects import write_pool_objects
from slime_core.stages.rank import RankerConfig, rerank, train_ranker
from slime_core.stages.retrieve import HeadConfig, TagIndex
from slime_core.stages.tags import make_parser, tags_of_samples
from slime_core.training import build_scale

ALPHAS = (0.0, 0.5, 1.0, 2.0, 4.0)
VOTE_WEIGHTS = (0.0, 1.0, 2.0, 4.0)  # the nearest public photos' tag votes (retrieve.NeighbourVotes), tuned on dev


@dataclass
class BuildConfig:
    data: Path
    out: Path | None = None  # default: models/<the attacker's bundle folder> (lite2-minilm: models/default)
    attacker: str = "lite2-minilm"
    victims: tuple[str, ...] | None = None  # pool embeddings kept for these (and augment="crossfit" uses them);
    # None: the attacker's registry default (lite0, lite1 offline; none for the CLIP attacker)
    widen_vocab: Path | None = None  # a captions.jsonl whose tags join the vocabulary (e.g. COCO)
    tag_backend: str = "spacy"
    min_count: int = 3  # a training tag joins the vocabulary when this many training photos have it (dev: README)
    augment: str = "none"  # "crossfit": the heads also train on cross-fitted aligned victim copies (ties on dev)
    dev_n_align: int = 300  # dev is scored as the attack a user meets: the first victim aligned on N training pairs
    cache: Path = field(default_factory=settings.embeddings_cache)
    folds: int = 5
    eval_k: int = 10
    heads: HeadConfig = field(default_factory=HeadConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    seed: int = 0
    # Registry overrides per encoder name (e.g. {"clip-vit-bigg-14": {"pretrained": None, "model_config": ...}}),
    # on top of $SLIME_ENCODER_OVERRIDES; recorded in the manifest as encoder fingerprints.
    encoder_overrides: dict = field(default_factory=dict)
    negatives: build_scale.NegativeSampling = field(default_factory=build_scale.NegativeSampling)
    device: str | None = None  # heads/ranker training and search at scale (default: cuda if present)
    image_batch: int = 64
    image_chunk: int = 2048  # images embedded between two cache writes

    def __post_init__(self):
        if self.min_count < 1:
            raise SlimeError(f"--min-count must be at least 1, got {self.min_count}.")
        if self.augment not in ("crossfit", "none"):
            raise SlimeError(f"augment must be 'crossfit' or 'none', not {self.augment!r}.")


def output_folder(cfg: BuildConfig) -> Path:
    """Where the bundle goes: --out, else models/<the attacker's bundle folder> (lite2-minilm: models/default)."""
    return Path(cfg.out) if cfg.out is not None else DEFAULT_BUNDLE.parent / attacker_cfg(cfg.attacker).folder


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


@dataclass
class _Tags:
    """The public pool (train then dev), its tags and the vocabulary built from the training captions."""
    train: list
    dev: list
    pool_tags: list
    vocab: list[str]
    tag_counts: np.ndarray
    large: bool  # above cfg.negatives.above tags: sampled negatives, sparse positives, chunked search

    @property
    def pool(self) -> list:
        return self.train + self.dev

    def __post_init__(self):
        self.tag_id = {t: i for i, t in enumerate(self.vocab)}

    def ids(self, tags) -> list[int]:
        return [self.tag_id[t] for t in tags if t in self.tag_id]


@dataclass
class _Embeddings:
    attacker: np.ndarray  # the attacker's image embeddings of the pool
    victims: dict[str, np.ndarray]
    tag_text: np.ndarray
    semantics: dict
    text_enc: object


@dataclass
class _Retrieval:
    """Tag keys with the frequency prior, and the candidate search (a TagIndex, or exact chunked search at scale)."""
    tag_vecs: np.ndarray
    prior: np.ndarray
    scale: float
    keys: np.ndarray
    index: TagIndex | None
    device: str | None

    def candidates(self, u: np.ndarray, alpha: float, k: int):
        q, _ = retrieve.with_prior(u, self.tag_vecs, self.prior, self.scale, alpha)
        return build_scale.exact_topk(q, self.keys, k, self.device) if self.index is None else self.index.search(q, k)


def _splits(cfg: BuildConfig, log) -> tuple[list, list]:
    samples = load_folder(cfg.data)
    train = [s for s in samples if s.split == "train"]
    dev = [s for s in samples if s.split == "dev"]
    if not train or not dev:
        raise SlimeError(f"{cfg.data}: building needs 'train' and 'dev' images; found splits "
                         f"{sorted({s.split for s in samples})} (see `slime data coco` for COCO).")
    log(f"data: {len(train)} train, {len(dev)} dev images; pool {len(train) + len(dev)}")
    return train, dev


def training_counts(train_tags: list, min_count: int) -> dict[str, int]:
    """{tag: number of training photos with it}, for tags in at least `min_count` photos, most frequent first
    (ties by name). On Flickr8k dev, min_count 2 and 3 score alike, and 3 halves the vocabulary (README)."""
    counts = Counter(t for c in train_tags for t in c)
    return {t: counts[t] for t in sorted(counts, key=lambda t: (-counts[t], t)) if counts[t] >= min_count}


def _tags(cfg: BuildConfig, train: list, dev: list, progress: bool, log) -> _Tags:
    """Tags of every pool caption; the vocabulary is the training tags, most frequent first, then widen_vocab's."""
    parser = make_parser(cfg.tag_backend)
    pool_tags = build_scale.cached_tags(train + dev, parser, cfg.tag_backend, cfg.cache, progress=progress)
    counts = training_counts(pool_tags[: len(train)], cfg.min_count)
    extra = []
    if cfg.widen_vocab:
        wide = load_folder(cfg.widen_vocab, require_images=False)
        extra = sorted({t for c in tags_of_samples(wide, parser, progress=progress) for t in c} - set(counts))
    vocab = list(counts) + extra
    if not vocab:
        raise SlimeError(f"{cfg.data}: no tag is in {cfg.min_count} or more training photos; lower --min-count.")
    large = len(vocab) > cfg.negatives.above
    log(f"vocabulary: {len(vocab)} tags in >= {cfg.min_count} training photos ({len(extra)} from "
        f"{cfg.widen_vocab or 'no extra captions'})"
        + (f"; above {cfg.negatives.above:,}: sampled negatives" if large else ""))
    return _Tags(train, dev, pool_tags, vocab, np.array([counts.get(t, 0) for t in vocab], np.float32), large)


def _embed(cfg: BuildConfig, towers: AttackerCfg, victims_names: tuple, tags: _Tags,
           progress: bool) -> _Embeddings | None:
    """Every pool image under the attacker and the victims, every tag under the text encoder (cached); None in
    an accelerate helper process, whose share is embedded and cached."""
    cache = EmbeddingCache(cfg.cache)

    def maker(name):
        return lambda device=None: get_encoder(name, device=device, **cfg.encoder_overrides.get(name, {}))

    paths = [str(s.path) for s in tags.pool]
    embed = dict(batch_size=cfg.image_batch, chunk=cfg.image_chunk, progress=progress)
    A = build_scale.embed_images(cache, maker(towers.image), paths, **embed)
    victims = {v: build_scale.embed_images(cache, maker(v), paths, **embed) for v in victims_names}
    tag_text = build_scale.embed_tags(cfg.cache, maker(towers.text), tags.vocab, progress=progress)
    if A is None:
        return None
    image_enc, text_enc = maker(towers.image)(), maker(towers.text)()
    return _Embeddings(A, victims, tag_text, _semantics(image_enc, text_enc, paths), text_enc)


def _semantics(image_enc, text_enc, paths: list[str]) -> dict:
    """For a classifier attacker (EfficientNet-Lite): its ImageNet head and the class names' text embeddings."""
    if not hasattr(image_enc, "classify"):
        return {}
    feature_norm = float(np.linalg.norm(image_enc.features(paths[:32]), axis=1).mean())
    head = image_enc.model.get_classifier()
    return {"classifier_weight": head.weight.detach().numpy(), "classifier_bias": head.bias.detach().numpy(),
            "class_text": text_enc.encode_texts(class_names()), "feature_norm": np.array([feature_norm], np.float32)}


def _train_heads(cfg: BuildConfig, tags: _Tags, emb: _Embeddings, progress: bool):
    """Heads trained on the true attacker embeddings and cross-fitted aligned victims of the same images.
    Returns the heads, the features of every variant (whole pool), and the training inputs and positives."""
    variants = {"true": emb.attacker}
    if cfg.augment == "crossfit":
        variants |= {f"aligned_{v}": cross_fitted(X, emb.attacker, cfg.folds, cfg.seed) for v, X in emb.victims.items()}
    n_train = len(tags.train)
    feats = {name: retrieve.image_features(E, emb.semantics) for name, E in variants.items()}
    X_train = np.concatenate([f[:n_train] for f in feats.values()])
    if tags.large:
        positives = build_scale.SparseRows.from_lists([tags.ids(c) for c in tags.pool_tags[:n_train]], len(tags.vocab))
        P_train = positives.tile(len(feats))
        heads = build_scale.train_heads_sampled(X_train, emb.tag_text, P_train, cfg.heads, cfg.negatives, cfg.device,
                                                progress=progress)
    else:
        positives = np.zeros((len(tags.pool_tags), len(tags.vocab)), bool)
        for i, c in enumerate(tags.pool_tags):
            positives[i, tags.ids(c)] = True
        P_train = np.tile(positives[:n_train], (len(feats), 1))
        heads = retrieve.train_heads(X_train, emb.tag_text, P_train, cfg.heads, progress=progress)
    return heads, feats, X_train, P_train


def _retrieval(cfg: BuildConfig, tags: _Tags, emb: _Embeddings, heads) -> _Retrieval:
    tag_vecs = retrieve.project_tags(heads, emb.tag_text)
    prior = retrieve.log_prior(tags.tag_counts)
    keys = retrieve.prior_keys(tag_vecs, prior)  # the same for every alpha: alpha lives in the queries
    return _Retrieval(tag_vecs, prior, float(heads.scale().detach()), keys, None if tags.large else TagIndex(keys),
                      cfg.device)


def _dev_scorer(cfg: BuildConfig, tags: _Tags, emb: _Embeddings) -> NeighbourhoodScorer:
    search = (lambda q, m: build_scale.exact_topk(q, emb.tag_text, m, cfg.device)[1]) if tags.large else None
    return NeighbourhoodScorer(tags.vocab, emb.tag_text, lambda ts: emb.text_enc.encode_texts(ts), m=5, search=search)


def _dev_victim(cfg: BuildConfig, emb: _Embeddings, n_train: int) -> np.ndarray:
    """The dev photos as the attack meets them: the first victim's embeddings mapped by ridge fitted on
    `dev_n_align` training pairs (never a dev photo); no victims: the attacker's own embeddings (the oracle)."""
    if not emb.victims:
        return emb.attacker[n_train:]
    X = next(iter(emb.victims.values()))
    idx = align.choose_pairs(n_train, min(cfg.dev_n_align, n_train), cfg.seed)
    return align.fit_alignment(X[idx], emb.attacker[idx]).transform(X[n_train:])


def _retrieval_on_dev(cfg: BuildConfig, tags: _Tags, emb: _Embeddings, search: _Retrieval, dev_E: np.ndarray,
                      dev_u: np.ndarray, dev_scores) -> dict[tuple[float, float], dict]:
    """Dev scores of every (prior weight alpha, neighbour-vote weight): the votes come from the training photos
    only (a dev photo is in the pool too). Paper-scale vocabularies (dense (n, V) scores too large) get no votes."""
    weights = (0.0,) if tags.large else VOTE_WEIGHTS
    out = {}
    if not tags.large:
        train_tags = retrieve.tag_matrix(tags.pool_tags[: len(tags.train)], tags.tag_id)
        shares = retrieve.NeighbourVotes().shares(dev_E, emb.attacker[: len(tags.train)], train_tags)
    for a in ALPHAS:
        for w in weights:
            if w == 0:
                out[(a, w)] = dev_scores(search.candidates(dev_u, a, cfg.eval_k))
                continue
            q, _ = retrieve.with_prior(dev_u, search.tag_vecs, search.prior, search.scale, a)
            bonus = retrieve.NeighbourVotes(weight=w).weigh(shares)
            out[(a, w)] = dev_scores(retrieve.fused_topk(q, search.keys, bonus, cfg.eval_k))
    return out


def _both(scores: dict) -> float:
    return scores["exact_f1"] + scores["neighbourhood_f1"]


def build(cfg: BuildConfig, progress: bool = True, log=print) -> Bundle | None:
    """Train and write a bundle; None in an accelerate helper process (rank > 0), which only embeds."""
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    towers = attacker_cfg(cfg.attacker)
    victims_names = tuple(towers.victims if cfg.victims is None else cfg.victims)
    train, dev = _splits(cfg, log)
    tags = _tags(cfg, train, dev, progress, log)
    emb = _embed(cfg, towers, victims_names, tags, progress)
    if emb is None:
        return None
    log(f"embeddings ready ({time.time() - t0:.0f}s)")

    heads, feats, X_train, P_train = _train_heads(cfg, tags, emb, progress)
    log(f"heads trained ({time.time() - t0:.0f}s)")

    search = _retrieval(cfg, tags, emb, heads)
    scorer = _dev_scorer(cfg, tags, emb)
    dev_refs = [list(c) for c in tags.pool_tags[len(train):]]
    dev_E = _dev_victim(cfg, emb, len(train))
    dev_u = retrieve.project_images(heads, retrieve.image_features(dev_E, emb.semantics))

    def dev_scores(top) -> dict:
        return evaluate_tags(top_tags(*top, tags.vocab, cfg.eval_k), dev_refs, scorer)

    by_setting = _retrieval_on_dev(cfg, tags, emb, search, dev_E, dev_u, dev_scores)
    alpha, vote_weight = max(by_setting, key=lambda key: _both(by_setting[key]))
    by_alpha = {a: by_setting[(a, 0.0)] for a in ALPHAS}
    log(f"prior weight alpha={alpha}, neighbour-vote weight {vote_weight} (dev: {by_setting[(alpha, vote_weight)]})")

    U_train = retrieve.project_images(heads, X_train)
    _, cand = search.candidates(U_train, alpha, cfg.ranker.candidates)
    ranker = train_ranker(U_train, cand, P_train, search.tag_vecs, search.prior, cfg.ranker, search.scale, alpha,
                          progress=progress, device=(cfg.device or build_scale.default_device()) if tags.large else "cpu")
    _, dev_cand = search.candidates(dev_u, alpha, cfg.ranker.candidates)
    ranked = dev_scores(rerank(ranker, dev_u, dev_cand, search.tag_vecs, search.prior))
    use_ranker = _both(ranked) > _both(by_setting[(alpha, vote_weight)])
    log(f"ranker on dev: {ranked} -> {'used' if use_ranker else 'not used (retrieval is better)'} ({time.time() - t0:.0f}s)")

    fitted = {"alpha": alpha, "scale": search.scale, "use_ranker": bool(use_ranker), "by_alpha": by_alpha,
              "ranked": ranked, "image_features": int(X_train.shape[1]), "vote_weight": vote_weight,
              "by_vote_weight": {w: by_setting[(alpha, w)] for a, w in by_setting if a == alpha}}
    manifest = _manifest(cfg, towers, victims_names, tags, emb, fitted, t0)
    return _write(cfg, towers, manifest, tags, emb, heads, ranker, log, t0)


def _manifest(cfg: BuildConfig, towers: AttackerCfg, victims_names: tuple, tags: _Tags, emb: _Embeddings,
              fitted: dict, t0: float) -> dict:
    names = (towers.image, towers.text, *victims_names)
    overrides = {n: effective_overrides(n, cfg.encoder_overrides.get(n)) for n in names}
    return {
        "attacker": cfg.attacker, "image_encoder": towers.image, "text_encoder": towers.text,
        "victims": list(victims_names),
        # name, or name@hash when registry fields were overridden (a tiny test model, another weight file)
        "fingerprints": {n: fingerprint(n, cfg.encoder_overrides.get(n)) for n in names},
        "encoder_overrides": {n: o for n, o in overrides.items() if o},
        "dims": {"image": int(emb.attacker.shape[1]), "image_features": fitted["image_features"],
                 "text": int(emb.tag_text.shape[1]), "joint": cfg.heads.d_joint},
        "prior_alpha": fitted["alpha"], "logit_scale": fitted["scale"], "use_ranker": fitted["use_ranker"],
        "neighbour_votes": asdict(retrieve.NeighbourVotes(weight=fitted["vote_weight"])),
        "candidates": cfg.ranker.candidates,
        "training_data": {"folder": Path(cfg.data).name, "train_images": len(tags.train), "dev_images": len(tags.dev),
                          "widen_vocab": str(cfg.widen_vocab) if cfg.widen_vocab else None, "tag_backend": cfg.tag_backend},
        "config": {"heads": asdict(cfg.heads), "ranker": asdict(cfg.ranker), "folds": cfg.folds, "seed": cfg.seed,
                   "negatives": asdict(cfg.negatives) if tags.large else None},
        "metrics": {"dev_victim": victims_names[0] if victims_names else towers.image, "dev_k": cfg.eval_k,
                    "retrieval_by_alpha": {str(a): m for a, m in fitted["by_alpha"].items()},
                    "retrieval_by_vote_weight": {str(w): m for w, m in fitted["by_vote_weight"].items()},
                    "ranker": fitted["ranked"]},
        "build_seconds": round(time.time() - t0, 1),
    }


def _write(cfg: BuildConfig, towers: AttackerCfg, manifest: dict, tags: _Tags, emb: _Embeddings, heads, ranker,
           log, t0: float) -> Bundle:
    # Captions stay in the dataset folder (research-use licence); the bundle keeps derived tags only.
    pool_meta = {"images": [s.name for s in tags.pool], "splits": [s.split for s in tags.pool],
                 "tags": [sorted(c, key=lambda t: (-c[t], t)) for c in tags.pool_tags]}
    pool_embeddings = {towers.image: emb.attacker} | emb.victims
    bundle = Bundle(manifest, heads, ranker, tags.vocab, tags.tag_counts, emb.tag_text, pool_meta, pool_embeddings,
                    emb.semantics)
    out = output_folder(cfg)
    bundle.path = save_bundle(bundle, out)
    # What the pool photos show, stored so the attack can name the objects of its nearest public photos
    # where the photos themselves are absent (a fresh clone): FastestDet, about 7 ms a photo.
    write_pool_objects(out, [s.name for s in tags.pool], [s.path for s in tags.pool])
    log(f"bundle written to {out} ({time.time() - t0:.0f}s)")
    return bundle
