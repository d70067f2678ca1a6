"""Leakage against utility, per defence and strength.

For one defence at one strength the owner releases defended embeddings of everything it embeds: the
public pool (775 images) and its private test images, with one key. The attacker then does what a real
one holding N leaked pairs would: it refits its alignment on N (defended victim embedding, own attacker
embedding) pool pairs, maps the defended test embeddings into attack space and retrieves top-k tags.

Leakage (test split, per image, mean with a 95% bootstrap interval over images)
  alignment_cosine   cosine between the aligned defended embedding and the image's true attacker embedding
  exact_f1           exact tag F1 of the top-k tags against the tags of the image's own captions
  neighbourhood_f1   the same with near-synonym credit (metrics.NeighbourhoodScorer)
  beside the prior baseline `frequent` (the k most frequent training tags, which needs no embedding at
  all): leakage that does not beat it is no leakage. `*_vs_frequent` is the paired difference with CI.
  The cosine's own prior is `baselines.frequent.alignment_cosine`: the cosine every test image gets when
  guessed as the mean public attacker embedding (these embeddings are non-negative, so it is far from 0).
  caption_rouge_l    only where a caption writer is configured (`writer=`): ROUGE-L (best over the image's
  reference captions) of the caption written from the top-k tags and the 5 nearest public images, beside
  two priors that need no victim embedding, each with the paired difference to it:
    random_caption         a random public caption (one fixed draw per image)
    mean_embedding_caption the same writer run on the mean public attacker embedding: one generic caption
                           for every image (its text is in `baselines`). It is the stronger prior: a
                           destroyed embedding aligns to about this mean, so its caption still beats a
                           random one. Caption leakage is what beats this prior.

Utility (the embedding's own job: image-to-image retrieval, measured on what the owner releases)
  The gallery is every released embedding (pool + test; 7,909 with the full Flickr8k bundle). For each test image
  its nearest neighbour in the gallery (itself excluded) under the CLEAN embedding; recall@k is the
  fraction of test images whose target is among the top-k (cosine) under the DEFENDED embeddings. It is
  1.0 without a defence by construction and measures how much of the owner's neighbour structure
  survives. There are no duplicate images to retrieve, so this is a proxy, stated as such.
  zero_shot_tag_f1 (dual-encoder victims only: those with a text tower, e.g. open_clip): the owner's own
  zero-shot tagging -- its text tower embeds the test split's tag vocabulary, each defended test embedding
  takes its k nearest tags, scored by exact F1 against the image's reference tags. The queries get only
  the defence's keyed linear part (`Defence.transform_query`). The offline victims (lite0/lite1) are
  image-only, so their rows have no such field.

Two threat models. The ADAPTIVE attacker (every row's `leakage`) holds N pairs leaked after the defence
was deployed and refits on them. The NON-ADAPTIVE attacker (`leakage.non_adaptive`) holds N pairs leaked
before it (clean victim embeddings) and applies that old map to the defended queries: a keyed rotation or
coordinate shuffle stops it, while the adaptive attacker undoes both exactly. Where a defence changes the
dimension the old map cannot apply, and the row says so.

The adaptive attacker also tries its map with an intercept (a constant feature) and keeps whichever
fits its own pairs better (`align.fit_adaptive`), so a defence cannot win merely by removing a common offset.

The knee: with utility kept u = recall@1 / recall@1(no defence) and leakage kept
l = (neighbourhood_f1 - frequent) / (neighbourhood_f1(no defence) - frequent), clipped to [0, 1], the
knee is the Kneedle point of the (u, l) curve: the strength farthest from the chord between its lowest-
and highest-utility points, where the trade-off bends. Separately `stops_leak` flags the weakest strength
at which neighbourhood F1 is no longer significantly above the prior: what
stopping the measurable leak costs is that row's utility (both in `experiments/knee.py`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from slime_core.attack_captions import mean_embedding_caption, random_public_captions, write_captions
from slime_core.attack_spec import AttackSpec
from slime_core.experiments.evaluation import reference_tags
from slime_core.experiments.knee import mark_knee
from slime_core.infra.errors import SlimeError
from slime_core.pipeline import Attacker, check_held_out
from slime_core.stages import align
from slime_core.stages.caption_metrics import rouge_l_best
from slime_core.stages.defences import create_defence, defence_spec, list_defences
from slime_core.stages.encoders.base import l2_normalise
from slime_core.stages.metrics import Estimate, NeighbourhoodScorer, exact_prf, paired_difference, tag_scores

RECALL_KS = (1, 5)
# the undefended reference row: noise at sigma 0 releases the clean embeddings (a copy), and every row and report
# has always carried it under this name
UNDEFENDED = ("noise", 0.0)
log = logging.getLogger(__name__)


@dataclass
class Setup:
    """Everything the measurements share: the clean embeddings, references and baselines."""

    attacker: Attacker
    spec: AttackSpec  # the attack measured: one victim, one N, one k, its method and pair seed
    names: list[str]
    X_pool: np.ndarray  # (n_pool, d) clean victim embeddings of the public pool
    X_test: np.ndarray  # (n_test, d) clean victim embeddings of the test images
    A_test: np.ndarray  # (n_test, d_a) the attacker's own embeddings of the test images
    refs: list[list[str]]
    scorer: NeighbourhoodScorer
    n_boot: int = 1000
    idx: np.ndarray = field(default=None, repr=False)
    targets: np.ndarray = field(default=None, repr=False)
    frequent: dict = field(default_factory=dict)
    undefended: dict | None = None
    writer: object = None  # a write.CaptionWriter, or None: no caption metric
    ref_captions: list = field(default_factory=list, repr=False)
    random_caption_rouge: np.ndarray | None = field(default=None, repr=False)
    mean_caption: str = ""
    mean_caption_rouge: np.ndarray | None = field(default=None, repr=False)
    zs_vocab: list | None = field(default=None, repr=False)  # zero-shot utility: the victim's own text tower
    zs_text: np.ndarray | None = field(default=None, repr=False)

    @property
    def clean_fit(self) -> align.Alignment:
        """The non-adaptive attacker's map, fitted on the clean pairs: the attacker's own (cached) fit at `spec`."""
        s = self.spec
        return self.attacker.alignment(s.victim, s.n, s.method, s.seed)


def prepare(attacker, samples, spec: AttackSpec, *, n_boot: int = 1000, progress: bool = False, refs=None,
            scorer=None, writer=None) -> Setup:
    """Embed the test images (victim and attacker), tag their captions, compute the baselines, for the attack at
    `spec` (one N, one k; checked against the attacker first). `refs` (reference tags per sample) and `scorer` (a
    NeighbourhoodScorer) may be passed in to reuse them; `writer` (a write.CaptionWriter) adds caption ROUGE-L to
    every row."""
    samples = [s for s in samples if s.path is not None]
    if not samples:
        raise SlimeError("no images to measure on (the split has captions only).")
    spec.single().within(attacker)
    victim, n_align, k, seed = spec.victim, spec.n, spec.top_k, spec.seed
    b = attacker.bundle
    check_held_out(attacker, samples)
    pool_attack = attacker.pool_attack
    idx = align.choose_pairs(len(pool_attack), n_align, seed)
    refs, scorer = reference_tags(attacker, samples, scorer=scorer, refs=refs)
    paths = [str(s.path) for s in samples]
    X_pool = align.check_embeddings(attacker.victim_pool(victim, progress=progress), f"{victim} pool embeddings")
    X_test = attacker.embed(victim, paths, progress=progress)
    A_test = attacker.embed(b.image_encoder, paths, progress=progress)
    setup = Setup(attacker, spec, [s.name for s in samples], X_pool, X_test, A_test, refs, scorer, n_boot, idx)
    setup.targets = _nearest_targets(X_pool, X_test)
    freq = tag_scores([attacker.frequent_tags(k)] * len(refs), refs, scorer)
    mean_pool = attacker.pool_attack.mean(axis=0)
    mean_pool = mean_pool / np.linalg.norm(mean_pool)
    A_unit = A_test / np.linalg.norm(A_test, axis=1, keepdims=True)
    setup.frequent = {"exact_f1": freq["exact_f1"], "neighbourhood_f1": freq["neighbourhood_f1"],
                      "alignment_cosine": A_unit @ mean_pool}
    if writer is not None:
        _prepare_captions(setup, samples, writer)
    victim_encoder = attacker.encoder(victim)
    if "text" in getattr(victim_encoder, "modalities", ()):
        setup.zs_vocab = sorted({t for r in refs for t in r})
        setup.zs_text = align.check_embeddings(victim_encoder.encode_texts(setup.zs_vocab),
                                               f"{victim} text embeddings of the test tags")
    setup.undefended = measure(setup, *UNDEFENDED).to_dict()
    return setup


def _prepare_captions(setup: Setup, samples, writer) -> None:
    """The caption metric's references and its two priors, scored once: a random public caption per image
    and the writer's caption of the mean public embedding."""
    attacker = setup.attacker
    setup.writer = writer
    setup.ref_captions = [s.captions for s in samples]
    randoms = random_public_captions(attacker, len(samples), setup.spec.seed)
    setup.random_caption_rouge = np.array([rouge_l_best(c, refs) for c, refs in zip(randoms, setup.ref_captions)])
    setup.mean_caption = mean_embedding_caption(attacker, writer, setup.spec.top_k)
    setup.mean_caption_rouge = np.array([rouge_l_best(setup.mean_caption, refs) for refs in setup.ref_captions])


def caption_leakage(setup: Setup, aligned: np.ndarray, tags: list[list[str]]) -> dict:
    """Caption ROUGE-L of the attack on these aligned embeddings, with its paired differences to both priors."""
    caps = write_captions(setup.attacker, setup.writer, tags, aligned, setup.spec.top_k,
                          "defended", progress=False)
    rl = np.array([rouge_l_best(c, refs) for c, refs in zip(caps, setup.ref_captions)])
    return {**_flat("caption_rouge_l", rl, setup), "caption_writer": setup.writer.model,
            "caption_rouge_l_vs_random_caption": paired_difference(rl, setup.random_caption_rouge, setup.n_boot,
                                                                   setup.spec.seed),
            "caption_rouge_l_vs_mean_embedding_caption": paired_difference(rl, setup.mean_caption_rouge,
                                                                           setup.n_boot, setup.spec.seed)}


def zero_shot_tag_f1(setup: Setup, defence, Z_test: np.ndarray) -> float:
    """The victim's own zero-shot tagging of its defended test embeddings: exact F1 of the top-k tags."""
    sims = l2_normalise(Z_test) @ l2_normalise(defence.transform_query(setup.zs_text)).T
    top = np.argsort(-sims, axis=1, kind="stable")[:, : setup.spec.top_k]
    return float(np.mean([exact_prf([setup.zs_vocab[j] for j in row], ref)["f1"]
                          for row, ref in zip(top, setup.refs)]))


def _gallery_sims(pool: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Cosine of each test embedding to every released embedding (pool then test), self set to -inf."""
    gallery = np.concatenate([pool, test]).astype(np.float64)
    gallery /= np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    q = gallery[len(pool):]
    sims = q @ gallery.T
    sims[np.arange(len(q)), len(pool) + np.arange(len(q))] = -np.inf
    return sims


def _nearest_targets(pool: np.ndarray, test: np.ndarray) -> np.ndarray:
    return np.argmax(_gallery_sims(pool, test), axis=1)


def retrieval_recall(pool_def: np.ndarray, test_def: np.ndarray, targets: np.ndarray, ks=RECALL_KS) -> dict:
    """recall@k of each test image's clean nearest neighbour under the defended embeddings."""
    sims = _gallery_sims(pool_def, test_def)
    target_sim = sims[np.arange(len(sims)), targets]
    rank = (sims > target_sim[:, None]).sum(axis=1)  # 0 = the target is the top hit (ties in its favour)
    return {f"recall_at_{k}": float(np.mean(rank < k)) for k in ks}


def _flat(name: str, values, setup: Setup) -> dict:
    """{name: mean, name_ci: [low, high]} of the per-image values' `Estimate`: the flat layout of the
    `slime defend` JSON (rows are read this way by the Defences page and by bench/ results)."""
    e = Estimate.bootstrap(values, setup.n_boot, setup.spec.seed)
    return {name: e.mean, f"{name}_ci": e.interval}


@dataclass
class DefencePoint:
    """One point of a defence curve, as `measure` makes it; `to_dict()` is one object of the `slime defend` JSON
    (`curve` adds the knee's marks to those objects)."""

    defence: str
    strength: float
    leakage: dict  # the adaptive attacker's: flat means with "<metric>_ci" intervals, "_vs_frequent" differences,
    #                caption ROUGE-L with a writer, and "non_adaptive" (the attacker whose map predates the defence)
    utility: dict  # recall@k of each image's clean nearest neighbour; the victim's zero-shot tag F1 where it has text
    baselines: dict  # prior -> its means ("frequent"; "random_caption", "mean_embedding_caption" with a writer)
    released_dim: int
    defence_info: dict  # the fitted defence's own description (`Defence.describe`)
    victim: str
    attacker: str
    n_align: int
    k: int
    method: str
    n_images: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure(setup: Setup, defence: str, strength: float, defence_seed: int = 0, **defence_kwargs) -> DefencePoint:
    """One point of a curve: the defence fitted on everything released, the adaptive attacker refitted on the
    defended pairs, the non-adaptive one's clean map, the owner's utility."""
    t0 = time.perf_counter()
    d = create_defence(defence, strength, defence_seed, **defence_kwargs)
    released = np.concatenate([setup.X_pool, setup.X_test])
    Z = d.fit(released).transform(released)
    Z_pool, Z_test = Z[: len(setup.X_pool)], Z[len(setup.X_pool):]
    attacker, spec = setup.attacker, setup.spec
    fit, intercept = align.fit_adaptive(Z_pool[setup.idx], attacker.pool_attack[setup.idx], spec.method)
    batch = attacker.attack_batch(fit, Z_test, spec.top_k, A_true=setup.A_test)  # the map owns its intercept
    aligned, cos, tags = batch.aligned, batch.cosines, batch.tags
    scores = tag_scores(tags, setup.refs, setup.scorer)
    exact, neigh = scores["exact_f1"], scores["neighbourhood_f1"]
    leakage = {
        **_flat("alignment_cosine", cos, setup), "heldout_cosine": fit.heldout_cosine,
        "attacker_intercept": intercept,
        **_flat("exact_f1", exact, setup),
        **_flat("neighbourhood_f1", neigh, setup),
        "exact_f1_vs_frequent": paired_difference(exact, setup.frequent["exact_f1"], setup.n_boot, spec.seed),
        "neighbourhood_f1_vs_frequent": paired_difference(neigh, setup.frequent["neighbourhood_f1"],
                                                          setup.n_boot, spec.seed),
    }
    baselines = {"frequent": {"exact_f1": float(setup.frequent["exact_f1"].mean()),
                              "neighbourhood_f1": float(setup.frequent["neighbourhood_f1"].mean()),
                              # the cosine's prior: every image guessed as the mean public attacker embedding
                              "alignment_cosine": float(setup.frequent["alignment_cosine"].mean())}}
    if setup.writer is not None:
        leakage.update(caption_leakage(setup, aligned, tags))
        baselines["random_caption"] = {"caption_rouge_l": float(setup.random_caption_rouge.mean())}
        baselines["mean_embedding_caption"] = {"caption_rouge_l": float(setup.mean_caption_rouge.mean()),
                                               "caption": setup.mean_caption}
    leakage["non_adaptive"] = non_adaptive_leakage(setup, Z_test)
    utility = retrieval_recall(Z_pool, Z_test, setup.targets)
    if setup.zs_text is not None:
        utility["zero_shot_tag_f1"] = zero_shot_tag_f1(setup, d, Z_test)
    return DefencePoint(defence, strength, leakage, utility, baselines, int(Z.shape[1]), d.describe(), spec.victim,
                        attacker.bundle.attacker, spec.n, spec.top_k, spec.method, len(setup.names),
                        round(time.perf_counter() - t0, 3))


def non_adaptive_leakage(setup: Setup, Z_test: np.ndarray) -> dict:
    """The attacker whose N leaked pairs predate the defence: its clean map applied to defended queries."""
    if Z_test.shape[1] != setup.X_test.shape[1]:
        return {"applicable": False,
                "why": f"the defence releases {Z_test.shape[1]}-d embeddings; the pre-defence map takes "
                       f"{setup.X_test.shape[1]}-d"}
    batch = setup.attacker.attack_batch(setup.clean_fit, Z_test, setup.spec.top_k, A_true=setup.A_test)
    scores = tag_scores(batch.tags, setup.refs, setup.scorer)
    neigh = scores["neighbourhood_f1"]
    return {"applicable": True, **_flat("alignment_cosine", batch.cosines, setup),
            **_flat("exact_f1", scores["exact_f1"], setup), **_flat("neighbourhood_f1", neigh, setup),
            "neighbourhood_f1_vs_frequent": paired_difference(neigh, setup.frequent["neighbourhood_f1"],
                                                              setup.n_boot, setup.spec.seed)}


def curve(setup: Setup, defence: str, strengths, defence_seed: int = 0, on_step=None, **defence_kwargs) -> list[dict]:
    """One row per strength, the knee flagged (`"knee": true` on exactly one row). `on_step(i, strength)` is
    called before each strength is measured (a progress bar)."""
    defence_spec(defence)
    strengths = list(strengths)
    if not strengths:
        raise SlimeError("no strengths given.")
    for s in strengths:  # validate every strength before the slow part
        create_defence(defence, s, defence_seed, **defence_kwargs)
    rows = []
    for i, s in enumerate(strengths):
        if on_step is not None:
            on_step(i, s)
        rows.append(measure(setup, defence, s, defence_seed, **defence_kwargs).to_dict())
    mark_knee(rows, setup.undefended)
    return rows


def strengths_for(defence: str, dim: int) -> list:
    """The defence's default strengths that apply to `dim`-dimensional embeddings (its spec's own policy: where
    the strength is the released dimension d', those up to d, with d itself first)."""
    return defence_spec(defence).strengths_for(dim)


def all_curves(setup: Setup, grid: dict | None = None, progress: bool = False) -> dict[str, list[dict]]:
    """Every defence (or those in `grid`: name -> strengths) at its default strengths."""
    grid = grid or {name: defence_spec(name).default_strengths for name in list_defences()}
    out = {}
    for name, strengths in grid.items():
        t0 = time.perf_counter()
        out[name] = curve(setup, name, strengths)
        if progress:
            log.info("%s: %d strengths in %.1fs", name, len(strengths), time.perf_counter() - t0)
    return out
