"""Plain-text tables: `slime eval` (one line per (N, k)) and `slime defend` (one line per strength)."""

from __future__ import annotations

import math

from slime_core.stages.defences import defence_spec

GRAPH_METRICS = ("object_f1", "relation_f1", "relation_type_f1")  # graph_scores' keys, in table order


def evaluation_table(result: dict) -> str:
    """Plain-text table of `slime eval`: one line per (N, k)."""
    head = (f"victim {result['victim']} -> attacker {result['attacker']} ({result['method']}), {result['n_images']} images; "
            f"attack P, R, F1 [95% CI] | F1 of most-frequent tags | nearest public image | oracle; d = attack F1 - most-frequent [95% CI]")
    cols = f"{'N':>5} {'k':>3} {'cos':>6} | {'P':>5} {'R':>5} {'exact F1':>22} {'freq':>6} {'near':>6} {'orac':>6} {'d':>22} | " \
           f"{'P':>5} {'R':>5} {'neigh F1':>22} {'freq':>6} {'near':>6} {'orac':>6} {'d':>22}"
    lines = [head, cols, "-" * len(cols)]
    for row in result["rows"]:
        cells = [f"{row['n_align']:>5} {row['k']:>3} {row['alignment_cosine']['test']:>6.3f}"]
        for kind in ("exact", "neighbourhood"):
            m = row["metrics"]
            e, d = m[f"{kind}_f1"], m[f"{kind}_f1"]["vs_frequent"]
            cells.append(f"{m[f'{kind}_precision']['attack']:>5.3f} {m[f'{kind}_recall']['attack']:>5.3f} "
                         + f"{e['attack']:.3f} [{e['ci_low']:.3f},{e['ci_high']:.3f}]".rjust(22)
                         + f" {e['frequent']:>6.3f} {e['nearest']:>6.3f} {e['oracle']:>6.3f} "
                         + f"{d['diff']:+.3f} [{d['ci_low']:+.3f},{d['ci_high']:+.3f}]".rjust(22))
        lines.append(" | ".join(cells))
    lines.append("scene graph from the top-k tags vs from the reference tags: attack F1 [95% CI] | most-frequent tags "
                 "(relation: subject-object pairs; relation_type: the predicate types on, under, next_to, ...)")
    for row in result["rows"]:
        g = row["scene_graph"]
        lines.append(f"{row['n_align']:>5} {row['k']:>3}  " + "   ".join(
            f"{m} {g[m]['attack']:.3f} [{g[m]['ci_low']:.3f},{g[m]['ci_high']:.3f}] | {g[m]['frequent']:.3f}"
            for m in GRAPH_METRICS if m in g))  # results saved before relation_type_f1 lack it
    lines += objects_lines(result["rows"])
    for cap in result["captions"]:
        lines.append(f"captions N={cap['n_align']} k={cap['k']} ({cap['writer']}, mode {cap['mode']}): attack [95% CI] | "
                     f"random public caption | caption of the mean public embedding | nearest image's caption | "
                     f"tag string | oracle | d vs random [95% CI] | d vs mean-embedding caption [95% CI] | "
                     f"vs oracle caption; mean-embedding caption: \"{cap['mean_embedding_caption']}\"")
        for key, v in cap["metrics"].items():
            d, dm = v["vs_random_caption"], v["vs_mean_embedding_caption"]
            lines.append(f"  {key:>7} {v['attack']:.3f} [{v['ci_low']:.3f},{v['ci_high']:.3f}] | {v['random_caption']:.3f} | "
                         f"{v['mean_embedding_caption']:.3f} | {v['nearest_caption']:.3f} | {v['tag_string']:.3f} | "
                         f"{v['oracle']:.3f} | {d['diff']:+.3f} [{d['ci_low']:+.3f},{d['ci_high']:+.3f}] | "
                         f"{dm['diff']:+.3f} [{dm['ci_low']:+.3f},{dm['ci_high']:+.3f}] | {v['against_oracle_caption']:.3f}"
                         + (f" | final caption {v['final_caption']:.3f}" if "final_caption" in v else ""))
    return "\n".join(lines)


def objects_lines(rows: list[dict]) -> list[str]:
    """Object F1 against the detector's objects on the original photo, per source, beside the prior's."""
    rows = [r for r in rows if "objects" in r]  # bundles without stored pool detections, or older results
    if not rows:
        return []
    prior = rows[0]["objects"]["prior"]
    out = [f"objects (COCO classes detected on the original photo): F1 [95% CI], d vs the prior {prior['objects']} "
           f"(F1 {prior['f1']['mean']:.3f}) [95% CI]; sources: tags' nouns, the nearest public photo's detections, "
           f"detections on the generated image (with --lowfi), their union"]
    for r in rows:
        o = r["objects"]
        out.append(f"{r['n_align']:>5} {r['k']:>3}  " + "   ".join(
            f"{name} {v['f1']['mean']:.3f} [{v['f1']['ci_low']:.3f},{v['f1']['ci_high']:.3f}] "
            f"{v['vs_prior']['diff']:+.3f} [{v['vs_prior']['ci_low']:+.3f},{v['vs_prior']['ci_high']:+.3f}]"
            for name, v in o.items() if name != "prior"))
    return out


def fmt_strength(s: float) -> str:
    return "inf" if math.isinf(s) else f"{s:g}"


def non_adaptive_points(rows: list[dict]) -> list[tuple[float, float]]:
    """(recall@1, neighbourhood F1) of the non-adaptive attacker, for the rows where its old map applies."""
    return [(r["utility"]["recall_at_1"], r["leakage"]["non_adaptive"]["neighbourhood_f1"]) for r in rows
            if (r["leakage"].get("non_adaptive") or {}).get("applicable")]


def knee_label(r: dict) -> str:
    return " ".join(x for x, on in (("<- knee", r.get("knee")), ("<- stops the leak", r.get("stops_leak"))) if on)


def optional_cells(r: dict) -> list[tuple[str, str]]:
    """(header, cell) for the measurements only some runs have: caption ROUGE-L (a writer was configured),
    the non-adaptive attacker (rows measured since it was added) and zero-shot tag F1 (a dual-encoder victim)."""
    out = []
    if "caption_rouge_l" in r["leakage"]:
        lk, dv = r["leakage"], r["leakage"]["caption_rouge_l_vs_mean_embedding_caption"]
        out.append(("caption ROUGE-L, d vs mean-embedding caption [95% CI]",
                    f"{lk['caption_rouge_l']:.3f} {dv['diff']:+.3f} [{dv['ci_low']:+.3f},{dv['ci_high']:+.3f}]"))
    na = r["leakage"].get("non_adaptive")
    if na is not None:
        cell = "n/a (dimension changed)"
        if na["applicable"]:
            dv = na["neighbourhood_f1_vs_frequent"]
            cell = f"{na['neighbourhood_f1']:.3f} {dv['diff']:+.3f} [{dv['ci_low']:+.3f},{dv['ci_high']:+.3f}]"
        out.append(("non-adaptive attacker (pre-defence pairs): neigh F1, d vs freq [95% CI]", cell))
    if "zero_shot_tag_f1" in r["utility"]:
        out.append(("zero-shot tag F1", f"{r['utility']['zero_shot_tag_f1']:.3f}"))
    return out


def defence_table(rows: list[dict]) -> str:
    """Plain-text table of one defence curve: one line per strength (`slime defend`)."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    base = r0["baselines"]["frequent"]
    lines = [f"defence {r0['defence']} ({defence_spec(r0['defence']).strength}); victim {r0['victim']} -> {r0['attacker']}, "
             f"N={r0['n_align']} refitted on defended pairs, k={r0['k']}, {r0['n_images']} test images",
             f"prior baseline (k most frequent tags): tag F1 {base['exact_f1']:.3f}, neighbourhood F1 "
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
                     f"{lk['exact_f1']:.3f} [{lk['exact_f1_ci'][0]:.3f},{lk['exact_f1_ci'][1]:.3f}]"
                     + f" | {lk['neighbourhood_f1']:.3f} [{lk['neighbourhood_f1_ci'][0]:.3f},{lk['neighbourhood_f1_ci'][1]:.3f}] "
                     + f"{dv['diff']:+.3f} [{dv['ci_low']:+.3f},{dv['ci_high']:+.3f}]".rjust(23)
                     + f" | {ut['recall_at_1']:>5.3f} {ut['recall_at_5']:>5.3f} | {knee_label(r)}"
                     + "".join(f" | {cell}" for _, cell in optional_cells(r)))
    return "\n".join(lines)
