"""Page 3 - retrieval explorer: tag leakage vs k and N on the test split, beside the baselines."""

from __future__ import annotations

import streamlit as st

from slime_core.attack_spec import AttackSpec
from slime_core.experiments import explore
from slime_core.infra.errors import SlimeError
from slime_core.present import app_figures as sup
from slime_core.stages.align import list_alignment_methods
from slime_core.stages.metrics import TAG_METRICS

from app_pages import common

st.title("Retrieval explorer")
st.caption("Exact and neighbourhood tag precision/recall/F1 on held-out test images. Each attack figure is a mean "
           "with a bootstrap 95% interval, beside the most-frequent-tags and nearest-public-image baselines and the "
           "oracle (tags from the attacker's own embedding of the image).")

attacker = common.attacker_or_stop()
pool_size = len(attacker.pool_attack)
victims, _ = common.victim_options()
n_choices = [n for n in (10, 30, 100, 300, 500, pool_size) if n <= pool_size]

with st.form("re_form"):
    c1, c2, c3, c4 = st.columns(4)
    victim = c1.selectbox("Victim", victims, key="re_victim")
    method = c2.selectbox("Method", list_alignment_methods(), key="re_method")
    limit = c3.slider("Test images", 10, 125, 40, step=5, key="re_limit",
                      help="A limit keeps the run within seconds; the whole split is 125 images.")
    n_boot = c4.select_slider("Bootstrap resamples", [100, 200, 500, 1000], 200, key="re_boot")
    ns = st.multiselect("N values", n_choices, default=[n for n in (30, 100, 300) if n in n_choices], key="re_ns")
    ks = st.multiselect("k values", [1, 3, 5, 10, 20, 30], default=[1, 5, 10, 20], key="re_ks")
    submitted = st.form_submit_button("Run evaluation", type="primary")

if not ns or not ks:
    st.info("Pick at least one N and one k.")
    st.stop()
params = dict(spec=AttackSpec(victim, sorted(ns), sorted(ks), method), limit=limit, n_boot=n_boot)
if submitted:
    st.session_state["re_params"] = params
if "re_params" not in st.session_state:
    st.info("Press **Run evaluation** (about 10-60 s on a laptop CPU the first time; embeddings are cached).")
    st.stop()
params = st.session_state["re_params"]
try:
    result = common.run_evaluation(**params)
except SlimeError as err:
    common.show_error(err)
    st.stop()
df = sup.result_frame(result)
st.success(f"{result['n_images']} test images, victim {result['victim']} -> {result['attacker']} ({result['method']}), "
           f"{result['bootstrap']} bootstrap resamples.")

m1, m2, m3 = st.columns(3)
metric = m1.selectbox("Metric", TAG_METRICS, index=TAG_METRICS.index("neighbourhood_f1"), key="re_metric")
spec = params["spec"]
n_sel = m2.selectbox("N for the k curve", spec.n_align, index=len(spec.n_align) - 1, key="re_n")
k_sel = m3.selectbox("k for the N curve", spec.k, index=min(2, len(spec.k) - 1), key="re_k")
f1, f2 = st.columns(2)
f1.plotly_chart(sup.metric_vs_k_figure(df, metric, n_sel), key="re_k_fig")
f2.plotly_chart(sup.metric_vs_n_figure(df, metric, k_sel), key="re_n_fig")
st.plotly_chart(sup.difference_figure(df, metric), key="re_diff_fig")
view = df[df["metric"] == metric].drop(columns=["metric"])
st.dataframe(view.style.format(precision=3), hide_index=True)

st.subheader("What leaks most")
st.caption(f"Per tag at N={n_sel}, k={k_sel}: how often the attack retrieved it, how often it was right, and how "
           "often an image carrying it had it recalled.")
try:
    samples = common.eval_samples(params["limit"])
    refs = [common.reference_tags(tuple(s.captions)) for s in samples]
    tags = explore.per_tag_leakage(attacker, samples, refs, spec.victim, n_sel, k_sel, spec.method)
except SlimeError as err:
    common.show_error(err)
    st.stop()
st.dataframe(tags.head(40).style.format({"precision": "{:.2f}", "recall": "{:.2f}"}), hide_index=True)
