"""Plotly figures. Nothing is measured here: every figure draws rows an experiment returned."""

from __future__ import annotations

from slime_core.infra.errors import SlimeError
from slime_core.present.tables import fmt_strength, non_adaptive_points
from slime_core.stages.defences import defence_spec


def defence_figure(rows: list[dict], title: str | None = None, selected: dict | None = None):
    """Plotly chart: leakage (y) against utility recall@1 (x), points labelled by strength, knee starred,
    the prior baseline dashed; `selected` (one of the rows) ringed with a diamond."""
    import plotly.graph_objects as go

    if not rows:
        raise SlimeError("no rows to plot.")
    name = rows[0]["defence"]
    x = [r["utility"]["recall_at_1"] for r in rows]
    labels = [fmt_strength(r["strength"]) for r in rows]
    fig = go.Figure()
    series = (("neighbourhood_f1", "neighbourhood F1", "#1f77b4"), ("exact_f1", "exact tag F1", "#ff7f0e"),
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
    non_adaptive = non_adaptive_points(rows)
    if non_adaptive:
        fig.add_trace(go.Scatter(x=[u for u, _ in non_adaptive], y=[v for _, v in non_adaptive],
                                 mode="lines+markers", name="neighbourhood F1, non-adaptive attacker (pre-defence pairs)",
                                 line={"color": "#1f77b4", "dash": "dot"}, marker={"symbol": "x"},
                                 hovertemplate="non-adaptive neighbourhood F1 %{y:.3f}<br>recall@1 %{x:.3f}"))
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
    if selected is not None:
        fig.add_trace(go.Scatter(x=[selected["utility"]["recall_at_1"]], y=[selected["leakage"]["neighbourhood_f1"]],
                                 mode="markers", marker={"symbol": "diamond", "size": 16, "color": "rgba(0,0,0,0)",
                                                         "line": {"color": "black", "width": 3}},
                                 name=f"selected: strength {fmt_strength(selected['strength'])}"))
    fig.update_layout(title=title or f"{name}: leakage vs utility ({defence_spec(name).strength}); attacker refits on defended pairs",
                      xaxis_title="utility: image-to-image recall@1 (1 = unchanged)", yaxis_title="leakage",
                      template="plotly_white", height=460, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(range=[-0.03, 1.05])
    return fig


# --- the audit report -------------------------------------------------------------------------------
def alignment_vs_n_figure(report):
    """The audit's alignment cosine against N, with its held-out pool cosine and the mean-embedding prior."""
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


def leakage_per_k_figure(report):
    """The audit's tag F1 per k at the report's N, beside the frequent-tag prior."""
    import plotly.graph_objects as go

    n = report["settings"]["n_align"]
    rows = [r for r in report["attack"]["leakage"] if r["n_align"] == n] or report["attack"]["leakage"]
    n = rows[0]["n_align"]
    x = [r["k"] for r in rows]
    fig = go.Figure()
    for key, label, colour in (("neighbourhood_f1", "neighbourhood F1", "#1f77b4"), ("exact_f1", "exact tag F1", "#ff7f0e")):
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


def paper_figure(figure: dict):
    """One of the paper's figures, transcribed by hand, labelled as the paper's (not this run)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in figure["series"]:
        fig.add_trace(go.Scatter(x=s["x"], y=s["y"], mode="lines+markers", name=s.get("name", "")))
    fig.update_layout(title="THE PAPER'S FIGURE (not this run): " + figure.get("title", ""),
                      xaxis_title=figure.get("x_label", ""), yaxis_title=figure.get("y_label", ""),
                      template="plotly_white", height=360, paper_bgcolor="#fff8ec")
    return fig


TRAINING_SIZE_SERIES = ("exact tag F1", "neighbourhood tag F1", "caption ROUGE-L")


def training_size_figure(result: dict):
    """bench/training_size.py's result: each metric of the attack (with its 95% interval) and of its prior, against
    the number of photos the attacker trained on."""
    from plotly.subplots import make_subplots

    rows = result["rows"]
    fig = make_subplots(rows=1, cols=len(TRAINING_SIZE_SERIES), subplot_titles=TRAINING_SIZE_SERIES)
    x = [r["train_images"] for r in rows]
    for col, label in enumerate(TRAINING_SIZE_SERIES, start=1):
        ys = [r[label] for r in rows]
        fig.add_scatter(x=x, y=[y["attack"] for y in ys], mode="lines+markers",
                        name=f"attack ({result['victim']}, N={result['n_align']})",
                        error_y=dict(type="data", symmetric=False, array=[y["ci"][1] - y["attack"] for y in ys],
                                     arrayminus=[y["attack"] - y["ci"][0] for y in ys]),
                        line_color="#c0392b", showlegend=col == 1, row=1, col=col)
        fig.add_scatter(x=x, y=[y["prior"] for y in ys], mode="lines+markers", name="prior (no embedding)",
                        line=dict(color="#7f8c8d", dash="dash"), showlegend=col == 1, row=1, col=col)
        fig.update_xaxes(title_text="attacker's training photos", type="log", row=1, col=col)
    n = rows[0].get("test_images", "")
    fig.update_layout(height=380, margin=dict(t=60, b=40, l=40, r=20),
                      title=f"What leaks, by the attacker's public training data ({n} test photos, k = {result['k']})")
    return fig


def attribute_auc_figure(result: dict):
    """Sensitive attributes (`attribute_eval` / `attribute_report` dicts): each measurable attribute's ROC AUC with
    its 95% interval, one series per system (each N, the oracle), beside chance (0.5, dashed)."""
    import plotly.graph_objects as go

    rows = [r for r in result["rows"] if r["reason"] is None]
    fig = go.Figure()
    for label in result["systems"]:
        est = [r["auc"][label] for r in rows]
        fig.add_trace(go.Scatter(x=[r["attribute"] for r in rows], y=[e["mean"] for e in est], mode="markers",
                                 name="oracle (no alignment)" if label == "oracle" else f"attack, {label}",
                                 marker={"size": 9, "symbol": "diamond" if label == "oracle" else "circle"},
                                 error_y={"type": "data", "symmetric": False,
                                          "array": [e["ci_high"] - e["mean"] for e in est],
                                          "arrayminus": [e["mean"] - e["ci_low"] for e in est]},
                                 hovertemplate="%{x}: AUC %{y:.3f}"))
    lows = [e["ci_low"] for r in rows for e in r["auc"].values() if e["ci_low"] == e["ci_low"]]  # NaN: no interval
    fig.add_hline(y=result.get("chance", 0.5), line_dash="dash", line_color="gray", annotation_text="chance (0.5)")
    fig.update_layout(title=f"Sensitive attributes read off {result['victim']} embeddings: ROC AUC (95% CI)",
                      yaxis_title="ROC AUC", yaxis_range=[min([0.3, *lows]) - 0.02, 1.02], template="plotly_white", height=380,
                      scattermode="group", legend={"orientation": "h", "y": -0.2})
    return fig
