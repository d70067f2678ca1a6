"""Page 2 - alignment explorer: how well N leaked pairs map a victim's space onto the attacker's."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from slime_core.experiments import explore
from slime_core.infra.errors import SlimeError
from slime_core.present import app_figures
from slime_core.stages.align import list_alignment_methods

from app_pages import common

st.title("Alignment explorer")
st.caption("Held-out cosine between aligned victim embeddings and the attacker's own embeddings of the same public "
           "images, as the number of leaked pairs N grows. ridge picks its penalty by leave-one-out; lstsq is the "
           "paper's one-step least squares; Procrustes keeps the map orthogonal (equal dimensions only).")

attacker = common.attacker_or_stop()
pool_size = len(attacker.pool_attack)
victims, unavailable = common.victim_options()

c1, c2, c3 = st.columns(3)
chosen = c1.multiselect("Victims", victims, default=[v for v in ("lite0", "lite1") if v in victims] or victims[:1],
                        key="al_victims")
methods = c2.multiselect("Methods", list_alignment_methods(), default=["ridge"], key="al_methods",
                         help="lstsq and Procrustes score each fit by 5-fold cross-validation: seconds per N on a CPU.")
points = c3.slider("N values (log-spaced, 10 ... pool size)", 3, 10, 6, key="al_points")
common.unavailable_expander(unavailable)
ns = explore.n_grid(pool_size, points)
st.caption(f"N = {', '.join(map(str, ns))} (pool of {pool_size} public images)")

if not chosen or not methods:
    st.info("Pick at least one victim and one method.")
    st.stop()

key = ("al_curve", tuple(chosen), tuple(methods), tuple(ns))
if key not in st.session_state:
    bar = st.progress(0.0, text="Fitting alignments ...")
    st.session_state[key] = explore.alignment_curve(attacker, chosen, methods, ns,
                                                progress=lambda f, t: bar.progress(min(f, 1.0), text=f"Fitting {t}"))
    bar.empty()
rows = st.session_state[key]
st.plotly_chart(app_figures.alignment_curve_figure(rows), key="al_curve_fig")
notes = {r["note"] for r in rows if r["note"]}
for note in notes:
    st.warning(note)
with st.expander("Table"):
    st.dataframe(pd.DataFrame(rows), hide_index=True)

st.subheader("2-D projection")
st.caption("PCA of the attacker's embeddings of held-out pool images and the aligned victim embeddings of the same "
           "images; grey lines join the two views of one image.")
p1, p2, p3 = st.columns(3)
pv = p1.selectbox("Victim", chosen, key="al_proj_victim")
pm = p2.selectbox("Method", methods, key="al_proj_method")
pn = p3.select_slider("N", options=ns, value=ns[min(len(ns) - 1, len(ns) // 2)], key="al_proj_n")
try:
    proj = explore.projection(attacker, pv, int(pn), pm)
except SlimeError as err:
    common.show_error(err)
    st.stop()
st.plotly_chart(app_figures.projection_figure(proj), key="al_proj_fig")
st.caption(f"{proj['held_out']} held-out images, mean cosine {proj['cosine'].mean():.3f}.")
