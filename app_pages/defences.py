"""Page - defences: what a transform of the victim's embeddings costs the attacker and the owner (one key for all it
releases; the attacker refits on N defended pairs). Numbers and words: the rows `slime defend` prints."""

from __future__ import annotations

import json

import streamlit as st

from slime_core.experiments import defence_curves as curves
from slime_core.infra.errors import SlimeError
from slime_core.present import defence_panel as panel
from slime_core.present.figures import defence_figure
from slime_core.present.serialise import jsonable
from slime_core.present.tables import defence_table, fmt_strength
from slime_core.stages.defences import defence_spec, list_defences

from app_pages import common

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
defence = c2.selectbox("Defence", list_defences(), key="df_defence",
                       format_func=lambda d: f"{d} ({defence_spec(d).short or defence_spec(d).strength})")
spec = defence_spec(defence)
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
                         help=no_captions or "The MBR writer (no LLM: the most typical caption of the 40 nearest "
                              "public images), beside a random public caption and the caption of the mean "
                              "public embedding. Needs the public pool's captions.") and not no_captions
writer = "mbr" if captions else "none"

try:
    with st.spinner(f"Embedding the test images with {victim} and the attacker's encoder, tagging their captions ..."):
        setup = common.defence_setup(victim, int(limit), int(n_align), int(k), "ridge", 0, int(n_boot), writer)
except SlimeError as err:
    common.show_error(err)
    st.stop()
strengths = curves.strengths_for(defence, setup.X_pool.shape[1])
strength = c3.select_slider(f"Strength ({spec.strength})", strengths, strengths[len(strengths) // 2],
                            format_func=fmt_strength, key=f"df_strength_{defence}",
                            help="weakest on the left, strongest on the right")

# one curve per (set-up, defence, key): every strength, so moving the slider only reads a stored row
ckey = ("df_curve", victim, int(limit), int(n_align), int(k), int(n_boot), defence, int(key_seed), tuple(strengths),
        writer)
if ckey not in st.session_state:
    bar = st.progress(0.0, text=f"{defence}: measuring {len(strengths)} strengths ...")

    def step(i, s):
        bar.progress(i / len(strengths), text=f"{defence} at strength {fmt_strength(s)}: defending, "
                                              f"refitting the attacker, retrieving tags ...")
    try:
        st.session_state[ckey] = curves.curve(setup, defence, strengths, int(key_seed), on_step=step)
    except SlimeError as err:
        common.show_error(err)
        st.stop()
    bar.empty()
rows = st.session_state[ckey]
row = next(r for r in rows if r["strength"] == strength)

# ---- what this defence protects against, and what not ----------------------------------------------------------
if warning := panel.linear_warning(defence):
    st.warning(warning, icon=":material/warning:")
if note := panel.non_adaptive_note(row):
    st.caption(note)
p1, p2 = st.columns(2)
p1.success(f"**Protects against:** {spec.protects}", icon=":material/shield:")
p2.warning(f"**Does not protect against:** {spec.does_not}", icon=":material/gpp_bad:")
with st.expander(f"How {defence} works (from the defence module)"):
    st.markdown(spec.description or spec.strength)
    if note := panel.noise_note(row):
        st.caption(note)

# ---- the numbers at the chosen strength -------------------------------------------------------------------------
st.subheader(f"{defence} at strength {fmt_strength(strength)}")
st.caption(panel.setting_note(row))
cards = panel.metric_cards(row, setup.undefended)
for col, card in zip(st.columns(5), cards[:5]):
    col.metric(**card)
for card in cards[5:]:
    st.metric(**card)
st.dataframe(panel.leakage_rows(row), hide_index=True, key="df_table",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in panel.NUMBER_COLUMNS})
st.caption(panel.TABLE_NOTE)
st.markdown(panel.verdict(row))

# ---- the curve --------------------------------------------------------------------------------------------------
st.plotly_chart(defence_figure(rows, selected=row), key="df_fig")
st.caption(panel.curve_note(rows))
with st.expander("The whole curve as `slime defend` prints it"):
    st.code(defence_table(rows), language=None)
st.download_button("Download the curve (JSON)", json.dumps(jsonable(rows), indent=2),
                   file_name=f"slime_defend_{victim}_{defence}.json", mime="application/json", key="df_json")
