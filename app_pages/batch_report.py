"""Page 5 - batch report: run the evaluation on a split, see tables and charts, download them; and build the
self-contained audit report (`slime report`) with its JSON (app_pages/_audit_panel.py)."""

from __future__ import annotations

import json

import streamlit as st

from slime_core.attack_spec import AttackSpec, parse_ints
from slime_core.infra.errors import SlimeError
from slime_core.present import app_figures as sup
from slime_core.present.html_report import evaluation_report, render_html
from slime_core.present.tables import evaluation_table
from slime_core.stages.align import list_alignment_methods
from slime_core.stages.metrics import TAG_METRICS

from app_pages import _audit_panel, common

st.title("Batch report")
st.caption("The `slime eval` table in the browser: alignment cosine and tag P/R/F1 per (N, k) on held-out test "
           "images, each beside its baselines with the paired difference and its bootstrap 95% interval; captions "
           "beside a random public caption.")

attacker = common.attacker_or_stop()
victims, _ = common.victim_options()
have_captions = bool(common.public_captions())

with st.form("br_form"):
    c1, c2, c3, c4 = st.columns(4)
    victim = c1.selectbox("Victim", victims, key="br_victim")
    method = c2.selectbox("Method", list_alignment_methods(), key="br_method")
    limit = c3.number_input("Test images (0 = all)", 0, 10_000, 40, step=10, key="br_limit")
    n_boot = c4.select_slider("Bootstrap resamples", [100, 200, 500, 1000], 500, key="br_boot")
    n_text = st.text_input("N values (comma-separated)", "30,100,300", key="br_ns")
    k_text = st.text_input("k values (comma-separated)", "1,5,10,20", key="br_ks")
    captions = st.checkbox("Score captions too (the MBR writer, beside a random public caption and the mean "
                           "embedding's caption)", value=False,
                           disabled=not have_captions, key="br_captions",
                           help=None if have_captions else "needs the pool captions (the full dataset folder)")
    submitted = st.form_submit_button("Run evaluation", type="primary")


def int_list(text: str, what: str) -> list[int]:
    return sorted(set(parse_ints(text, what)))


bad_grid = False
if submitted:
    try:  # the grid is checked here, where it is typed, before anything runs
        spec = AttackSpec(victim, int_list(n_text, "N values"), int_list(k_text, "k values"), method).within(attacker)
        st.session_state["br_params"] = dict(spec=spec, limit=int(limit), n_boot=int(n_boot),
                                             writer_spec="mbr" if captions else "none")
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
        st.code(evaluation_table(result), language=None)
    d1, d2, d3 = st.columns(3)
    d1.download_button("Download CSV", df.to_csv(index=False), file_name="slime_eval.csv", mime="text/csv", key="br_csv")
    d2.download_button("Download JSON", json.dumps(result, indent=2), file_name="slime_eval.json",
                       mime="application/json", key="br_json")
    d3.download_button("Download HTML report", render_html(evaluation_report(result)), file_name="slime_report.html",
                       mime="text/html", key="br_html")


if not bad_grid:
    show_evaluation()

# ---- the audit report (what `slime report` writes) -----------------------------------------------------------------
st.divider()
_audit_panel.show(attacker, victims)
