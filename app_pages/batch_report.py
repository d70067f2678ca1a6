"""Page 5 - batch report: run the evaluation on a split, see tables and charts, download them; and build the
self-contained audit report (`slime report`) with its JSON."""

from __future__ import annotations

import json

import streamlit as st

from app_pages import common
from slime_core.present import app_figures as sup
from slime_core.align import METHODS
from slime_core.defend import DEFENCES
from slime_core.errors import SlimeError
from slime_core.experiments.evaluation import TAG_METRICS

st.title("Batch report")
st.caption("The `slime eval` table in the browser: alignment cosine and tag P/R/F1 per (N, k) on held-out test "
           "images, each beside its baselines with the paired difference and its bootstrap 95% interval; captions "
           "beside a random public caption.")

attacker = common.attacker_or_stop()
pool_size = len(attacker.pool_attack)
victims, _ = common.victim_options()
have_captions = bool(common.public_captions())

with st.form("br_form"):
    c1, c2, c3, c4 = st.columns(4)
    victim = c1.selectbox("Victim", victims, key="br_victim")
    method = c2.selectbox("Method", METHODS, key="br_method")
    limit = c3.number_input("Test images (0 = all)", 0, 10_000, 40, step=10, key="br_limit")
    n_boot = c4.select_slider("Bootstrap resamples", [100, 200, 500, 1000], 500, key="br_boot")
    n_text = st.text_input("N values (comma-separated)", "30,100,300", key="br_ns")
    k_text = st.text_input("k values (comma-separated)", "1,5,10,20", key="br_ks")
    captions = st.checkbox("Score captions too (consensus writer, beside a random public caption and the mean "
                           "embedding's caption)", value=False,
                           disabled=not have_captions, key="br_captions",
                           help=None if have_captions else "needs the pool captions (the full dataset folder)")
    submitted = st.form_submit_button("Run evaluation", type="primary")


def int_list(text: str, what: str) -> list[int]:
    try:
        values = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SlimeError(f"{what}: expected comma-separated whole numbers, got {text!r}.") from None
    if not values:
        raise SlimeError(f"{what}: give at least one value.")
    return values


bad_grid = False
if submitted:
    try:
        st.session_state["br_params"] = dict(victim=victim, n_aligns=int_list(n_text, "N values"),
                                             ks=int_list(k_text, "k values"), method=method, limit=int(limit),
                                             n_boot=int(n_boot), writer_spec="consensus" if captions else "none")
    except SlimeError as err:
        common.show_error(err)
        bad_grid = True  # the error stands in for the results; the audit report below stays usable


def show_evaluation() -> None:
    if "br_params" not in st.session_state:
        st.info("Set the grid and press **Run evaluation**.")
        return
    params = st.session_state["br_params"]
    try:
        result = common.run_evaluation(**params)
    except SlimeError as err:
        common.show_error(err)
        return

    df = sup.result_frame(result)
    st.success(f"{result['n_images']} images - victim {result['victim']} -> {result['attacker']} ({result['method']}).")
    metric = st.selectbox("Metric", TAG_METRICS, index=TAG_METRICS.index("neighbourhood_f1"), key="br_metric")
    st.plotly_chart(sup.difference_figure(df, metric), key="br_diff_fig")
    st.dataframe(df.style.format(precision=3), hide_index=True)
    cap = sup.caption_frame(result)
    if len(cap):
        st.subheader("Captions")
        st.dataframe(cap.style.format(precision=3), hide_index=True)
    with st.expander("Plain-text table (as `slime eval` prints it)"):
        from slime_core.present.tables import evaluation_table

        st.code(evaluation_table(result), language=None)
    d1, d2, d3 = st.columns(3)
    d1.download_button("Download CSV", df.to_csv(index=False), file_name="slime_eval.csv", mime="text/csv", key="br_csv")
    d2.download_button("Download JSON", json.dumps(result, indent=2), file_name="slime_eval.json",
                       mime="application/json", key="br_json")
    d3.download_button("Download HTML report", sup.html_report(result), file_name="slime_report.html",
                       mime="text/html", key="br_html")


if not bad_grid:
    show_evaluation()

# ---- the audit report (what `slime report` writes) -----------------------------------------------------------------
st.divider()
st.subheader("Audit report")
st.caption("One self-contained HTML file (plus the same numbers as JSON), as `slime report` writes it: the threat "
           "model, the models used, alignment cosine vs N, leakage per k beside the prior, example images with what "
           "leaked, and leakage-vs-utility curves for the chosen defences (the attacker refitting on defended pairs). "
           "Every number comes from this run. Keep the images and defences few for an answer in seconds.")
with st.form("ar_form"):
    a1, a2, a3, a4 = st.columns(4)
    ar_victim = a1.selectbox("Victim", [v for v in victims if v != attacker.bundle.image_encoder] or victims,
                             key="ar_victim")
    ar_limit = a2.number_input("Test images (0 = all)", 0, 10_000, 20, step=10, key="ar_limit")
    ar_boot = a3.select_slider("Bootstrap resamples", [100, 200, 500, 1000], 200, key="ar_boot")
    ar_examples = a4.number_input("Example images", 0, 24, 6, key="ar_examples")
    ar_defences = st.multiselect("Defences (each at its default strengths; fewer = faster)", DEFENCES,
                                 default=["noise", "rotation", "quantise"], key="ar_defences")
    b1, b2 = st.columns(2)
    ar_ns = b1.text_input("N values for alignment cosine vs N", "10,30,100,300", key="ar_ns")
    ar_ks = b2.text_input("k values for leakage per k", "1,5,10,20", key="ar_ks")
    ar_paper = st.file_uploader("Optional: the paper's figures (JSON, shown apart and labelled as the paper's)",
                                type=["json"], key="ar_paper")
    ar_submitted = st.form_submit_button("Build audit report")


def build_audit(victim: str, limit: int, n_boot: int, n_examples: int, defences: list[str], ns: list[int],
                ks: list[int], paper: bytes | None) -> dict:
    """build_report + write_report into a temporary folder; returns the HTML and JSON text."""
    import tempfile
    import time
    from pathlib import Path

    from slime_core.defend import spec
    from slime_core.experiments.audit import build_report, paper_figures_path
    from slime_core.experiments.evaluation import check_grid
    from slime_core.present.html_report import write_report

    t0 = time.perf_counter()
    n_align, k = (300 if pool_size >= 300 else pool_size), 10
    check_grid(ns + [n_align], ks + [k], pool_size)  # fail fast, before any embedding
    grid = {d: list(spec(d).default_strengths) for d in defences}
    bar = st.progress(0.0, text=f"Embedding up to {limit or 'all'} test images with {victim} and tagging captions ...")
    setup = common.defence_setup(victim, limit, n_align, k, "ridge", 0, n_boot)
    bar.progress(0.35, text=f"Attack grid ({len(ns)} N x {len(ks)} k), {len(defences)} defence curve(s), "
                            f"{n_examples} examples ...")
    with tempfile.TemporaryDirectory() as tmp:
        paper_path = paper_figures_path()  # $SLIME_PAPER_FIGURES, unless a file is uploaded
        if paper is not None:
            paper_path = Path(tmp) / "paper_figures.json"
            paper_path.write_bytes(paper)
        report = build_report(attacker, common.eval_samples(limit), victim, grid, ns, ks, n_align, k, "ridge", 0,
                              n_examples, n_boot, paper_path, setup=setup)
        bar.progress(0.9, text="Writing the HTML (plots and thumbnails inlined) ...")
        html_path, json_path = write_report(report, Path(tmp) / "slime_audit.html")
        out = {"html": html_path.read_text(encoding="utf-8"), "json": json_path.read_text(),
               "victim": victim, "images": report["data"]["test_images"], "defences": list(grid),
               "seconds": time.perf_counter() - t0}
    bar.empty()
    return out


if ar_submitted:
    try:
        if not ar_defences:
            st.info("No defence chosen: the report will have no defence curves.")
        st.session_state["ar_result"] = build_audit(
            ar_victim, int(ar_limit), int(ar_boot), int(ar_examples), list(ar_defences),
            int_list(ar_ns, "N values"), int_list(ar_ks, "k values"),
            ar_paper.getvalue() if ar_paper is not None else None)
    except SlimeError as err:
        st.session_state.pop("ar_result", None)
        common.show_error(err)
audit = st.session_state.get("ar_result")
if audit:
    st.success(f"Audit report for {audit['victim']}: {audit['images']} test images, defences "
               f"{', '.join(audit['defences']) or 'none'}; built in {audit['seconds']:.1f} s.")
    r1, r2 = st.columns(2)
    r1.download_button("Download audit report (HTML)", audit["html"], file_name=f"slime_audit_{audit['victim']}.html",
                       mime="text/html", key="ar_html", type="primary")
    r2.download_button("Download audit report (JSON)", audit["json"], file_name=f"slime_audit_{audit['victim']}.json",
                       mime="application/json", key="ar_json")
