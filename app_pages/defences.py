"""Page - defences: what a transform of the victim's embeddings costs the attacker and the owner.

The owner defends everything it releases (public pool and private test images) with one key; the attacker
refits its alignment on N defended leaked pairs (slime_core.experiments.defence_curves). Leakage and utility come
from `defence_curves.measure`/`knee.mark_knee`, the same numbers `slime defend` prints.
"""

from __future__ import annotations

import json

import streamlit as st

from app_pages import common
from slime_core import defend
from slime_core.experiments import defence_curves as curves
from slime_core.experiments.knee import mark_knee
from slime_core.present.figures import defence_figure
from slime_core.present.tables import defence_table, fmt_strength
from slime_core.errors import SlimeError

st.title("Defences")
st.caption("The owner transforms its image embeddings before they leave it; the attacker adapts by refitting its "
           "alignment on N defended (victim embedding, public image) pairs, as a real attacker holding leaked pairs "
           "would. Leakage (alignment cosine, exact and neighbourhood tag F1 on held-out test images) is shown beside "
           "the prior baseline that needs no embedding at all; utility is the embedding's own job, image-to-image "
           "retrieval (recall@k of each image's clean nearest neighbour under the defended embeddings).")


try:
    attacker = common.get_attacker()
    victims, _ = common.victim_options()
except SlimeError as err:
    common.show_error(err)
    st.stop()
# the attacker's own image encoder as "victim" is the no-alignment oracle, not a defence scenario
victims = [v for v in victims if v != attacker.bundle.image_encoder] or victims
pool_size = len(attacker.pool_attack)
n_choices = [n for n in (10, 30, 100, 300, 500, pool_size) if n <= pool_size]

c1, c2, c3 = st.columns(3)
victim = c1.selectbox("Victim encoder", victims, key="df_victim")
defence = c2.selectbox("Defence", defend.DEFENCES, key="df_defence",
                       format_func=lambda d: f"{d} ({defend.spec(d).short or defend.spec(d).strength})")
spec = defend.spec(defence)
c4, c5, c6 = st.columns(3)
n_align = c4.select_slider("N leaked pairs (attacker refits on them)", n_choices,
                           300 if 300 in n_choices else n_choices[-1], key="df_n")
k = c5.slider("k tags", 1, 30, 10, key="df_k")
limit = c6.number_input("Test images (0 = the whole split)", 0, 10_000, 40, step=10, key="df_limit",
                        help="40 images answer in seconds on 2 CPUs; raise it for tighter intervals.")
with st.expander("More settings"):
    n_boot = st.select_slider("Bootstrap resamples", [100, 200, 500, 1000], 200, key="df_boot")
    key_seed = st.number_input("Owner's secret key / noise seed", 0, 2**31 - 1, 0, key="df_seed")
    no_captions = None if common.public_captions() else "Caption scores " + common.NO_PUBLIC_CAPTIONS
    captions = st.toggle("Also score captions (ROUGE-L)", False, key="df_captions", disabled=bool(no_captions),
                         help=no_captions or "The consensus writer (no LLM: the most agreed-on caption of the 5 "
                              "nearest public images), beside a random public caption and the caption of the mean "
                              "public embedding. Needs the public pool's captions.") and not no_captions
writer = "consensus" if captions else "none"

try:
    with st.spinner(f"Embedding the test images with {victim} and the attacker's encoder, tagging their captions ..."):
        setup = common.defence_setup(victim, int(limit), int(n_align), int(k), "ridge", 0, int(n_boot), writer)
except SlimeError as err:
    common.show_error(err)
    st.stop()
dim = setup.X_pool.shape[1]
strengths = [s for s in spec.default_strengths if defence not in ("pca", "projection") or s <= dim]
if defence in ("pca", "projection") and dim not in strengths:
    strengths = [dim] + strengths  # d' = d: nothing dropped
strength = c3.select_slider(f"Strength ({spec.strength})", strengths, strengths[len(strengths) // 2],
                            format_func=fmt_strength, key=f"df_strength_{defence}",
                            help="weakest on the left, strongest on the right")

# one curve per (set-up, defence, key): every strength, so moving the slider only reads a stored row
ckey = ("df_curve", victim, int(limit), int(n_align), int(k), int(n_boot), defence, int(key_seed), tuple(strengths),
        writer)
if ckey not in st.session_state:
    try:
        for s in strengths:  # a bad strength fails before any work
            defend.make_defence(defence, s, int(key_seed))
        bar = st.progress(0.0, text=f"{defence}: measuring {len(strengths)} strengths ...")
        rows = []
        for i, s in enumerate(strengths):
            bar.progress(i / len(strengths), text=f"{defence} at strength {fmt_strength(s)}: defending, "
                                                  f"refitting the attacker, retrieving tags ...")
            rows.append(curves.measure(setup, defence, s, int(key_seed)))
        mark_knee(rows, setup.undefended)
        bar.empty()
    except SlimeError as err:
        common.show_error(err)
        st.stop()
    st.session_state[ckey] = rows
rows = st.session_state[ckey]
row = next(r for r in rows if r["strength"] == strength)
lk, ut, base = row["leakage"], row["utility"], row["baselines"]["frequent"]

# ---- what this defence protects against, and what not ----------------------------------------------------------
if defence in ("rotation", "shuffle", "projection"):
    st.warning(f"**{defence}** is a linear map of the embeddings: an attacker who fits its alignment on leaked "
               f"defended pairs absorbs it (least squares recovers a rotation or permutation exactly), so leakage "
               f"is (nearly) unchanged. It only stops an attacker reusing a map fitted on undefended embeddings.",
               icon=":material/warning:")
na = lk.get("non_adaptive") or {}
if na.get("applicable"):
    nd = na["neighbourhood_f1_vs_frequent"]
    st.caption(f"An attacker whose N pairs leaked *before* the defence (it keeps its old map): neighbourhood F1 "
               f"{na['neighbourhood_f1']:.3f}, {nd['diff']:+.3f} [{nd['ci_low']:+.3f}, {nd['ci_high']:+.3f}] vs the "
               f"prior. The numbers below are the adaptive attacker's, who refits on defended pairs.")
p1, p2 = st.columns(2)
p1.success(f"**Protects against:** {spec.protects}", icon=":material/shield:")
p2.warning(f"**Does not protect against:** {spec.does_not}", icon=":material/gpp_bad:")
with st.expander(f"How {defence} works (from the defence module)"):
    st.markdown(spec.description or spec.strength)
    info = row["defence_info"]
    if "noise_scale" in info:
        st.caption(f"Noise scale per coordinate at this strength: {info['noise_scale']:.4g}"
                   + (f" (delta {info['delta']:g}, {info['calibration']} calibration)" if "delta" in info else ""))

# ---- the numbers at the chosen strength -------------------------------------------------------------------------
st.subheader(f"{defence} at strength {fmt_strength(strength)}")
st.caption(f"Victim {row['victim']} -> attacker {row['attacker']}, N={row['n_align']} defended pairs, k={row['k']}, "
           f"{row['n_images']} test images, released dimension {row['released_dim']}.")
m = st.columns(5)
m[0].metric("Alignment cosine", f"{lk['alignment_cosine']:.3f}",
            f"{lk['alignment_cosine'] - base['alignment_cosine']:+.3f} vs prior", delta_color="off",
            help=f"95% CI [{lk['alignment_cosine_ci'][0]:.3f}, {lk['alignment_cosine_ci'][1]:.3f}]; prior = cosine "
                 f"of the mean public embedding, {base['alignment_cosine']:.3f}")
for col, key, label in ((m[1], "exact_f1", "Tag F1 (exact)"), (m[2], "neighbourhood_f1", "Neighbourhood F1")):
    dv = lk[f"{key}_vs_frequent"]
    col.metric(label, f"{lk[key]:.3f}", f"{dv['diff']:+.3f} vs prior", delta_color="inverse",
               help=f"95% CI [{lk[key + '_ci'][0]:.3f}, {lk[key + '_ci'][1]:.3f}]; difference to the k most "
                    f"frequent tags ({base[key]:.3f}): 95% CI [{dv['ci_low']:+.3f}, {dv['ci_high']:+.3f}]")
u0 = setup.undefended["utility"]
m[3].metric("Utility: recall@1", f"{ut['recall_at_1']:.3f}", f"{ut['recall_at_1'] - u0['recall_at_1']:+.3f}")
m[4].metric("Utility: recall@5", f"{ut['recall_at_5']:.3f}", f"{ut['recall_at_5'] - u0['recall_at_5']:+.3f}")
if "zero_shot_tag_f1" in ut:
    st.metric("Utility: the owner's zero-shot tagging (exact F1)", f"{ut['zero_shot_tag_f1']:.3f}",
              f"{ut['zero_shot_tag_f1'] - u0['zero_shot_tag_f1']:+.3f}",
              help="The victim's own text tower tags its defended embeddings (top-k over the test tags).")

table = [{"leakage": "alignment cosine", "attack": lk["alignment_cosine"], "ci_low": lk["alignment_cosine_ci"][0],
          "ci_high": lk["alignment_cosine_ci"][1], "prior": base["alignment_cosine"],
          "difference": lk["alignment_cosine"] - base["alignment_cosine"], "diff_ci_low": None, "diff_ci_high": None}]
for key, label in (("exact_f1", "tag F1 (exact)"), ("neighbourhood_f1", "neighbourhood F1")):
    dv = lk[f"{key}_vs_frequent"]
    table.append({"leakage": label, "attack": lk[key], "ci_low": lk[f"{key}_ci"][0], "ci_high": lk[f"{key}_ci"][1],
                  "prior": base[key], "difference": dv["diff"], "diff_ci_low": dv["ci_low"],
                  "diff_ci_high": dv["ci_high"]})
if "caption_rouge_l" in lk:
    for prior in ("random_caption", "mean_embedding_caption"):
        dv = lk[f"caption_rouge_l_vs_{prior}"]
        table.append({"leakage": f"caption ROUGE-L ({lk['caption_writer']}) vs {prior.replace('_', ' ')}",
                      "attack": lk["caption_rouge_l"], "ci_low": lk["caption_rouge_l_ci"][0],
                      "ci_high": lk["caption_rouge_l_ci"][1], "prior": row["baselines"][prior]["caption_rouge_l"],
                      "difference": dv["diff"], "diff_ci_low": dv["ci_low"], "diff_ci_high": dv["ci_high"]})
st.dataframe(table, hide_index=True, key="df_table",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                            ("attack", "ci_low", "ci_high", "prior", "difference", "diff_ci_low", "diff_ci_high")})
st.caption("prior = the k most frequent training tags for the F1s (no embedding needed), the mean public "
           "embedding for the cosine and, for ROUGE-L, a random public caption and the caption written from the mean "
           "public embedding (the stronger prior); difference = attack - prior, paired over images, with its bootstrap 95% "
           "interval (the cosine's interval is on the attack value only).")
nb = lk["neighbourhood_f1_vs_frequent"]
if nb["ci_low"] > 0:
    st.markdown(f":red[**Still leaking:** neighbourhood F1 is above the prior by {nb['diff']:+.3f} "
                f"(95% CI [{nb['ci_low']:+.3f}, {nb['ci_high']:+.3f}]) at recall@1 {ut['recall_at_1']:.2f}.]")
else:
    st.markdown(f":green[**No measurable tag leak:** neighbourhood F1 is not significantly above the prior "
                f"(95% CI of the difference [{nb['ci_low']:+.3f}, {nb['ci_high']:+.3f}] reaches 0)] - at the "
                f"cost of utility recall@1 {ut['recall_at_1']:.2f}.")

# ---- the curve --------------------------------------------------------------------------------------------------
import plotly.graph_objects as go  # noqa: E402

fig = defence_figure(rows)
fig.add_trace(go.Scatter(x=[ut["recall_at_1"]], y=[lk["neighbourhood_f1"]], mode="markers",
                         marker={"symbol": "diamond", "size": 16, "color": "rgba(0,0,0,0)",
                                 "line": {"color": "black", "width": 3}},
                         name=f"selected: strength {fmt_strength(strength)}"))
st.plotly_chart(fig, key="df_fig")
knee = next((r for r in rows if r.get("knee")), None)
stop = next((r for r in rows if r.get("stops_leak")), None)
st.caption((f"Knee (where the trade-off bends): strength {fmt_strength(knee['strength'])}. " if knee else "")
           + (f"The leak stops being measurable from strength {fmt_strength(stop['strength'])}, at recall@1 "
              f"{stop['utility']['recall_at_1']:.2f}." if stop else "No strength here stops the measurable leak."))
with st.expander("The whole curve as `slime defend` prints it"):
    st.code(defence_table(rows), language=None)
from slime_core.present.serialise import jsonable  # noqa: E402

st.download_button("Download the curve (JSON)", json.dumps(jsonable(rows), indent=2),
                   file_name=f"slime_defend_{victim}_{defence}.json", mime="application/json", key="df_json")
