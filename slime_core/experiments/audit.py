"""The audit report: one self-contained HTML file (plus the same numbers as JSON).

Sections: threat model; models used; alignment cosine vs N; leakage per k beside the prior baselines;
example images with what leaked; defence curves (leakage vs utility, knee marked); the paper's reference
figures, only when a file of them is given, drawn apart and labelled as the paper's. Every other number
comes from this run. Images are embedded as base64 JPEG thumbnails and plotly.js is inlined once, so
the file opens offline in any browser.

    report = build_report(attacker, samples, victim="lite0", defences={"noise": [0, 0.05, 0.1]})
    html_path, json_path = write_report(report, "report.html")
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from slime_core import settings
from slime_core import curves as _curves
from slime_core.defend import DEFENCES, SPECS, spec
from slime_core.errors import SlimeError
from slime_core.evaluate import tag_scores
from slime_core.metrics import bootstrap_ci

THREAT_MODEL = [
    ("Owner", "embeds its private images with an image encoder (the victim) and releases or stores the "
              "embeddings: a vector database, an embedding API, a shared feature file."),
    ("Attacker", "obtains victim embeddings but not the images. It owns a different encoder (here a dual "
                 "image-text encoder trained offline) and a public pool of images it can embed itself."),
    ("Leaked pairs", "the attacker also holds N (victim embedding, public image) pairs, e.g. public images the "
                     "owner embedded too, and fits a map from the victim space into its own space on them."),
    ("Goal", "read semantics off the private embeddings: relational tags (\"dog chase ball\"), the nearest "
             "public images, a caption."),
    ("Measured", "on held-out test images never seen by the attacker: tag F1 (exact and near-synonym) against "
                 "the tags of the images' own captions, beside the prior baseline (the k most frequent tags, "
                 "which needs no embedding at all): only what beats the prior has leaked."),
    ("Defended", "the owner transforms every embedding before release; the attacker adapts by refitting its map "
                 "on defended pairs. Utility = the embedding's own job, image-to-image retrieval."),
]


def _thumb(path, size: int = 144) -> str | None:
    """A base64 JPEG data URI of an image file, or None when the file is absent/unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=72)
    except (OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _ci(values, n_boot, seed) -> dict:
    mean, lo, hi = bootstrap_ci(values, n_boot, seed)
    return {"mean": mean, "ci_low": lo, "ci_high": hi}


def jsonable(obj):
    """inf/nan -> strings, numpy -> python, so the JSON is standard."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else ("inf" if f > 0 else "-inf" if f < 0 else "nan")
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    return obj


def attack_grid(setup: "_curves.Setup", n_aligns, ks) -> dict:
    """Undefended attack: alignment cosine per N and tag F1 per (N, k), beside the frequent-tag prior."""
    attacker, n_boot, seed = setup.attacker, setup.n_boot, setup.seed
    pool = attacker.pool_attack
    A = setup.A_test / np.linalg.norm(setup.A_test, axis=1, keepdims=True)
    kmax = max(ks)
    rows, by_n = [], []
    freq = {k: tag_scores([attacker.frequent_tags(k)] * len(setup.refs), setup.refs, setup.scorer) for k in ks}
    from slime_core import align

    for n in n_aligns:
        idx = align.choose_pairs(len(pool), n, seed)
        fit = align.fit_alignment(setup.X_pool[idx], pool[idx], setup.method)
        aligned = fit.transform(setup.X_test)
        cos = np.sum(aligned * A, axis=1)
        by_n.append({"n_align": n, "heldout_cosine": fit.heldout_cosine, "test_cosine": _ci(cos, n_boot, seed)})
        tags = [[t for t, _ in row] for row in attacker.retrieve(aligned, kmax)]
        for k in ks:
            sc = tag_scores([t[:k] for t in tags], setup.refs, setup.scorer)
            rows.append({"n_align": n, "k": k,
                         "tag_f1": _ci(sc["exact_f1"], n_boot, seed),
                         "neighbourhood_f1": _ci(sc["neighbourhood_f1"], n_boot, seed),
                         "frequent": {"tag_f1": float(freq[k]["exact_f1"].mean()),
                                      "neighbourhood_f1": float(freq[k]["neighbourhood_f1"].mean())}})
    return {"alignment_vs_n": by_n, "leakage": rows}


def examples(setup: "_curves.Setup", samples, n: int = 6, seed: int = 0, thumbs: bool = True) -> list[dict]:
    """A few test images with the tags the undefended attack read off their embeddings, each marked
    exact (in the image's own caption tags), near (a near-synonym of one) or miss."""
    from slime_core import align

    attacker = setup.attacker
    samples = [s for s in samples if s.path is not None]
    pick = np.sort(np.random.default_rng(seed).choice(len(samples), size=min(n, len(samples)), replace=False))
    idx = setup.idx
    fit = align.fit_alignment(setup.X_pool[idx], attacker.pool_attack[idx], setup.method)
    aligned = fit.transform(setup.X_test[pick])
    tags = attacker.retrieve(aligned, setup.k)
    near = attacker.neighbours(aligned, 3)
    out = []
    for j, i in enumerate(pick):
        s, refs = samples[i], setup.refs[i]
        covered = set().union(*setup.scorer.neighbours(refs)) if refs else set()
        marked = [{"tag": t, "score": round(sc, 3), "match": "exact" if t in refs else "near" if t in covered else "miss"}
                  for t, sc in tags[j]]
        item = {"image": s.name, "caption": s.captions[0] if s.captions else "", "tags": marked,
                "frequent_tags": attacker.frequent_tags(setup.k),
                "neighbours": [{"image": name, "score": round(sc, 3)} for name, sc in near[j]]}
        if thumbs:
            item["thumbnail"] = _thumb(s.path)
            for nb in item["neighbours"]:
                nb["thumbnail"] = _thumb(Path(attacker.data) / "images" / nb["image"], 96)
        out.append(item)
    return out


PAPER_FIGURES_ENV = "SLIME_PAPER_FIGURES"


def paper_figures_path() -> Path | None:
    """The hand-transcribed figures file named by $SLIME_PAPER_FIGURES (used by the About page and as
    `slime report`'s default), or None. None ships with the repository: no copy of the paper's results was
    reachable where it was built, and none are invented."""
    return settings.paper_figures()


def load_paper_figures(path) -> dict:
    """A JSON file of the paper's figures, transcribed by hand: {"source": "...", "figures": [{"title",
    "x_label", "y_label", "series": [{"name", "x": [...], "y": [...]}], "note"}]}."""
    try:
        data = json.loads(Path(path).read_text())
        figs = data["figures"]
        for f in figs:
            for s in f["series"]:
                if len(s["x"]) != len(s["y"]):
                    raise ValueError(f"series {s.get('name')!r}: x and y differ in length")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise SlimeError(f"paper figures {path}: not a valid figures file ({err}).") from None
    return data


def build_report(attacker, samples, victim: str = "lite0", defences: dict | None = None,
                 n_aligns=(10, 30, 100, 300), ks=(1, 5, 10, 20), n_align: int = 300, k: int = 10,
                 method: str = "ridge", seed: int = 0, n_examples: int = 6, n_boot: int = 1000,
                 paper_figures=None, data_label: str | None = None, setup=None, progress: bool = False) -> dict:
    """Run everything the report shows and return it as one dict (`write_report` renders it).
    `defences`: name -> strengths; None = every defence at its default strengths; {} = no curves."""
    samples = [s for s in samples if s.path is not None]
    if defences is None:
        defences = {name: list(SPECS[name].default_strengths) for name in DEFENCES}
    for name in defences:
        spec(name)
    pool_size = len(attacker.pool_attack)
    from slime_core.evaluate import check_grid

    check_grid(list(n_aligns) + [n_align], list(ks) + [k], pool_size)
    if setup is None:
        setup = _curves.prepare(attacker, samples, victim, n_align, k, method, seed, n_boot, progress)
    grid = attack_grid(setup, list(n_aligns), list(ks))
    curves = _curves.all_curves(setup, defences, progress) if defences else {}
    b = attacker.bundle
    from slime_core.encoders import encoder_spec

    def about(name):
        try:
            return encoder_spec(name)
        except SlimeError:
            return {"about": "an encoder outside the registry (pool embeddings supplied by the user)"}

    report = {
        "title": f"SLImE audit: semantic leakage from {victim} image embeddings",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "threat_model": [{"role": r, "text": t} for r, t in THREAT_MODEL],
        "models": {
            "victim": {"name": victim, **about(victim)},
            "attacker": {"name": b.attacker, "image_encoder": {"name": b.image_encoder, **about(b.image_encoder)},
                         "text_encoder": b.manifest.get("text_encoder"), "dims": b.manifest.get("dims"),
                         "training_data": b.manifest.get("training_data"), "vocabulary": len(b.tags),
                         "public_pool": pool_size},
            "alignment": {"method": method, "seed": seed, "n_align": n_align},
        },
        "data": {"folder": data_label or str(attacker.data), "test_images": len(samples)},
        "settings": {"n_aligns": list(n_aligns), "ks": list(ks), "n_align": n_align, "k": k, "bootstrap": n_boot},
        "attack": grid,
        "examples": examples(setup, samples, n_examples, seed),
        "defences": {name: {"spec": {"strength": SPECS[name].strength, "protects": SPECS[name].protects,
                                     "does_not_protect": SPECS[name].does_not}, "rows": rows}
                     for name, rows in curves.items()},
        "undefended": setup.undefended,
        "paper_figures": load_paper_figures(paper_figures) if paper_figures else None,
    }
    return report


# --- rendering ---------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.note{color:#555;font-size:.9em}
.ex{display:flex;gap:1em;border:1px solid #eee;padding:.6em;margin:.6em 0}.ex img{border-radius:4px}
.tag{display:inline-block;padding:1px 6px;margin:2px;border-radius:10px;font-size:.85em}
.exact{background:#c8e6c9}.near{background:#fff3b0}.miss{background:#eee;color:#777}
.paper{border:3px dashed #b36b00;background:#fff8ec;padding:.5em 1em}.paper h2{color:#b36b00}
.nbs img{margin-right:4px}
"""


def _fmt(v, nd=3):
    if isinstance(v, str):
        return v
    return "inf" if isinstance(v, float) and math.isinf(v) else f"{v:.{nd}f}"


def _figure_cos_vs_n(report):
    import plotly.graph_objects as go

    rows = report["attack"]["alignment_vs_n"]
    x = [r["n_align"] for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=[r["test_cosine"]["mean"] for r in rows], mode="lines+markers",
                             name="test cosine (95% CI)",
                             error_y={"type": "data", "symmetric": False,
                                      "array": [r["test_cosine"]["ci_high"] - r["test_cosine"]["mean"] for r in rows],
                                      "arrayminus": [r["test_cosine"]["mean"] - r["test_cosine"]["ci_low"] for r in rows]}))
    fig.add_trace(go.Scatter(x=x, y=[r["heldout_cosine"] for r in rows], mode="lines+markers", name="held-out pool pairs",
                             line={"dash": "dot"}))
    prior = (report.get("undefended") or {}).get("baselines", {}).get("frequent", {}).get("alignment_cosine")
    if prior is not None:
        fig.add_hline(y=prior, line_dash="dash", line_color="gray",
                      annotation_text="prior: every image guessed as the mean public embedding")
    fig.update_layout(title="Alignment cosine vs N leaked pairs (this run)", xaxis_title="N (log)", xaxis_type="log",
                      yaxis_title="mean cosine(aligned, true attacker embedding)", template="plotly_white", height=380)
    return fig


def _figure_leak_per_k(report):
    import plotly.graph_objects as go

    n = report["settings"]["n_align"]
    rows = [r for r in report["attack"]["leakage"] if r["n_align"] == n] or report["attack"]["leakage"]
    n = rows[0]["n_align"]
    x = [r["k"] for r in rows]
    fig = go.Figure()
    for key, label, colour in (("neighbourhood_f1", "neighbourhood F1", "#1f77b4"), ("tag_f1", "exact tag F1", "#ff7f0e")):
        fig.add_trace(go.Scatter(x=x, y=[r[key]["mean"] for r in rows], mode="lines+markers", name=f"attack: {label}",
                                 line={"color": colour},
                                 error_y={"type": "data", "symmetric": False,
                                          "array": [r[key]["ci_high"] - r[key]["mean"] for r in rows],
                                          "arrayminus": [r[key]["mean"] - r[key]["ci_low"] for r in rows]}))
        fig.add_trace(go.Scatter(x=x, y=[r["frequent"][key] for r in rows], mode="lines+markers",
                                 name=f"prior (most frequent tags): {label}", line={"color": colour, "dash": "dash"}))
    fig.update_layout(title=f"Leakage per k at N={n} (this run), beside the prior", xaxis_title="k (tags retrieved)",
                      yaxis_title="F1", template="plotly_white", height=380)
    return fig


def paper_figure(fig_spec):
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in fig_spec["series"]:
        fig.add_trace(go.Scatter(x=s["x"], y=s["y"], mode="lines+markers", name=s.get("name", "")))
    fig.update_layout(title="THE PAPER'S FIGURE (not this run): " + fig_spec.get("title", ""),
                      xaxis_title=fig_spec.get("x_label", ""), yaxis_title=fig_spec.get("y_label", ""),
                      template="plotly_white", height=360, paper_bgcolor="#fff8ec")
    return fig


def render_html(report: dict) -> str:
    import plotly.offline

    e = html.escape
    div = lambda fig: fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report['title'])}</title>",
             f"<style>{CSS}</style><script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head><body>",
             f"<h1>{e(report['title'])}</h1>",
             f"<p class='note'>Created {e(report['created'])} by <code>slime report</code>. Every number and figure below "
             f"comes from this run, except the section marked as the paper's. Data: {e(report['data']['folder'])}, "
             f"{report['data']['test_images']} held-out test images.</p>"]
    und = report["undefended"]
    if und:
        lk, base = und["leakage"], und["baselines"]["frequent"]
        d = lk["neighbourhood_f1_vs_frequent"]
        parts.append(f"<p><b>Summary.</b> With N={und['n_align']} leaked pairs the attacker maps {e(und['victim'])} embeddings "
                     f"into its space with mean cosine {lk['alignment_cosine']:.3f} (guessing the mean public embedding "
                     f"gives {base.get('alignment_cosine', float('nan')):.3f}); its top-{und['k']} tags reach neighbourhood "
                     f"F1 {lk['neighbourhood_f1']:.3f} (exact {lk['tag_f1']:.3f}) against {base['neighbourhood_f1']:.3f} "
                     f"({base['tag_f1']:.3f}) for the prior that needs no embedding: a difference of {d['diff']:+.3f} "
                     f"[95% CI {d['ci_low']:+.3f}, {d['ci_high']:+.3f}]."
                     + (_caption_sentence(und) if "caption_rouge_l" in lk else "") + "</p>")
    parts.append("<h2>Threat model</h2><table>" + "".join(
        f"<tr><th class='l'>{e(t['role'])}</th><td class='l'>{e(t['text'])}</td></tr>" for t in report["threat_model"]) + "</table>")
    m = report["models"]
    att = m["attacker"]
    parts.append("<h2>Models used</h2><table>"
                 f"<tr><th class='l'>victim</th><td class='l'>{e(m['victim']['name'])}: {e(str(m['victim'].get('about', '')))}</td></tr>"
                 f"<tr><th class='l'>attacker</th><td class='l'>{e(att['name'])}: image tower {e(att['image_encoder']['name'])} "
                 f"({e(str(att['image_encoder'].get('about', '')))}), text encoder {e(str(att['text_encoder']))}; "
                 f"{att['vocabulary']} tags; public pool {att['public_pool']} images; trained on {e(json.dumps(att['training_data']))}</td></tr>"
                 f"<tr><th class='l'>alignment</th><td class='l'>{e(m['alignment']['method'])}, N={m['alignment']['n_align']} "
                 f"(pair draw seed {m['alignment']['seed']})</td></tr></table>")
    parts.append("<h2>Alignment cosine vs N</h2>" + div(_figure_cos_vs_n(report)))
    parts.append("<table><tr><th>N</th><th>test cosine [95% CI]</th><th>held-out pool cosine</th></tr>" + "".join(
        f"<tr><td>{r['n_align']}</td><td>{r['test_cosine']['mean']:.3f} [{r['test_cosine']['ci_low']:.3f}, "
        f"{r['test_cosine']['ci_high']:.3f}]</td><td>{r['heldout_cosine']:.3f}</td></tr>"
        for r in report["attack"]["alignment_vs_n"]) + "</table>")
    parts.append("<h2>Leakage per k</h2>" + div(_figure_leak_per_k(report)))
    parts.append("<table><tr><th>N</th><th>k</th><th>exact F1 [95% CI]</th><th>prior</th><th>neighbourhood F1 [95% CI]</th>"
                 "<th>prior</th></tr>" + "".join(
                     f"<tr><td>{r['n_align']}</td><td>{r['k']}</td><td>{r['tag_f1']['mean']:.3f} [{r['tag_f1']['ci_low']:.3f}, "
                     f"{r['tag_f1']['ci_high']:.3f}]</td><td>{r['frequent']['tag_f1']:.3f}</td><td>{r['neighbourhood_f1']['mean']:.3f} "
                     f"[{r['neighbourhood_f1']['ci_low']:.3f}, {r['neighbourhood_f1']['ci_high']:.3f}]</td>"
                     f"<td>{r['frequent']['neighbourhood_f1']:.3f}</td></tr>" for r in report["attack"]["leakage"]) + "</table>")
    parts.append("<h2>Examples: what leaked</h2><p class='note'>Undefended attack on held-out images. Tags: "
                 "<span class='tag exact'>exact</span> in the image's own caption tags, <span class='tag near'>near</span> "
                 "a near-synonym of one, <span class='tag miss'>miss</span>. Right: the nearest public images in attack space.</p>")
    for ex in report["examples"]:
        img = f"<img src='{ex['thumbnail']}' alt='{e(ex['image'])}'>" if ex.get("thumbnail") else "<div>(image not available)</div>"
        tags = "".join(f"<span class='tag {t['match']}'>{e(t['tag'])}</span>" for t in ex["tags"])
        nbs = "".join(f"<img src='{nb['thumbnail']}' title='{e(nb['image'])} ({nb['score']:.2f})'>" if nb.get("thumbnail")
                      else f"<span class='note'>{e(nb['image'])}</span> " for nb in ex["neighbours"])
        parts.append(f"<div class='ex'>{img}<div><b>{e(ex['image'])}</b><br><span class='note'>caption: "
                     f"{e(ex['caption'])}</span><br>{tags}<div class='nbs'>{nbs}</div></div></div>")
    if report["defences"]:
        parts.append("<h2>Defences: leakage vs utility</h2><p class='note'>The owner transforms every released embedding; "
                     "the attacker refits its alignment on defended pairs. Utility: for each test image, is its clean nearest "
                     "neighbour (among all 900 released embeddings) still in the top-1/top-5 under the defended embeddings. "
                     "Star: the knee (where the trade-off bends). Ring: the weakest strength whose leakage is no longer "
                     "significantly above the prior. Dashed: the prior baseline.</p>")
        for name, d in report["defences"].items():
            rows = d["rows"]
            parts.append(f"<h3>{e(name)}</h3><p class='note'>strength = {e(d['spec']['strength'])}. Protects: "
                         f"{e(d['spec']['protects'])}. Does not protect: {e(d['spec']['does_not_protect'])}.</p>")
            parts.append(div(_curves.figure(rows)))
            extra = _curves.optional_cells(rows[0])
            parts.append("<table><tr><th>strength</th><th>dim</th><th>cosine</th><th>exact F1</th><th>neigh. F1</th>"
                         "<th>neigh. F1 − prior [95% CI]</th><th>recall@1</th><th>recall@5</th>"
                         + "".join(f"<th>{e(h)}</th>" for h, _ in extra) + "<th class='l'></th></tr>" + "".join(
                             f"<tr><td>{_curves.fmt_strength(r['strength'])}</td><td>{r['released_dim']}</td>"
                             f"<td>{r['leakage']['alignment_cosine']:.3f}</td><td>{r['leakage']['tag_f1']:.3f}</td>"
                             f"<td>{r['leakage']['neighbourhood_f1']:.3f}</td><td>{r['leakage']['neighbourhood_f1_vs_frequent']['diff']:+.3f} "
                             f"[{r['leakage']['neighbourhood_f1_vs_frequent']['ci_low']:+.3f}, "
                             f"{r['leakage']['neighbourhood_f1_vs_frequent']['ci_high']:+.3f}]</td>"
                             f"<td>{r['utility']['recall_at_1']:.3f}</td><td>{r['utility']['recall_at_5']:.3f}</td>"
                             + "".join(f"<td>{e(c)}</td>" for _, c in _curves.optional_cells(r))
                             + f"<td class='l'>{e(_curves.knee_label(r))}</td></tr>" for r in rows) + "</table>")
    paper = report.get("paper_figures")
    parts.append("<div class='paper'><h2>The paper's reference figures (NOT measured by this run)</h2>")
    if paper:
        parts.append(f"<p>Transcribed from: {e(str(paper.get('source', 'the paper')))}. Shown for comparison only; the "
                     f"paper used other models and data.</p>")
        for f in paper["figures"]:
            parts.append(div(paper_figure(f)))
            if f.get("note"):
                parts.append(f"<p class='note'>{e(f['note'])}</p>")
    else:
        parts.append("<p>No paper figures were given to this run (<code>slime report --paper-figures FILE.json</code> "
                     f"or ${PAPER_FIGURES_ENV}); "
                     "none are stored in the repository, and none are invented here.</p>")
    parts.append("</div></body></html>")
    return "\n".join(parts)


def _caption_sentence(row: dict) -> str:
    lk, b = row["leakage"], row["baselines"]
    dv = lk["caption_rouge_l_vs_mean_embedding_caption"]
    return (f" Captions written by {html.escape(lk['caption_writer'])} reach ROUGE-L {lk['caption_rouge_l']:.3f}, "
            f"against {b['random_caption']['caption_rouge_l']:.3f} for a random public caption and "
            f"{b['mean_embedding_caption']['caption_rouge_l']:.3f} for the caption of the mean public embedding "
            f"(&ldquo;{html.escape(b['mean_embedding_caption']['caption'])}&rdquo;, the stronger prior): "
            f"{dv['diff']:+.3f} [95% CI {dv['ci_low']:+.3f}, {dv['ci_high']:+.3f}].")


def write_report(report: dict, out) -> tuple[Path, Path]:
    """Write `out` (HTML) and the same report as JSON beside it (thumbnails left out of the JSON)."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise SlimeError(f"report path {out} should end in .html (the JSON goes beside it).")
    if not out.parent.exists():
        raise SlimeError(f"folder {out.parent} does not exist.")
    out.write_text(render_html(report), encoding="utf-8")
    slim = json.loads(json.dumps(jsonable(report)))
    for ex in slim["examples"]:
        ex.pop("thumbnail", None)
        for nb in ex["neighbours"]:
            nb.pop("thumbnail", None)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(slim, indent=2))
    return out, json_path
