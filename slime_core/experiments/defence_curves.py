"""Leakage against utility, per defence and strength.

For one defence at one strength the owner releases defended embeddings of everything it embeds: the
public pool (775 images) and its private test images, with one key. The attacker then does what a real
one holding N leaked pairs would: it refits its alignment on N (defended victim embedding, own attacker
embedding) pool pairs, maps the defended test embeddings into attack space and retrieves top-k tags.

Leakage (test split, per image, mean with a 95% bootstrap interval over images)
  alignment_cosine   cosine between the aligned defended embedding and the image's true attacker embedding
  tag_f1             exact tag F1 of the top-k tags against the tags of the image's own captions
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
  The gallery is every released embedding (pool + test, 900 images). For each test image the target is
  its nearest neighbour in the gallery (itself excluded) under the CLEAN embedding; recall@k is the
  fraction of test images whose target is among the top-k (cosine) under the DEFENDED embeddings. It is
  1.0 without a defence by construction and measures how much of the owner's neighbour structure
  survives. There are no duplicate images to retrieve, so this is a proxy, stated as such.
  zero_shot_tag_f1 (dual-encoder victims only: those with a text tower, e.g. open_clip): the owner's own
  zero-shot tagging -- its text tower embeds the test split's tag vocabulary, each defended test embedding
  takes its k nearest tags, scored by exact F1 against the image's reference tags. The queries get only
  the defence's keyed linear part (`Defence.transform_query`). The offline victims (lite0/lite1) are
  image-only, so their rows have no such field.

The adaptive attacker also tries its map with an intercept (a constant feature) and keeps whichever
fits its own pairs better (`fit_adaptive`), so a defence cannot win merely by removing a common offset.

The knee: with utility kept u = recall@1 / recall@1(no defence) and leakage kept
l = (neighbourhood_f1 - frequent) / (neighbourhood_f1(no defence) - frequent), clipped to [0, 1], the
knee is the Kneedle point of the (u, l) curve: the strength farthest from the chord between its lowest-
and highest-utility points, where the trade-off bends. Separately `stops_leak` flags the weakest strength
at which neighbourhood F1 is no longer significantly above the prior: what
stopping the measurable leak costs is that row's utility.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from slime_core import align
from slime_core.defend import DEFENCES, make_defence, spec
from slime_core.encoders.base import l2_normalise
from slime_core.errors import SlimeError
from slime_core.evaluate import mean_embedding_caption, random_public_captions, tag_scores, write_captions
from slime_core.metrics import NeighbourhoodScorer, bootstrap_ci, exact_prf, paired_difference
from slime_core.pipeline import check_held_out

RECALL_KS = (1, 5)


@dataclass
class Setup:
    """Everything the measurements share: the clean embeddings, references and baselines."""

    attacker: object
    victim: str
    names: list[str]
    X_pool: np.ndarray  # (n_pool, d) clean victim embeddings of the public pool
    X_test: np.ndarray  # (n_test, d) clean victim embeddings of the test images
    A_test: np.ndarray  # (n_test, d_a) the attacker's own embeddings of the test images
    refs: list[list[str]]
    scorer: NeighbourhoodScorer
    n_align: int = 300
    k: int = 10
    method: str = "ridge"
    seed: int = 0
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


def prepare(attacker, samples, victim: str = "lite0", n_align: int = 300, k: int = 10, method: str = "ridge",
            seed: int = 0, n_boot: int = 1000, progress: bool = False, refs=None, scorer=None,
            writer=None) -> Setup:
    """Embed the test images (victim and attacker), tag their captions, compute the baselines.
    `refs` (reference tags per sample) and `scorer` (a NeighbourhoodScorer) may be passed in to reuse them;
    `writer` (a write.CaptionWriter) adds caption ROUGE-L to every row."""
    from slime_core.tags import make_parser, tags_of_captions

    samples = [s for s in samples if s.path is not None]
    if not samples:
        raise SlimeError("no images to measure on (the split has captions only).")
    if k < 1:
        raise SlimeError(f"k must be at least 1, got {k}.")
    b = attacker.bundle
    check_held_out(attacker, samples)
    pool_attack = attacker.pool_attack
    idx = align.choose_pairs(len(pool_attack), n_align, seed)
    if refs is None:
        parser = make_parser("spacy")
        refs = [list(tags_of_captions(s.captions, parser)) for s in samples]
    scorer = scorer if scorer is not None else attacker.scorer()
    scorer.neighbours(list(dict.fromkeys(t for r in refs for t in r)))  # one batched text encoding, not one per image
    paths = [str(s.path) for s in samples]
    X_pool = align.check_embeddings(attacker.victim_pool(victim, progress=progress), f"{victim} pool embeddings")
    X_test = attacker.embed(victim, paths, progress=progress)
    A_test = attacker.embed(b.image_encoder, paths, progress=progress)
    setup = Setup(attacker, victim, [s.name for s in samples], X_pool, X_test, A_test, refs, scorer, n_align, k,
                  method, seed, n_boot, idx)
    setup.targets = _nearest_targets(X_pool, X_test)
    freq = tag_scores([attacker.frequent_tags(k)] * len(refs), refs, scorer)
    mean_pool = attacker.pool_attack.mean(axis=0)
    mean_pool = mean_pool / np.linalg.norm(mean_pool)
    A_unit = A_test / np.linalg.norm(A_test, axis=1, keepdims=True)
    setup.frequent = {"tag_f1": freq["exact_f1"], "neighbourhood_f1": freq["neighbourhood_f1"],
                      "alignment_cosine": A_unit @ mean_pool}
    if writer is not None:
        _prepare_captions(setup, samples, writer)
    victim_encoder = attacker.encoder(victim)
    if "text" in getattr(victim_encoder, "modalities", ()):
        setup.zs_vocab = sorted({t for r in refs for t in r})
        setup.zs_text = align.check_embeddings(victim_encoder.encode_texts(setup.zs_vocab),
                                               f"{victim} text embeddings of the test tags")
    setup.undefended = measure(setup, "noise", 0.0)
    return setup


def _prepare_captions(setup: Setup, samples, writer) -> None:
    """The caption metric's references and its two priors, scored once: a random public caption per image
    and the writer's caption of the mean public embedding."""
    from slime_core.caption_metrics import rouge_l_best

    attacker = setup.attacker
    setup.writer = writer
    setup.ref_captions = [s.captions for s in samples]
    randoms = random_public_captions(attacker, len(samples), setup.seed)
    setup.random_caption_rouge = np.array([rouge_l_best(c, refs) for c, refs in zip(randoms, setup.ref_captions)])
    setup.mean_caption = mean_embedding_caption(attacker, writer, setup.k)
    setup.mean_caption_rouge = np.array([rouge_l_best(setup.mean_caption, refs) for refs in setup.ref_captions])


def caption_leakage(setup: Setup, aligned: np.ndarray, tags: list[list[str]]) -> dict:
    """Caption ROUGE-L of the attack on these aligned embeddings, with its paired differences to both priors."""
    from slime_core.caption_metrics import rouge_l_best

    caps = write_captions(setup.attacker, setup.writer, tags, setup.attacker.neighbours(aligned, 5), setup.k,
                          "defended", progress=False)
    rl = np.array([rouge_l_best(c, refs) for c, refs in zip(caps, setup.ref_captions)])
    mean, ci = _mean_ci(rl, setup)
    return {"caption_rouge_l": mean, "caption_rouge_l_ci": ci, "caption_writer": setup.writer.model,
            "caption_rouge_l_vs_random_caption": paired_difference(rl, setup.random_caption_rouge, setup.n_boot,
                                                                   setup.seed),
            "caption_rouge_l_vs_mean_embedding_caption": paired_difference(rl, setup.mean_caption_rouge,
                                                                           setup.n_boot, setup.seed)}


def zero_shot_tag_f1(setup: Setup, defence, Z_test: np.ndarray) -> float:
    """The victim's own zero-shot tagging of its defended test embeddings: exact F1 of the top-k tags."""
    sims = l2_normalise(Z_test) @ l2_normalise(defence.transform_query(setup.zs_text)).T
    top = np.argsort(-sims, axis=1, kind="stable")[:, : setup.k]
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


def _mean_ci(values, setup: Setup) -> tuple[float, list[float]]:
    mean, lo, hi = bootstrap_ci(values, setup.n_boot, setup.seed)
    return mean, [lo, hi]


def measure(setup: Setup, defence: str, strength: float, defence_seed: int = 0, **defence_kwargs) -> dict:
    """One point of a curve: the JSON object of the `slime defend` contract."""
    t0 = time.perf_counter()
    d = make_defence(defence, strength, defence_seed, **defence_kwargs)
    released = np.concatenate([setup.X_pool, setup.X_test])
    Z = d.fit(released).transform(released)
    Z_pool, Z_test = Z[: len(setup.X_pool)], Z[len(setup.X_pool):]
    attacker = setup.attacker
    fit, intercept = fit_adaptive(Z_pool[setup.idx], attacker.pool_attack[setup.idx], setup.method)
    aligned = fit.transform(with_intercept(Z_test, fit) if intercept else Z_test)
    A = setup.A_test / np.linalg.norm(setup.A_test, axis=1, keepdims=True)
    cos = np.sum(aligned * A, axis=1)
    tags = [[t for t, _ in row] for row in attacker.retrieve(aligned, setup.k)]
    scores = tag_scores(tags, setup.refs, setup.scorer)
    exact, neigh = scores["exact_f1"], scores["neighbourhood_f1"]
    cos_m, cos_ci = _mean_ci(cos, setup)
    ex_m, ex_ci = _mean_ci(exact, setup)
    nb_m, nb_ci = _mean_ci(neigh, setup)
    leakage = {
        "alignment_cosine": cos_m, "alignment_cosine_ci": cos_ci, "heldout_cosine": fit.heldout_cosine,
        "attacker_intercept": intercept,
        "tag_f1": ex_m, "tag_f1_ci": ex_ci,
        "neighbourhood_f1": nb_m, "neighbourhood_f1_ci": nb_ci,
        "tag_f1_vs_frequent": paired_difference(exact, setup.frequent["tag_f1"], setup.n_boot, setup.seed),
        "neighbourhood_f1_vs_frequent": paired_difference(neigh, setup.frequent["neighbourhood_f1"],
                                                          setup.n_boot, setup.seed),
    }
    baselines = {"frequent": {"tag_f1": float(setup.frequent["tag_f1"].mean()),
                              "neighbourhood_f1": float(setup.frequent["neighbourhood_f1"].mean()),
                              # the cosine's prior: every image guessed as the mean public attacker embedding
                              "alignment_cosine": float(setup.frequent["alignment_cosine"].mean())}}
    if setup.writer is not None:
        leakage.update(caption_leakage(setup, aligned, tags))
        baselines["random_caption"] = {"caption_rouge_l": float(setup.random_caption_rouge.mean())}
        baselines["mean_embedding_caption"] = {"caption_rouge_l": float(setup.mean_caption_rouge.mean()),
                                               "caption": setup.mean_caption}
    utility = retrieval_recall(Z_pool, Z_test, setup.targets)
    if setup.zs_text is not None:
        utility["zero_shot_tag_f1"] = zero_shot_tag_f1(setup, d, Z_test)
    return {
        "defence": defence,
        "strength": strength,
        "leakage": leakage,
        "utility": utility,
        "baselines": baselines,
        "released_dim": int(Z.shape[1]),
        "defence_info": d.describe(),
        "victim": setup.victim, "attacker": attacker.bundle.attacker, "n_align": setup.n_align, "k": setup.k,
        "method": setup.method, "n_images": len(setup.names), "seconds": round(time.perf_counter() - t0, 3),
    }


def with_intercept(Z: np.ndarray, fit_or_scale) -> np.ndarray:
    """Z with a constant column appended (an intercept for the attacker's linear map)."""
    c = fit_or_scale.info["intercept_scale"] if hasattr(fit_or_scale, "info") else float(fit_or_scale)
    return np.concatenate([Z, np.full((len(Z), 1), c, np.float32)], axis=1)


def fit_adaptive(Z: np.ndarray, Y: np.ndarray, method: str = "ridge"):
    """The adaptive attacker's alignment on defended pairs: the map with and without an intercept
    (a constant feature), keeping the one with the better held-out cosine on its own pairs (no test data).
    The intercept matters when a defence removes the embeddings' common offset (median-thresholded binary
    codes); elsewhere the two fits agree. Returns (Alignment, used_intercept)."""
    plain = align.fit_alignment(Z, Y, method)
    if method == "procrustes":
        return plain, False
    scale = float(np.linalg.norm(Z, axis=1).mean()) or 1.0
    biased = align.fit_alignment(with_intercept(Z, scale), Y, method)
    biased.info["intercept_scale"] = scale
    return (biased, True) if biased.heldout_cosine > plain.heldout_cosine else (plain, False)


def curve(setup: Setup, defence: str, strengths, defence_seed: int = 0, **defence_kwargs) -> list[dict]:
    """One row per strength, the knee flagged (`"knee": true` on exactly one row)."""
    spec(defence)
    strengths = list(strengths)
    if not strengths:
        raise SlimeError("no strengths given.")
    for s in strengths:  # validate every strength before the slow part
        make_defence(defence, s, defence_seed, **defence_kwargs)
    rows = [measure(setup, defence, s, defence_seed, **defence_kwargs) for s in strengths]
    mark_knee(rows, setup.undefended)
    return rows


def all_curves(setup: Setup, grid: dict | None = None, progress: bool = False) -> dict[str, list[dict]]:
    """Every defence (or those in `grid`: name -> strengths) at its default strengths."""
    grid = grid or {name: spec(name).default_strengths for name in DEFENCES}
    out = {}
    for name, strengths in grid.items():
        t0 = time.perf_counter()
        out[name] = curve(setup, name, strengths)
        if progress:
            import sys

            print(f"{name}: {len(strengths)} strengths in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return out


def tradeoff(row: dict, undefended: dict) -> dict:
    """Utility kept and leakage-beyond-prior kept, both relative to no defence."""
    u0 = undefended["utility"]["recall_at_1"] or 1.0
    base = row["baselines"]["frequent"]["neighbourhood_f1"]
    l0 = undefended["leakage"]["neighbourhood_f1"] - base
    u = row["utility"]["recall_at_1"] / u0
    lk = (row["leakage"]["neighbourhood_f1"] - base) / l0 if l0 > 1e-9 else 0.0
    lk = float(np.clip(lk, 0.0, 1.0))
    return {"utility_kept": u, "leakage_kept": lk, "score": u - lk}


def knee_index(rows: list[dict], undefended: dict | None = None) -> int:
    """Kneedle on the (utility kept, leakage kept) points: the point farthest from the straight line
    between the lowest- and highest-utility points, i.e. where the trade-off bends. Degenerate curves
    (all points equal in utility or leakage) fall back to the point with the best utility - leakage."""
    undefended = undefended or rows[0]
    pts = np.array([[t["utility_kept"], t["leakage_kept"]] for t in (tradeoff(r, undefended) for r in rows)])
    u, lk = pts[:, 0], pts[:, 1]
    a, b = int(np.argmin(u)), int(np.argmax(u))
    span = pts[b] - pts[a]
    if len(rows) < 3 or np.ptp(u) < 1e-9 or np.ptp(lk) < 1e-9 or np.hypot(*span) < 1e-9:
        score = u - lk
        return int(max(range(len(rows)), key=lambda i: (round(score[i], 12), u[i], -i)))
    dist = np.abs(span[0] * (pts[:, 1] - pts[a, 1]) - span[1] * (pts[:, 0] - pts[a, 0])) / np.hypot(*span)
    return int(np.argmax(np.round(dist, 12)))


def stop_index(rows: list[dict]) -> int | None:
    """The first row (in the given order of strengths) whose neighbourhood F1 is no longer significantly
    above the prior baseline (the 95% interval of the paired difference reaches 0): the defence has
    stopped the measurable tag leak there. Strengths are taken weakest first whatever order they came in.
    None when no strength does."""
    if not rows:
        return None
    up = spec(rows[0]["defence"]).stronger == "up"
    order = sorted(range(len(rows)), key=lambda i: rows[i]["strength"] if up else -rows[i]["strength"])
    for i in order:
        if rows[i]["leakage"]["neighbourhood_f1_vs_frequent"]["ci_low"] <= 0:
            return i
    return None


def mark_knee(rows: list[dict], undefended: dict) -> int:
    i, stop = knee_index(rows, undefended), stop_index(rows)
    for j, r in enumerate(rows):
        r["tradeoff"] = tradeoff(r, undefended)
        r["knee"] = j == i
        r["stops_leak"] = j == stop
    return i


# --- output ----------------------------------------------------------------------------------------
def fmt_strength(s: float) -> str:
    return "inf" if math.isinf(s) else f"{s:g}"


def knee_label(r: dict) -> str:
    return " ".join(x for x, on in (("<- knee", r.get("knee")), ("<- stops the leak", r.get("stops_leak"))) if on)


def optional_cells(r: dict) -> list[tuple[str, str]]:
    """(header, cell) for the measurements only some runs have: caption ROUGE-L (a writer was configured)
    and zero-shot tag F1 (a dual-encoder victim)."""
    out = []
    if "caption_rouge_l" in r["leakage"]:
        lk, dv = r["leakage"], r["leakage"]["caption_rouge_l_vs_mean_embedding_caption"]
        out.append(("caption ROUGE-L, d vs mean-embedding caption [95% CI]",
                    f"{lk['caption_rouge_l']:.3f} {dv['diff']:+.3f} [{dv['ci_low']:+.3f},{dv['ci_high']:+.3f}]"))
    if "zero_shot_tag_f1" in r["utility"]:
        out.append(("zero-shot tag F1", f"{r['utility']['zero_shot_tag_f1']:.3f}"))
    return out


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    base = r0["baselines"]["frequent"]
    lines = [f"defence {r0['defence']} ({spec(r0['defence']).strength}); victim {r0['victim']} -> {r0['attacker']}, "
             f"N={r0['n_align']} refitted on defended pairs, k={r0['k']}, {r0['n_images']} test images",
             f"prior baseline (k most frequent tags): tag F1 {base['tag_f1']:.3f}, neighbourhood F1 "
             f"{base['neighbourhood_f1']:.3f}; cosine of the mean public embedding {base.get('alignment_cosine', float('nan')):.3f}; "
             f"utility = recall@k of the clean nearest neighbour (1.0 = no loss)"]
    if "random_caption" in r0["baselines"]:
        mc = r0["baselines"]["mean_embedding_caption"]
        lines.append(f"captions by {r0['leakage']['caption_writer']}; priors: a random public caption, ROUGE-L "
                     f"{r0['baselines']['random_caption']['caption_rouge_l']:.3f}; the caption of the mean public "
                     f"embedding (\"{mc['caption']}\"), ROUGE-L {mc['caption_rouge_l']:.3f}")
    extra = " | ".join(h for h, _ in optional_cells(r0))
    head = f"{'strength':>9} {'dim':>5} {'cos':>6} | {'tag F1 [95% CI]':>21} | {'neigh F1 [95% CI]':>21} " \
           f"{'d vs freq [95% CI]':>23} | {'R@1':>5} {'R@5':>5} | knee" + (f" | {extra}" if extra else "")
    lines += [head, "-" * len(head)]
    for r in rows:
        lk, ut = r["leakage"], r["utility"]
        dv = lk["neighbourhood_f1_vs_frequent"]
        lines.append(f"{fmt_strength(r['strength']):>9} {r['released_dim']:>5} {lk['alignment_cosine']:>6.3f} | "
                     f"{lk['tag_f1']:.3f} [{lk['tag_f1_ci'][0]:.3f},{lk['tag_f1_ci'][1]:.3f}]"
                     + f" | {lk['neighbourhood_f1']:.3f} [{lk['neighbourhood_f1_ci'][0]:.3f},{lk['neighbourhood_f1_ci'][1]:.3f}] "
                     + f"{dv['diff']:+.3f} [{dv['ci_low']:+.3f},{dv['ci_high']:+.3f}]".rjust(23)
                     + f" | {ut['recall_at_1']:>5.3f} {ut['recall_at_5']:>5.3f} | {knee_label(r)}"
                     + "".join(f" | {cell}" for _, cell in optional_cells(r)))
    return "\n".join(lines)


def figure(rows: list[dict], title: str | None = None):
    """Plotly chart: leakage (y) against utility recall@1 (x), points labelled by strength, knee starred,
    the prior baseline dashed."""
    import plotly.graph_objects as go

    if not rows:
        raise SlimeError("no rows to plot.")
    name = rows[0]["defence"]
    x = [r["utility"]["recall_at_1"] for r in rows]
    labels = [fmt_strength(r["strength"]) for r in rows]
    fig = go.Figure()
    series = (("neighbourhood_f1", "neighbourhood F1", "#1f77b4"), ("tag_f1", "exact tag F1", "#ff7f0e"),
              ("alignment_cosine", "alignment cosine", "#2ca02c"))
    if "caption_rouge_l" in rows[0]["leakage"]:
        series += (("caption_rouge_l", "caption ROUGE-L", "#9467bd"),)
    for key, label, colour in series:
        fig.add_trace(go.Scatter(x=x, y=[r["leakage"][key] for r in rows], mode="lines+markers+text", name=label,
                                 text=labels if key == "neighbourhood_f1" else None, textposition="top center",
                                 line={"color": colour}, hovertemplate=f"{label} %{{y:.3f}}<br>recall@1 %{{x:.3f}}"))
    base = {**rows[0]["baselines"]["frequent"], **rows[0]["baselines"].get("mean_embedding_caption", {})}
    prior_name = {"alignment_cosine": "mean public embedding", "caption_rouge_l": "caption of the mean embedding"}
    for key, label, colour in series:
        fig.add_hline(y=base[key], line_dash="dash", line_color=colour, opacity=0.6,
                      annotation_text=f"prior ({prior_name.get(key, 'frequent tags')}): {label}",
                      annotation_position="bottom right")
    knee = [r for r in rows if r.get("knee")]
    if knee:
        r = knee[0]
        fig.add_trace(go.Scatter(x=[r["utility"]["recall_at_1"]], y=[r["leakage"]["neighbourhood_f1"]], mode="markers",
                                 marker={"symbol": "star", "size": 18, "color": "crimson"},
                                 name=f"knee: strength {fmt_strength(r['strength'])}"))
    stop = [r for r in rows if r.get("stops_leak")]
    if stop:
        r = stop[0]
        fig.add_trace(go.Scatter(x=[r["utility"]["recall_at_1"]], y=[r["leakage"]["neighbourhood_f1"]], mode="markers",
                                 marker={"symbol": "circle-open", "size": 22, "color": "black", "line": {"width": 2}},
                                 name=f"leak stopped (not above prior) from strength {fmt_strength(r['strength'])}"))
    fig.update_layout(title=title or f"{name}: leakage vs utility ({spec(name).strength}); attacker refits on defended pairs",
                      xaxis_title="utility: image-to-image recall@1 (1 = unchanged)", yaxis_title="leakage",
                      template="plotly_white", height=460, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(range=[-0.03, 1.05])
    return fig


SHORT = {"noise": "strength = sigma", "gaussian": "strength = epsilon, delta 1e-5", "laplace": "strength = epsilon",
         "rotation": "0 = off, 1 = on", "shuffle": "0 = off, 1 = on", "pca": "strength = d' kept",
         "projection": "strength = d'", "quantise": "strength = bits; 8 int8, 1 binary"}


def render_png(curves: dict[str, list[dict]], path, cols: int = 4, panel=(420, 320)) -> None:
    """Small multiples (one panel per defence) as a PNG with Pillow only -- no browser, no kaleido.
    Each panel: neighbourhood F1 (y) against recall@1 (x), strengths labelled, prior dashed, knee red; caption
    ROUGE-L in purple beside its mean-embedding-caption prior where the rows have it."""
    from PIL import Image, ImageDraw, ImageFont

    names = list(curves)
    rows_n = math.ceil(len(names) / cols)
    W, H = panel
    img = Image.new("RGB", (W * min(cols, len(names)), H * rows_n + 40), "white")
    draw = ImageDraw.Draw(img)
    try:
        font, small, big = ImageFont.load_default(14), ImageFont.load_default(11), ImageFont.load_default(17)
    except TypeError:  # Pillow < 10.1
        font = small = big = ImageFont.load_default()
    r0 = curves[names[0]][0]
    captions = "caption_rouge_l" in r0["leakage"]
    draw.text((10, 10), f"SLImE defences: neighbourhood tag F1{' and caption ROUGE-L (purple)' if captions else ''} "
                        f"(leakage) vs image retrieval recall@1 (utility); victim {r0['victim']} -> {r0['attacker']}, "
                        f"N={r0['n_align']} refitted on defended pairs, k={r0['k']}", fill="black", font=big)
    keys = ("neighbourhood_f1", "caption_rouge_l") if captions else ("neighbourhood_f1",)
    ymax = max(r["leakage"][key] for rows in curves.values() for r in rows for key in keys)
    ymax = max(0.05, math.ceil(ymax * 1.15 * 20) / 20)
    for p, name in enumerate(names):
        rows = curves[name]
        ox, oy = (p % cols) * W, 40 + (p // cols) * H
        left, right, top, bottom = ox + 48, ox + W - 14, oy + 28, oy + H - 40
        sx = lambda v: left + (right - left) * (v + 0.03) / 1.08
        sy = lambda v: bottom - (bottom - top) * v / ymax
        draw.rectangle([left, top, right, bottom], outline="#888")
        for t in np.linspace(0, 1, 6):
            draw.line([sx(t), bottom, sx(t), bottom + 4], fill="#888")
            draw.text((sx(t) - 8, bottom + 6), f"{t:.1f}", fill="#444", font=small)
        for t in np.arange(0, ymax + 1e-9, 0.05 if ymax <= 0.3 else 0.1):
            draw.line([left - 4, sy(t), left, sy(t)], fill="#888")
            draw.text((ox + 6, sy(t) - 6), f"{t:.2f}", fill="#444", font=small)
        draw.text((left, oy + 6), f"{name} ({SHORT.get(name, '')})", fill="black", font=font)
        draw.text((left + 60, bottom + 20), "recall@1 (utility)", fill="#444", font=small)
        def dashed(y, colour, label):
            x = left
            while x < right:
                draw.line([x, sy(y), min(x + 6, right), sy(y)], fill=colour)
                x += 12
            draw.text((right - 120, sy(y) + 2), label, fill=colour, font=small)

        dashed(rows[0]["baselines"]["frequent"]["neighbourhood_f1"], "#d62728", "prior (frequent tags)")
        if captions:
            dashed(rows[0]["baselines"]["mean_embedding_caption"]["caption_rouge_l"], "#9467bd", "prior (mean caption)")
            cap = [(sx(r["utility"]["recall_at_1"]), sy(r["leakage"]["caption_rouge_l"])) for r in rows]
            if len(cap) > 1:
                draw.line(cap, fill="#9467bd", width=2)
            for px, py in cap:
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill="#9467bd")
        pts = [(sx(r["utility"]["recall_at_1"]), sy(r["leakage"]["neighbourhood_f1"])) for r in rows]
        if len(pts) > 1 and max(abs(px - pts[0][0]) + abs(py - pts[0][1]) for px, py in pts) < 2:
            draw.text((left + 6, top + 18), "all strengths give the same point", fill="#666", font=small)
        if len(pts) > 1:
            draw.line(pts, fill="#1f77b4", width=2)
        for (px, py), r in zip(pts, rows):
            rad = 7 if r.get("knee") else 3
            draw.ellipse([px - rad, py - rad, px + rad, py + rad], fill="crimson" if r.get("knee") else "#1f77b4")
            if r.get("stops_leak"):
                draw.ellipse([px - 11, py - 11, px + 11, py + 11], outline="black", width=2)
            draw.text((px + 5, py - 14), fmt_strength(r["strength"]), fill="#222", font=small)
        draw.text((left + 6, top + 4), "red = knee, ring = leak stopped", fill="#666", font=small)
    img.save(path)
