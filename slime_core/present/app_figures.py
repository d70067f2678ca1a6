"""Helpers behind the Streamlit app's pages: parsing uploads, per-image scores, evaluation tables, figures.

Nothing here imports streamlit, so every function is testable on its own and the pages stay thin
(widgets and layout only). Errors a user can fix are `SlimeError`s with a message that says what to do.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from slime_core import settings
from slime_core.errors import SlimeError

# ---- encoders the app can offer --------------------------------------------------------------------

def victim_choices(pool_encoders: Sequence[str], probe=None) -> tuple[list[str], list[dict]]:
    """(usable victim encoders, [{name, about, reason}] for the registry's encoders that cannot be used here).

    Usable: the bundle holds its embeddings of the public pool (the offline encoders), or `probe(name)` -- which
    tries to load the encoder and checks the pool images are there to embed N of them -- returns None. An API
    encoder without its key is not probed. Otherwise the reason is the probe's (or the missing key's) message."""
    from slime_core.encoders import encoder_names, encoder_spec

    usable, unavailable = [], []
    for name in encoder_names():
        spec = encoder_spec(name)
        if spec["kind"] == "sentence_transformers":
            continue  # text-only encoders are no victims
        if name in pool_encoders:
            usable.append(name)
            continue
        if spec.get("env") and not settings.secret(spec["env"]):
            reason = f"needs the API key {spec['env']} in the environment (or st.secrets) and network access"
        elif probe is not None:
            reason = probe(name)
            if reason is None:
                usable.append(name)
                continue
        else:
            reason = f"needs the {spec.get('model')} weights ({spec.get('pretrained') or spec.get('model')}) on disk"
        unavailable.append({"encoder": name, "dim": spec.get("dim"), "about": spec.get("about", ""), "reason": reason})
    return usable, unavailable


def any_llm_key() -> list[str]:
    """Names (never values) of the chat-model API keys present in the environment."""
    names = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY", "GROQ_API_KEY",
             "TOGETHER_API_KEY", "OPENROUTER_API_KEY")
    return [n for n in names if settings.secret(n)]


# ---- uploads (moved to slime_core.uploads) ------------------------------------------------------------

from .uploads import parse_embeddings, check_victim_embedding, order_pool_upload, content_key  # noqa
from .uploads import EMBEDDING_TYPES, MAX_EMBEDDING_ROWS, MAX_EMBEDDING_DIM, _is_number  # noqa


# ---- embeddings and one attack ------------------------------------------------------------------------

class _CachedOnly:
    """Stands in for an encoder in the on-disk embedding cache: the real encoder is built only on a cache miss.
    Same cache key as the real encoder (its fingerprint), so overridden (e.g. tiny test) models stay apart."""

    def __init__(self, attacker, name: str):
        from slime_core.encoders import encoder_spec, fingerprint

        self.attacker, self.name, self.cache_key = attacker, name, fingerprint(name)
        self.dim = int(encoder_spec(name)["dim"])  # only for an empty list; rows take the model's own width

    def encode_images(self, images, batch_size: int = 16, progress: bool = False):
        return self.attacker.encoder(self.name).encode_images(images, batch_size=batch_size, progress=progress)


def embed_images(attacker, victim: str, images: list) -> np.ndarray:
    """Victim embeddings via the attacker's disk cache, without loading the encoder when every image is cached."""
    return attacker.cache.encode_images(_CachedOnly(attacker, victim), images)


def tag_scores(pred: list[str], refs: list[str], scorer) -> dict:
    from slime_core.metrics import exact_prf

    ex, nb = exact_prf(pred, refs), scorer.score(pred, refs)
    return {"exact_precision": ex["precision"], "exact_recall": ex["recall"], "exact_f1": ex["f1"],
            "neighbourhood_precision": nb["precision"], "neighbourhood_recall": nb["recall"],
            "neighbourhood_f1": nb["f1"]}


def single_image_scores(attacker, result, refs: list[str], scorer) -> list[dict]:
    """Tag P/R/F1 of the attack beside the baselines (most frequent tags, nearest public image's tags)
    for one attacked image."""
    k = len(result.tags)
    pred = [t["tag"] for t in result.tags]
    nearest = attacker.neighbour_tags(result.aligned[None, :], k)[0]
    rows = {"attack": tag_scores(pred, refs, scorer),
            "most frequent tags": tag_scores(attacker.frequent_tags(k), refs, scorer),
            "nearest public image": tag_scores(nearest, refs, scorer)}
    out = []
    for metric in rows["attack"]:
        a = rows["attack"][metric]
        out.append({"metric": metric, "attack": a, "most frequent tags": rows["most frequent tags"][metric],
                    "nearest public image": rows["nearest public image"][metric],
                    "attack - frequent": a - rows["most frequent tags"][metric],
                    "attack - nearest": a - rows["nearest public image"][metric]})
    return out


def _score_caption(caption: str, refs: Sequence[str]) -> tuple[dict, str | None]:
    """score_caption, or (without WordNet) every metric but METEOR and a note saying how to add it."""
    from slime_core import caption_metrics as cm
    from slime_core.errors import MissingModelError

    try:
        return cm.score_caption(caption, refs), None
    except MissingModelError as err:
        refs = [r for r in refs if r and r.strip()]
        rouge = cm._rouge().score_multi(refs, caption) if cm.tokens(caption) else None
        out = {"bleu4": cm.bleu4(caption, refs),
               **{k: rouge[k].fmeasure if rouge else 0.0 for k in ("rouge1", "rouge2", "rougeL")}, "meteor": None}
        return out, str(err)


def caption_scores(caption: str, refs: Sequence[str], public_captions: Sequence[str], seed: int = 0
                   ) -> tuple[list[dict], str | None]:
    """BLEU-4/ROUGE/METEOR of a written caption beside a random public caption (the prior baseline), and a
    note when a metric could not be computed."""
    if not [r for r in refs if r and r.strip()]:
        raise SlimeError("no reference captions to score the caption against.")
    got, note = _score_caption(caption, refs)
    base = _score_caption(public_captions[np.random.default_rng(seed).integers(len(public_captions))], refs)[0] \
        if public_captions else None
    rows = []
    for k, v in got.items():
        b = base[k] if base else None
        rows.append({"metric": k, "caption": v, "random public caption": b,
                     "difference": v - b if v is not None and b is not None else None})
    return rows, note


# ---- alignment explorer --------------------------------------------------------------------------------

def n_grid(pool_size: int, points: int = 6, low: int = 10) -> list[int]:
    """Roughly log-spaced N values from `low` to the whole pool."""
    grid = np.unique(np.round(np.geomspace(max(low, 2), pool_size, points)).astype(int))
    return [int(n) for n in grid]


def alignment_curve(attacker, victims: Sequence[str], methods: Sequence[str], ns: Sequence[int], seed: int = 0,
                    progress: Callable[[float, str], None] | None = None) -> list[dict]:
    """Held-out cosine of each fitted map: one row per (victim, method, N). Procrustes on unequal dims is
    skipped with a note."""
    rows, jobs = [], [(v, m, n) for v in victims for m in methods for n in ns]
    for i, (v, m, n) in enumerate(jobs):
        if progress:
            progress(i / max(len(jobs), 1), f"{v} / {m} / N={n}")
        try:
            fit = attacker.alignment(v, int(n), m, seed)
            rows.append({"victim": v, "method": m, "N": int(n), "heldout_cosine": float(fit.heldout_cosine), "note": ""})
        except SlimeError as err:
            rows.append({"victim": v, "method": m, "N": int(n), "heldout_cosine": None, "note": str(err)})
    if progress:
        progress(1.0, "done")
    return rows


def projection(attacker, victim: str, n_align: int, method: str, seed: int = 0, n_points: int = 150) -> dict:
    """2-D PCA of attack-space embeddings of pool images left out of the fit, and their aligned victim
    embeddings, in one shared basis."""
    from slime_core import align

    X = attacker.victim_pool(victim)
    fit = attacker.alignment(victim, n_align, method, seed)
    train = set(align.choose_pairs(len(X), n_align, seed).tolist())
    held = [i for i in range(len(X)) if i not in train] or list(range(len(X)))
    held = np.asarray(held[:n_points])
    true, aligned = attacker.pool_attack[held], fit.transform(X[held])
    both = np.vstack([true, aligned])
    centre = both.mean(axis=0)
    _, _, vt = np.linalg.svd(both - centre, full_matrices=False)
    pt, pa = (true - centre) @ vt[:2].T, (aligned - centre) @ vt[:2].T
    cos = np.sum(true * aligned, axis=1) / (np.linalg.norm(true, axis=1) * np.linalg.norm(aligned, axis=1))
    names = [attacker.bundle.pool["images"][i] for i in held]
    return {"true": pt, "aligned": pa, "names": names, "cosine": cos, "held_out": len(held)}


# ---- evaluation tables ------------------------------------------------------------------------------------

def merge_results(parts: list[dict]) -> dict:
    """One evaluation result from several runs over different N on the same images."""
    if not parts:
        raise SlimeError("no evaluation results to merge.")
    out = dict(parts[0], rows=[], captions=[])
    for p in parts:
        out["rows"] += p["rows"]
        out["captions"] += p.get("captions", [])
    out["rows"].sort(key=lambda r: (r["n_align"], r["k"]))
    return out


def result_frame(result: dict):
    """Flat table: one row per (N, k, metric) with the attack, its CI, baselines and differences."""
    import pandas as pd

    rows = []
    for r in result["rows"]:
        cos = r["alignment_cosine"]
        for metric, e in r["metrics"].items():
            rows.append({"N": r["n_align"], "k": r["k"], "metric": metric, "attack": e["attack"],
                         "ci_low": e["ci_low"], "ci_high": e["ci_high"], "most_frequent": e["frequent"],
                         "nearest_image": e["nearest"], "oracle": e["oracle"],
                         "vs_frequent": e["vs_frequent"]["diff"], "vs_frequent_ci_low": e["vs_frequent"]["ci_low"],
                         "vs_frequent_ci_high": e["vs_frequent"]["ci_high"], "vs_nearest": e["vs_nearest"]["diff"],
                         "vs_nearest_ci_low": e["vs_nearest"]["ci_low"], "vs_nearest_ci_high": e["vs_nearest"]["ci_high"],
                         "alignment_cosine": cos["test"]})
    return pd.DataFrame(rows)


def caption_frame(result: dict):
    import pandas as pd

    rows = []
    for c in result.get("captions", []):
        for key, v in c["metrics"].items():
            d, dm = v["vs_random_caption"], v["vs_mean_embedding_caption"]
            rows.append({"N": c["n_align"], "k": c["k"], "writer": c["writer"], "metric": key, "caption": v["attack"],
                         "ci_low": v["ci_low"], "ci_high": v["ci_high"], "random_public_caption": v["random_caption"],
                         "difference": d["diff"], "diff_ci_low": d["ci_low"], "diff_ci_high": d["ci_high"],
                         "mean_embedding_caption": v["mean_embedding_caption"], "vs_mean_embedding_caption": dm["diff"],
                         "vs_mean_ci_low": dm["ci_low"], "vs_mean_ci_high": dm["ci_high"]})
    return pd.DataFrame(rows)


def per_tag_leakage(attacker, samples, refs: list[list[str]], victim: str, n_align: int, k: int, method: str = "ridge",
                    seed: int = 0, min_count: int = 2):
    """Which tags leak: per retrieved tag, how often it was retrieved and how often it was right (precision),
    and per reference tag how often it was recalled; sorted by hits."""
    import pandas as pd

    X = attacker.embed(victim, [str(s.path) for s in samples])
    aligned = attacker.alignment(victim, n_align, method, seed).transform(X)
    pred = [[t for t, _ in row] for row in attacker.retrieve(aligned, k)]
    stats: dict[str, dict] = {}
    for p, r in zip(pred, refs):
        rs = set(r)
        for t in p:
            s = stats.setdefault(t, {"retrieved": 0, "hits": 0, "in_references": 0})
            s["retrieved"] += 1
            s["hits"] += t in rs
        for t in rs:
            stats.setdefault(t, {"retrieved": 0, "hits": 0, "in_references": 0})["in_references"] += 1
    rows = [{"tag": t, **s, "precision": s["hits"] / s["retrieved"] if s["retrieved"] else 0.0,
             "recall": s["hits"] / s["in_references"] if s["in_references"] else 0.0}
            for t, s in stats.items() if s["retrieved"] >= min_count or s["hits"]]
    df = pd.DataFrame(rows, columns=["tag", "retrieved", "hits", "in_references", "precision", "recall"])
    return df.sort_values(["hits", "precision"], ascending=False).reset_index(drop=True)


def html_report(result: dict, title: str = "SLImE leakage report") -> str:
    """A self-contained HTML page: settings, the per-(N, k) table and the caption table."""
    df = result_frame(result)
    settings = {k: result[k] for k in ("victim", "attacker", "method", "n_images", "seed", "bootstrap") if k in result}
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<p>Every attack figure is the mean over images with a bootstrap 95% interval, beside the baselines "
             "that need no victim embedding: the most frequent training tags and the nearest public image's tags. "
             "Differences are paired over images.</p>",
             "<h2>Settings</h2><pre>" + html.escape(json.dumps(settings, indent=2)) + "</pre>",
             "<h2>Tag leakage</h2>", df.to_html(index=False, float_format=lambda x: f"{x:.3f}")]
    cap = caption_frame(result)
    if len(cap):
        parts += ["<h2>Captions (vs a random public caption)</h2>", cap.to_html(index=False, float_format=lambda x: f"{x:.3f}")]
    parts.append("</body></html>")
    return "\n".join(parts)


# ---- figures -------------------------------------------------------------------------------------------------

def scene_graph_figure(graph):
    """The scene graph drawn with plotly: objects as nodes (attributes in the label), relations as labelled edges."""
    import plotly.graph_objects as go

    nodes = list(graph.objects)
    edges = [(s, p, o) for s, p, o in (graph.relations or [])]
    edges += [(s, p, o) for s, p, o in (graph.raw_relations or []) if not any(e[0] == s and e[2] == o for e in edges)]
    fig = go.Figure()
    if not nodes:
        fig.add_annotation(text="no objects in the retrieved tags", showarrow=False)
    else:
        n = len(nodes)
        angle = np.linspace(0, 2 * np.pi, n, endpoint=False) + np.pi / 2
        pos = {name: (float(np.cos(a)), float(np.sin(a))) if n > 1 else (0.0, 0.0) for name, a in zip(nodes, angle)}
        for s, p, o in edges:
            if s in pos and o in pos:
                (x0, y0), (x1, y1) = pos[s], pos[o]
                fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y",
                                   showarrow=True, arrowhead=2, arrowwidth=1.5, arrowcolor="#888", standoff=14)
                fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=f"<i>{html.escape(p)}</i>", showarrow=False,
                                   font={"size": 12, "color": "#c0392b"}, bgcolor="rgba(255,255,255,0.7)")
        labels = [name + (f"<br><sub>{', '.join(graph.attributes.get(name, [])[:3])}</sub>"
                          if graph.attributes.get(name) else "") for name in nodes]
        fig.add_trace(go.Scatter(x=[pos[v][0] for v in nodes], y=[pos[v][1] for v in nodes], mode="markers+text",
                                 text=labels, textposition="top center", hoverinfo="text",
                                 marker={"size": 22, "color": "#2e86c1"}, showlegend=False))
    title = "scene graph" + (f" - scene: {graph.scene}" if graph.scene else "")
    fig.update_layout(title=title, height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"visible": False, "range": [-1.5, 1.5]}, yaxis={"visible": False, "range": [-1.4, 1.5]})
    return fig


def tags_figure(tags: list[dict]):
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=[t["score"] for t in tags][::-1], y=[t["tag"] for t in tags][::-1], orientation="h",
                           marker_color="#2e86c1"))
    fig.update_layout(height=max(200, 24 * len(tags) + 60), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title="retrieved tags (score)")
    return fig


def alignment_curve_figure(rows: list[dict]):
    import plotly.express as px

    data = [r for r in rows if r["heldout_cosine"] is not None]
    fig = px.line(data, x="N", y="heldout_cosine", color="victim", line_dash="method", markers=True, log_x=True,
                  labels={"heldout_cosine": "held-out cosine (aligned vs true)", "N": "N leaked pairs"})
    fig.update_layout(height=420, margin={"t": 30})
    return fig


def projection_figure(proj: dict, links: int = 40):
    import plotly.graph_objects as go

    t, a = proj["true"], proj["aligned"]
    fig = go.Figure()
    xs, ys = [], []
    for i in range(min(links, len(t))):
        xs += [t[i, 0], a[i, 0], None]
        ys += [t[i, 1], a[i, 1], None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#ccc", "width": 1}, name="same image",
                             hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=t[:, 0], y=t[:, 1], mode="markers", name="attacker embedding (true)",
                             text=proj["names"], marker={"size": 7, "color": "#2e86c1"}))
    fig.add_trace(go.Scatter(x=a[:, 0], y=a[:, 1], mode="markers", name="aligned victim embedding",
                             text=[f"{n} (cos {c:.2f})" for n, c in zip(proj["names"], proj["cosine"])],
                             marker={"size": 7, "color": "#e67e22", "symbol": "x"}))
    fig.update_layout(height=460, margin={"t": 30}, xaxis_title="PC 1", yaxis_title="PC 2")
    return fig


def metric_vs_k_figure(df, metric: str, n_align: int):
    """Attack (with 95% CI) and the baselines against k, at one N."""
    d = df[(df["metric"] == metric) & (df["N"] == n_align)].sort_values("k")
    return _metric_curve(d, "k", "k", f"{metric} vs k (N={n_align})", metric, "oracle (attacker's own embedding)")


def metric_vs_n_figure(df, metric: str, k: int):
    """Attack (with 95% CI) and the baselines against N (log axis), at one k."""
    d = df[(df["metric"] == metric) & (df["k"] == k)].sort_values("N")
    fig = _metric_curve(d, "N", "N leaked pairs", f"{metric} vs N (k={k})", metric, "oracle")
    fig.update_layout(xaxis_type="log")
    return fig


def _metric_curve(d, x: str, x_title: str, title: str, metric: str, oracle_name: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=d[x], y=d["attack"], mode="lines+markers", name="attack",
                             error_y={"type": "data", "symmetric": False, "array": d["ci_high"] - d["attack"],
                                      "arrayminus": d["attack"] - d["ci_low"]}))
    for col, name in (("most_frequent", "most frequent tags"), ("nearest_image", "nearest public image"),
                      ("oracle", oracle_name)):
        fig.add_trace(go.Scatter(x=d[x], y=d[col], mode="lines+markers", name=name,
                                 line={"dash": "dot" if col != "oracle" else "dash"}))
    fig.update_layout(height=380, margin={"t": 40}, title=title, xaxis_title=x_title, yaxis_title=metric)
    return fig


def difference_figure(df, metric: str):
    """Attack minus each baseline with its paired 95% CI, per (N, k)."""
    import plotly.graph_objects as go

    d = df[df["metric"] == metric].sort_values(["N", "k"])
    label = [f"N={n}, k={k}" for n, k in zip(d["N"], d["k"])]
    fig = go.Figure()
    for col, name in (("vs_frequent", "attack - most frequent"), ("vs_nearest", "attack - nearest image")):
        fig.add_trace(go.Bar(x=label, y=d[col], name=name,
                             error_y={"type": "data", "symmetric": False, "array": d[f"{col}_ci_high"] - d[col],
                                      "arrayminus": d[col] - d[f"{col}_ci_low"]}))
    fig.add_hline(y=0, line_color="#444")
    fig.update_layout(barmode="group", height=380, margin={"t": 40}, title=f"{metric}: difference to baselines (95% CI)")
    return fig
