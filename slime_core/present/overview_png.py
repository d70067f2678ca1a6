"""Every defence curve on one PNG (small multiples), drawn with matplotlib: no browser, no kaleido."""

from __future__ import annotations

import math

from slime_core.present.tables import fmt_strength, non_adaptive_points
from slime_core.stages.defences import defence_spec, list_defences

TAG, CAPTION, PRIOR, NON_ADAPTIVE = "#1f77b4", "#9467bd", "#d62728", "#17becf"


def render_png(curves: dict[str, list[dict]], path, cols: int = 4, panel=(420, 320)) -> None:
    """Small multiples, one panel per defence: neighbourhood F1 (y) against recall@1 (x), strengths labelled,
    the frequent-tags prior dashed, the knee starred, the weakest strength that stops the leak ringed, the
    non-adaptive attacker as teal crosses; caption ROUGE-L in purple beside its mean-embedding-caption prior
    where the rows have it. `panel` is each panel's size in pixels."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    names = list(curves)
    n_rows, n_cols = math.ceil(len(names) / cols), min(cols, len(names))
    dpi = 100
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(panel[0] * n_cols / dpi, panel[1] * n_rows / dpi + 0.5),
                             dpi=dpi, squeeze=False, sharey=True)
    r0 = curves[names[0]][0]
    captions = "caption_rouge_l" in r0["leakage"]
    top = max(r["leakage"][key] for rows in curves.values() for r in rows
              for key in (("neighbourhood_f1", "caption_rouge_l") if captions else ("neighbourhood_f1",)))
    for ax, name in zip(axes.flat, names):
        _panel(ax, name, curves[name], captions)
        ax.set_ylim(0, max(0.05, math.ceil(top * 1.15 * 20) / 20))
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"SLImE defences: neighbourhood tag F1{' and caption ROUGE-L (purple)' if captions else ''} "
                 f"(leakage) vs image retrieval recall@1 (utility); victim {r0['victim']} -> {r0['attacker']}, "
                 f"N={r0['n_align']} refitted on defended pairs, k={r0['k']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _panel(ax, name: str, rows: list[dict], captions: bool) -> None:
    x = [r["utility"]["recall_at_1"] for r in rows]
    y = [r["leakage"]["neighbourhood_f1"] for r in rows]
    ax.axhline(rows[0]["baselines"]["frequent"]["neighbourhood_f1"], color=PRIOR, ls="--", lw=1,
               label="prior (frequent tags)")
    if captions:
        ax.axhline(rows[0]["baselines"]["mean_embedding_caption"]["caption_rouge_l"], color=CAPTION, ls="--", lw=1,
                   label="prior (mean caption)")
        ax.plot(x, [r["leakage"]["caption_rouge_l"] for r in rows], "o-", color=CAPTION, ms=3, label="caption ROUGE-L")
    ax.plot(x, y, "o-", color=TAG, ms=4, label="neighbourhood F1")
    for xi, yi, r in zip(x, y, rows):
        ax.annotate(fmt_strength(r["strength"]), (xi, yi), textcoords="offset points", xytext=(4, 5), fontsize=7)
        if r.get("knee"):
            ax.plot(xi, yi, "*", color="crimson", ms=13, label="knee")
        if r.get("stops_leak"):
            ax.plot(xi, yi, "o", mfc="none", mec="black", ms=14, mew=1.5, label="leak stopped")
    non_adaptive = non_adaptive_points(rows)
    if non_adaptive:
        ax.plot(*zip(*non_adaptive), "x", color=NON_ADAPTIVE, ms=7, mew=2, label="non-adaptive attacker")
    if len(set(zip(x, y))) == 1 and len(rows) > 1:
        ax.text(0.98, 0.95, "all strengths give the same point", transform=ax.transAxes, fontsize=7, color="#666",
                ha="right")
    ax.set_title(f"{name} ({defence_spec(name).short if name in list_defences() else ''})", fontsize=9, loc="left")
    ax.set_xlim(-0.03, 1.05)
    ax.set_xlabel("recall@1 (utility)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if ax.get_subplotspec().is_first_col():  # one legend per row is enough
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=6, loc="upper left")
