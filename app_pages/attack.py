"""Page 1 - attack one image: the leak in one screen (photo, coloured tags, caption, numbers beside their priors), then
original | generated | nearest photos | tags | caption | scene graph, then details (layout in app_pages/_*.py)."""

from __future__ import annotations

import streamlit as st

from slime_core.attack_spec import AttackSpec
from slime_core.experiments import headline as hl
from slime_core.infra.errors import SlimeError
from slime_core.stages.align import list_alignment_methods

from app_pages import _details, _gallery, _headline, _inputs, _lowfi, _picker, _show, common

t1, t2 = st.columns([3, 1])
t1.markdown("### What one image embedding gives away")
present = t2.toggle("Presentation mode", key="present", help="Large type, no sidebar, the headline only.")
_headline.style(present)
attacker = common.attacker_or_stop()
victims, unavailable = common.victim_options_fast()  # the paper encoders are probed after the first tags
writers, no_consensus = common.writer_options()
with st.sidebar:
    st.subheader("Settings")
    source = st.radio("Image source", _inputs.SOURCES, key="source")
    victim = st.selectbox("Victim embedder", victims, index=victims.index("lite0") if "lite0" in victims else 0,
                          key="victim", help="lite2 is the attacker's own image tower: the no-alignment ceiling.")
    unavailable_slot = st.empty()
    with unavailable_slot.container():
        common.unavailable_expander(unavailable)
    method = st.selectbox("Alignment method", list_alignment_methods(), key="method")
    n_align = st.slider("N leaked pairs", 10, len(attacker.pool_attack), min(300, len(attacker.pool_attack)), step=5,
                        key="n_align")
    k = st.slider("k tags", 1, 50, 10, key="k")
    writer_spec = st.selectbox("Caption writer", list(writers), format_func=writers.get, key="writer")
    if no_consensus:
        st.caption(no_consensus)
    llm_model = _inputs.llm_model() if writer_spec == "litellm" else None
    lowfi = _lowfi.choice(attacker)

log: list = []
with common.timed(log, "embed"):
    target = _inputs.target(attacker, victim, lambda: attacker.alignment(victim, n_align, method).W.shape[0])
try:
    with common.timed(log, "align + retrieve"):
        slow = method != "ridge" and n_align > 300
        with st.spinner(f"Fitting {method} on N={n_align} pairs: this can take 10-50 s on 2 cores ..." if slow
                        else "Aligning and retrieving ..."):
            result = attacker.attack(embedding=target.embedding, spec=AttackSpec(victim, n_align, k, method),
                                     name=target.label)
except SlimeError as err:
    common.show_error(err)
    st.stop()

_show.show_warnings(result.warnings)  # the map sends this embedding onto the prior (align.collapse_warnings)
pred = [t["tag"] for t in result.tags]
slots = _headline.layout(target.image, target.label)
if target.refs is None and target.captions:  # the tags go on screen before the tag parser loads to colour them
    _headline.fill_tags(slots, [(t, "miss") for t in pred], None, False)
with common.timed(log, "reference tags"):
    refs = _inputs.reference_tags(target)
_headline.fill_tags(slots, hl.classify_tags(pred, refs, target.near), bool(refs), target.near is not None)
tag_f1 = hl.exact_f1(pred, refs) if refs else None
_headline.fill_tag_number(slots, tag_f1, hl.exact_f1(attacker.frequent_tags(k), refs) if refs else 0.0, k)

caption, caption_note, mean_cap = None, None, None
with common.timed(log, "caption"):
    if writer_spec == "litellm" and not llm_model:
        caption_note = "No caption: enter a litellm model name in the sidebar."
    elif writer_spec != "none":
        spec = llm_model if writer_spec == "litellm" else writer_spec
        wait = {"local": "Writing with SmolLM2 (its first load takes up to ~40 s on 2 cores) ...",
                "litellm": f"Asking {llm_model} (a remote call; up to ~30 s) ..."}.get(writer_spec, "Writing the caption ...")
        try:
            with slots["caption"].container(), st.spinner(wait):
                writer = common.get_writer(spec)
                caption = attacker.caption(pred, result.aligned, writer)
                mean_cap = common.mean_caption(spec, k) if target.captions else None
        except SlimeError as err:
            caption_note = f"No caption: {err}"
_headline.fill_caption(slots, caption, caption_note)
if caption and mean_cap and target.captions:
    _headline.fill_caption_number(slots, hl.caption_rouge(caption, target.captions),
                                  hl.caption_rouge(mean_cap, target.captions))
if refs and target.near is None:
    with common.timed(log, "near-miss colours"), slots["tags"].container(), st.spinner("Loading near-miss colours ..."):
        target.near = common.get_scorer().neighbours(refs)
    _headline.fill_tags(slots, hl.classify_tags(pred, refs, target.near), True, True)

tab = _gallery.table(attacker)
if refs and tab:
    with common.timed(log, "percentile"), slots["percentile"].container(), \
            st.spinner(f"Ranking this photo among the {len(tab['refs'])} test photos (first time per victim: "
                       f"embedding them, cached on disk) ..."):
        scores = _gallery.all_scores(victim, n_align, k, method, tab["refs"], _gallery.table_path(attacker).name)
    _headline.percentile_line(slots["percentile"], tag_f1, scores, victim, n_align, k)
elif refs:
    slots["percentile"].caption("Percentile among the test photos: being computed in the background (first start "
                                "only); shown from the next change.")

if not present:
    shown = _lowfi.row(attacker, target, result, pred, caption, caption_note, lowfi, log,
                       hl.classify_tags(pred, refs, target.near) if refs else None)
    if source == "Demo gallery":
        with st.expander("Choose another photo (125 held-out test photos; the number is each photo's exact tag F1)",
                         expanded=False):
            st.caption(f"Shown first: {st.session_state.get('default_rule', hl.DEFAULT_RULE)}.")
            _picker.picker(common.gallery(), scores if refs and tab else None)
    with common.timed(log, "details"):
        d1, d2 = st.columns([1, 1])
        with d1:
            _details.alignment(attacker, result, method)
            if target.captions and target.image is not None and source == "Demo gallery":
                st.markdown("**The photo's own captions**\n" + "\n".join(f"- {c}" for c in target.captions))
        with d2:
            _details.scores(attacker, result, refs, target.captions, caption, mean_cap)
    _details.timings(log)
    with st.expander("Raw result (JSON)"):
        st.json(dict(result.to_dict(), caption=caption, **shown))
_gallery.start_warmup(attacker)
common.finish_victim_options(unavailable_slot, victims)
