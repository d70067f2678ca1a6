"""The app's tables and charts: evaluation results as data frames, the
scene graph, retrieved tags, the alignment explorer and the metric curves. Nothing is measured here."""

from __future__ import annotations

import html

import numpy as np


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


def _ci_cell(mean: float, low: float, high: float, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def attribute_auc_frame(result: dict):
    """Sensitive-attribute AUCs (`attribute_eval` / `attribute_report` dicts) as a table: per attribute its
    prevalence, AUC [95% CI] per system, and the largest N's (or the report's main N's) difference to chance and
    to the oracle; "not measurable here" with the reason where it has no AUC."""
    import pandas as pd

    labels = list(result["systems"])
    main = result.get("main") or [lab for lab in labels if lab != "oracle"][-1]
    chance = result.get("chance", 0.5)
    rows = []
    for r in result["rows"]:
        row = {"attribute": r["attribute"], "prevalence": f"{r['prevalence']:.1%} ({r['n_positive']})"}
        if r["reason"] is not None:
            rows.append(row | {f"AUC {labels[0]}": f"not measurable here: {r['reason']}"})
            continue
        row |= {f"AUC {lab}": _ci_cell(r["auc"][lab]["mean"], r["auc"][lab]["ci_low"], r["auc"][lab]["ci_high"])
                for lab in labels}
        e, d = r["auc"][main], r["auc"][main].get("vs_oracle")
        row[f"{main} − chance"] = _ci_cell(e["mean"] - chance, e["ci_low"] - chance, e["ci_high"] - chance, True)
        if d is not None:
            row[f"{main} − oracle"] = _ci_cell(d["diff"], d["ci_low"], d["ci_high"], True)
        rows.append(row)
    return pd.DataFrame(rows)


def uploaded_attributes_frame(scores: dict):
    """`attribute_report.uploaded_attribute_scores` as a table: per uploaded embedding the attributes it is flagged
    for and its margin per attribute (score minus the calibrated threshold)."""
    import pandas as pd

    return pd.DataFrame([{"embedding": r["embedding"], "flagged": ", ".join(r["flagged"]) or "-", **r["margins"]}
                         for r in scores["rows"]])


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
    """Held-out cosine against N per victim and method, each method's prior (a constant embedding) in grey,
    ticks at the N values measured (a log axis otherwise labels only some of them)."""
    import plotly.express as px
    import plotly.graph_objects as go

    data = [r for r in rows if r["heldout_cosine"] is not None]
    fig = px.line(data, x="N", y="heldout_cosine", color="victim", line_dash="method", markers=True, log_x=True,
                  labels={"heldout_cosine": "held-out cosine (aligned vs true)", "N": "N leaked pairs"})
    for method in dict.fromkeys(r["method"] for r in rows if r.get("prior_cosine") is not None):
        prior = {r["N"]: r["prior_cosine"] for r in rows if r["method"] == method}
        fig.add_trace(go.Scatter(x=list(prior), y=list(prior.values()), mode="lines", name=f"prior ({method}): a "
                                 "constant embedding", line={"color": "grey", "dash": "dot"}))
    ns = sorted({r["N"] for r in rows})
    fig.update_xaxes(tickvals=ns, ticktext=[str(n) for n in ns])
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
