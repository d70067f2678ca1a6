"""`slime eval`: leakage on a labelled split, every figure beside its prior baseline.

Per (N, k) and per image: exact and neighbourhood tag P/R/F1 of the attack and of two baselines that
need no victim embedding beyond what an attacker already has --
  frequent   the k most frequent training tags (the prior)
  nearest    the tags of the nearest public image in attack space (retrieval by neighbour, not by tag)
-- plus the oracle (tags retrieved from the image's true attacker embedding) as the ceiling.
Differences attack - baseline come with a paired bootstrap 95% interval over images.
Captions (optional writer): best-match BLEU-4/ROUGE/METEOR of the victim's caption against the human references,
beside three baselines -- a random public caption (the prior), the nearest public image's caption, the bare tag
string -- and the oracle's caption (written from the attacker's own embedding). As in the paper's dual-reference
protocol, the victim's caption is also scored against the oracle's caption.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from slime_core.attack_captions import mean_embedding_caption, random_public_captions, write_captions
from slime_core.attack_spec import AttackSpec
from slime_core.experiments.objects_eval import ObjectsEval
from slime_core.infra.errors import SlimeError
from slime_core.pipeline import Attacker, check_held_out
from slime_core.stages.caption_metrics import KEYS, score_caption
from slime_core.stages.data import Sample
from slime_core.stages.infer import graph_from_tags, object_f1, relation_f1
from slime_core.stages.metrics import TAG_METRICS, Estimate, NeighbourhoodScorer, paired_difference, tag_scores
from slime_core.stages.tags import make_parser, tags_of_captions
from slime_core.stages.write import check_final_parts, final_prompt_from

BASELINES = ("frequent", "nearest")
GRID = AttackSpec(n_align=(10, 30, 100, 300), k=(1, 5, 10, 20))  # the default N x k grid of `slime eval`


@dataclass
class TagRow:
    """One (N, k) point of `slime eval`: the tags' leakage beside their baselines. A metric's entry holds the
    attack's mean and interval ("attack", "ci_low", "ci_high"), each baseline's mean under its name and the
    paired differences to the priors ("vs_frequent", "vs_nearest")."""

    n_align: int
    k: int
    alignment_cosine: dict  # {"heldout": the fit's held-out pairs, "test", "ci_low", "ci_high": the test images}
    metrics: dict  # TAG_METRICS -> entry
    against_oracle_tags: dict  # TAG_METRICS -> mean: the same tags scored against the oracle's
    scene_graph: dict  # object/relation/relation-type F1 -> entry (baseline: the most frequent tags' graph)
    objects: dict | None = None  # the low-fidelity image's detected objects (`ObjectsEval.row`), with a maker only

    def to_dict(self) -> dict:
        row = asdict(self)
        if self.objects is None:  # the JSON has no "objects" key without a low-fidelity maker
            del row["objects"]
        return row


@dataclass
class CaptionRow:
    """The captions at one N: each caption metric of the attack beside every other system (`caption_systems`)."""

    n_align: int
    k: int
    writer: str
    mode: str
    metrics: dict  # caption metric (`caption_metrics.KEYS`) -> entry, with "vs_<prior>" differences
    examples: list[dict]  # the first five images: every system's caption and the references
    mean_embedding_caption: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Evaluation:
    """What `evaluate` returns; `to_dict()` is the `slime eval` JSON that reports, the app and bench/ read."""

    victim: str
    attacker: str
    method: str
    n_images: int
    seed: int
    bootstrap: int
    rows: list[TagRow] = field(default_factory=list)  # one per (N, k), N-major
    captions: list[CaptionRow] = field(default_factory=list)  # one per N, with a writer only

    def to_dict(self) -> dict:
        head = {name: getattr(self, name) for name in ("victim", "attacker", "method", "n_images", "seed",
                                                       "bootstrap")}
        return {**head, "rows": [r.to_dict() for r in self.rows], "captions": [c.to_dict() for c in self.captions]}


def attack_entry(values, n_boot: int, seed: int) -> dict:
    """The attack's `Estimate` in the `slime eval` layout: its mean as "attack", beside which each metric's
    entry puts the baselines' means and the paired `Difference`s to them ("vs_<baseline>")."""
    e = Estimate.bootstrap(values, n_boot, seed)
    return {"attack": e.mean, "ci_low": e.ci_low, "ci_high": e.ci_high}


def summarise(attack: dict, baselines: dict[str, dict], n_boot: int, seed: int) -> dict:
    out = {}
    for m in TAG_METRICS:
        entry = attack_entry(attack[m], n_boot, seed)
        for name, scores in baselines.items():
            entry[name] = float(scores[m].mean())
            if name in BASELINES:
                entry[f"vs_{name}"] = paired_difference(attack[m], scores[m], n_boot, seed)
        out[m] = entry
    return out


def reference_tags(attacker: Attacker, samples: list[Sample], parser=None, scorer: NeighbourhoodScorer | None = None,
                   progress: bool = False, refs=None) -> tuple[list[list[str]], NeighbourhoodScorer]:
    """The tags of each sample's own captions (or `refs`, tagged before), and a scorer whose near-synonyms of them
    are already encoded."""
    if refs is None:
        parser = parser or make_parser("spacy")
        refs = [list(tags_of_captions(s.captions, parser))
                for s in tqdm(samples, desc="tagging references", disable=not progress)]
    scorer = scorer if scorer is not None else attacker.scorer()
    scorer.neighbours(sorted({t for r in refs for t in r}))  # one batched text-encoder pass, not one per image
    return refs, scorer


@dataclass
class _Prepared:
    """What every N x k point of an evaluation shares: the test images' embeddings, reference tags and the
    baselines that do not depend on N."""

    X: np.ndarray  # (n, d_victim) victim embeddings of the test images
    A: np.ndarray  # (n, d_attack) their true attacker embeddings
    refs: list[list[str]]
    scorer: NeighbourhoodScorer
    oracle: list[list[str]]  # the attacker's own embedding's top tags (no alignment)
    fixed: dict  # k -> {"frequent", "oracle"}: tag scores of the baselines that do not depend on N
    ref_graphs: list
    objects: ObjectsEval


def _prepare(attacker: Attacker, samples: list[Sample], spec: AttackSpec, parser, scorer, lowfi, n_boot: int,
             progress: bool, report) -> _Prepared:
    report(0.0, f"tagging the references of {len(samples)} images")
    refs, scorer = reference_tags(attacker, samples, parser, scorer, progress)
    report(0.05, f"embedding {len(samples)} images")
    paths = [str(s.path) for s in samples]
    X = attacker.embed(spec.victim, paths, progress=progress)
    A = attacker.embed(attacker.bundle.image_encoder, paths, progress=progress)
    oracle = attacker.attack_aligned(A, max(spec.k)).tags
    fixed = {k: {"frequent": tag_scores([attacker.frequent_tags(k)] * len(refs), refs, scorer),
                 "oracle": tag_scores([t[:k] for t in oracle], refs, scorer)} for k in spec.k}
    return _Prepared(X, A, refs, scorer, oracle, fixed, [graph_from_tags(r) for r in refs],
                     ObjectsEval(attacker, paths, lowfi, n_boot, spec.seed, progress))


def evaluate(attacker: Attacker, samples: list[Sample], *, spec: AttackSpec = GRID, writer=None, caption_k: int = 10,
             n_boot: int = 1000, progress: bool = True, parser=None, scorer: NeighbourhoodScorer | None = None,
             on_progress=None, final_from: tuple[str, ...] = (), lowfi=None) -> Evaluation:
    """Every N x k of `spec` on `samples` (checked against the attacker before any work). parser, scorer: reuse
    loaded ones (an app keeps them); on_progress(fraction, message) after each stage. lowfi: a low-fidelity image
    maker (`lowfi.make_lowfi`) whose images' detected objects are scored too."""
    samples = [s for s in samples if s.path is not None]
    if not samples:
        raise SlimeError("no images to evaluate (the split has captions only).")
    spec.within(attacker)
    final_from = check_final_parts(final_from)
    seed, n_aligns = spec.seed, spec.n_align
    report = on_progress or (lambda fraction, message: None)
    check_held_out(attacker, samples)
    p = _prepare(attacker, samples, spec, parser, scorer, lowfi, n_boot, progress, report)
    oracle_caps, priors = caption_priors(attacker, writer, len(samples), p.oracle, p.A, caption_k, seed, progress) \
        if writer is not None else (None, None)
    result = Evaluation(spec.victim, attacker.bundle.attacker, spec.method, len(samples), seed, n_boot)
    for step, n in enumerate(tqdm(list(n_aligns), desc="alignment sizes", disable=not progress)):
        report(0.1 + 0.9 * step / len(n_aligns), f"N={n}: aligning, retrieving, scoring")
        fit = attacker.alignment(spec.victim, n, spec.method, seed)
        batch = attacker.attack_batch(fit, p.X, max(spec.k), A_true=p.A)
        result.rows += tag_rows(attacker, p, fit, batch, n, spec.k, n_boot, seed)
        if writer is not None:
            aligned, tags = batch.aligned, batch.tags
            caps = write_captions(attacker, writer, tags, aligned, caption_k, f"N={n}", progress)
            finals = final_captions(writer, tags, caption_k, final_from, progress) if final_from else None
            systems = caption_systems(attacker, caps, oracle_caps, priors, tags, attacker.neighbours(aligned, 1),
                                      caption_k, finals)
            result.captions.append(caption_rows(samples, systems, n, caption_k, writer, n_boot, seed))
    report(1.0, "done")
    return result


def tag_rows(attacker: Attacker, p: _Prepared, fit, batch, n: int, ks, n_boot: int, seed: int) -> list[TagRow]:
    """One row per k at this N: the alignment cosine, every tag metric beside its baselines, the scene graph's
    scores and (with a low-fidelity maker) the objects'."""
    cos_est = Estimate.bootstrap(batch.cosines, n_boot, seed)
    tags = batch.tags
    nearest = attacker.neighbour_tags(batch.aligned, max(ks))
    seen = p.objects.per_alignment(batch.aligned) if p.objects.pool is not None else None
    rows = []
    for k in ks:
        top = [t[:k] for t in tags]
        base = {"frequent": p.fixed[k]["frequent"], "nearest": tag_scores([t[:k] for t in nearest], p.refs, p.scorer),
                "oracle": p.fixed[k]["oracle"]}
        # The same tags scored against the oracle's tags: how much of what the attacker's own embedding
        # would reveal survives alignment.
        vs_oracle = tag_scores(top, [t[:k] for t in p.oracle], p.scorer)
        rows.append(TagRow(n, k,
                           alignment_cosine={"heldout": fit.heldout_cosine, "test": cos_est.mean,
                                             "ci_low": cos_est.ci_low, "ci_high": cos_est.ci_high},
                           metrics=summarise(tag_scores(top, p.refs, p.scorer), base, n_boot, seed),
                           against_oracle_tags={m: float(v.mean()) for m, v in vs_oracle.items()},
                           scene_graph=graph_scores(top, attacker.frequent_tags(k), p.ref_graphs, n_boot, seed),
                           objects=p.objects.row(seen, top) if seen is not None else None))
    return rows


def caption_priors(attacker: Attacker, writer, n: int, oracle, A, k: int, seed: int, progress: bool):
    """(the oracle's captions, {"random_caption", "mean_embedding_caption"} -> one caption per image). None of
    these depends on N, so they are written once -- and no pool captions fails here, before any attack caption."""
    priors = {"random_caption": random_public_captions(attacker, n, seed),
              "mean_embedding_caption": [mean_embedding_caption(attacker, writer, k)] * n}
    oracle_caps = write_captions(attacker, writer, oracle, A, k, "oracle", progress)
    return oracle_caps, priors


def graph_scores(pred_tags: list[list[str]], frequent: list[str], ref_graphs, n_boot: int, seed: int) -> dict:
    """Object F1, relation F1 (ordered subject-object pairs, the verb phrases included) and relation-type F1 (the
    multiset of the paper's predicate types, `infer.PREDICATES`, of the typed relations) of the scene graph built
    from the retrieved tags against the one built from the reference tags, beside the most-frequent-tags graph.
    As in `infer`'s P/R/F1, an image where both sides are empty scores 0."""
    def per_image(tag_lists):
        objs, rels, types = [], [], []
        for tags, ref in zip(tag_lists, ref_graphs):
            g = graph_from_tags(tags)
            objs.append(object_f1(g.objects, ref.objects)["f1"])
            rels.append(relation_f1(g.relations + g.raw_relations, ref.relations + ref.raw_relations)["pair"]["f1"])
            types.append(relation_f1(g.relations, ref.relations)["predicate"]["f1"])
        return {"object_f1": np.array(objs), "relation_f1": np.array(rels), "relation_type_f1": np.array(types)}

    attack, prior = per_image(pred_tags), per_image([frequent] * len(ref_graphs))
    out = {}
    for m in attack:
        out[m] = {**attack_entry(attack[m], n_boot, seed), "frequent": float(prior[m].mean()),
                  "vs_frequent": paired_difference(attack[m], prior[m], n_boot, seed)}
    return out


def final_captions(writer, tags, k: int, parts: tuple[str, ...], progress: bool) -> list[str]:
    """The paper's ablation: a caption written only from chosen parts of the scene graph of the top-k tags ("" where
    those parts are empty)."""
    if not hasattr(writer, "write_prompt"):
        raise SlimeError("final captions need an LLM writer (--caption local or a litellm model).")
    out = []
    for t in tqdm(tags, desc=f"final captions ({'+'.join(parts)})", disable=not progress):
        prompt = final_prompt_from(asdict(graph_from_tags(t[:k])), parts)
        out.append(writer.write_prompt(prompt).text if prompt else "")
    return out


def caption_systems(attacker: Attacker, caps, oracle_caps, priors: dict, tags, near, k: int,
                    finals: list[str] | None = None) -> dict[str, list[str]]:
    """Every caption scored, one per sample: the attack's, the oracle's, the priors ({"random_caption",
    "mean_embedding_caption"}), the nearest public image's, the bare tag string and, for the ablation, the finals."""
    systems = {
        "attack": caps,
        "oracle": oracle_caps,
        **priors,
        "nearest_caption": [(attacker.captions_of([nb[0][0]]) or [""])[0] for nb in near],
        "tag_string": [", ".join(t[:k]) for t in tags],
    }
    if finals is not None:
        systems["final_caption"] = finals
    return systems


def caption_rows(samples, systems: dict[str, list[str]], n: int, k: int, writer, n_boot: int,
                 seed: int) -> CaptionRow:
    """Each caption metric of the attack with its interval, beside every other system and its paired differences
    to the three priors."""
    caps, oracle_caps = systems["attack"], systems["oracle"]
    scores = {name: [score_caption(c, s.captions) for c, s in zip(texts, samples)] for name, texts in systems.items()}
    vs_oracle = [score_caption(c, [o]) for c, o in zip(caps, oracle_caps)]
    metrics = {}
    for key in KEYS:
        per = {name: np.array([x[key] for x in rows]) for name, rows in scores.items()}
        metrics[key] = {**attack_entry(per["attack"], n_boot, seed),
                        **{name: float(v.mean()) for name, v in per.items() if name != "attack"},
                        "vs_random_caption": paired_difference(per["attack"], per["random_caption"], n_boot, seed),
                        "vs_mean_embedding_caption": paired_difference(per["attack"], per["mean_embedding_caption"],
                                                                       n_boot, seed),
                        "vs_nearest_caption": paired_difference(per["attack"], per["nearest_caption"], n_boot, seed),
                        "against_oracle_caption": float(np.mean([x[key] for x in vs_oracle]))}
    examples = [{"image": s.name, **{name: texts[i] for name, texts in systems.items()}, "references": s.captions}
                for i, s in enumerate(samples[:5])]
    return CaptionRow(n, k, writer.model, writer.mode, metrics, examples, systems["mean_embedding_caption"][0])


