"""The headline of "Attack one image": photo, coloured tags, caption and the two leak-vs-prior numbers,
sized to fit 1280x720 without scrolling; presentation mode enlarges it for the back of a room."""

from __future__ import annotations

import html
import re

import streamlit as st

from slime_core.experiments import headline as hl
from slime_core.present import headline_words as hw
from slime_core.present.tag_chips import LEGEND, chips

from app_pages._show import plain

BASE_CSS = """
.block-container {padding-top: 2.6rem; padding-bottom: 1rem;}
.slime-tag {display: inline-block; padding: 1px 10px; margin: 2px 3px; border-radius: 12px; font-size: 1.0rem;}
.slime-caption {font-size: 1.25rem; font-style: italic; margin: 0.2rem 0 0.4rem 0;}
"""
PRESENT_CSS = """
section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], header[data-testid="stHeader"]
  {display: none !important;}
.block-container {padding-top: 1.2rem;}
html, body, [data-testid="stAppViewContainer"] {font-size: 20px;}
.slime-tag {font-size: 1.3rem; padding: 2px 12px;}
.slime-caption {font-size: 1.6rem;}
[data-testid="stMetricValue"] {font-size: 3.2rem !important;}
[data-testid="stMetricLabel"] p {font-size: 1.2rem !important;}
/* the numbers and their deltas speak for themselves on a projector: the sentences under them are for the desk */
[data-testid="stColumn"]:has([data-testid="stMetric"]) [data-testid="stCaptionContainer"] {display: none;}
"""


def style(present: bool) -> None:
    st.html("<style>" + BASE_CSS + (PRESENT_CSS if present else "") + "</style>")


def tags_panel(classified, have_refs: bool | None, near_known: bool) -> None:
    """have_refs None: the reference tags are still being parsed (the tags are shown uncoloured meanwhile)."""
    st.markdown(f"**Recovered tags** (top {len(classified)})")
    st.markdown(chips(classified if have_refs else [(t, "miss") for t, _ in classified]), unsafe_allow_html=True)
    if have_refs is None:
        st.caption("Colouring the tags against the photo's own tags (loading the tag parser) ...")
    elif not have_refs:
        st.caption("No reference captions: tags are not coloured (add captions to score them).")
    elif near_known:
        st.caption(LEGEND)
    else:
        st.caption(LEGEND.split(" · ")[0] + " · **grey** = no exact match (near-miss colours are loading ...)")


def caption_panel(caption: str | None, caption_note: str | None) -> None:
    st.markdown("**Reconstructed caption**")
    if caption:
        tidy = re.sub(r"\s+([.,;:!?])", r"\1", caption)  # "on the snow ." -> "on the snow." (display only)
        st.markdown(f'<div class="slime-caption">&ldquo;{html.escape(tidy)}&rdquo;</div>', unsafe_allow_html=True)
    elif caption_note:
        st.warning(plain(caption_note), icon=":material/edit_off:")  # something the user can fix: say so visibly
    else:
        st.caption("No caption writer selected.")


def layout(image, label: str) -> dict:
    """Photo on the left; empty slots for the tags, the caption and the numbers, filled as each is ready."""
    c1, c2, c3 = st.columns([1.0, 1.35, 1.0], gap="medium")
    with c1:
        if image is not None:
            st.image(image, width="stretch")
        st.text(label)  # plain text: an uploaded file's name is never rendered as Markdown
    with c2:
        slots = {"tags": st.empty(), "caption": st.empty()}
    with c3:
        slots.update(tag_number=st.empty(), percentile=st.empty(), caption_number=st.empty())
    return slots


def fill_tags(slots, classified, have_refs: bool | None, near_known: bool) -> None:
    with slots["tags"].container():
        tags_panel(classified, have_refs, near_known)


def fill_caption(slots, caption, note) -> None:
    with slots["caption"].container():
        caption_panel(caption, note)


def fill_tag_number(slots, attack: float | None, prior: float, k: int) -> None:
    with slots["tag_number"].container():
        if attack is None:
            st.info("Add reference captions (one per line, below the uploader) to score this photo.")
            return
        st.metric("Tag F1 (exact)", f"{attack:.2f}", f"{attack - prior:+.2f} vs guessing", help=hw.TAG_SCORE_HELP,
                  delta_color="normal" if abs(attack - prior) >= 0.005 else "off")
        st.caption(hw.tag_headline(attack, prior, k))


def fill_caption_number(slots, attack: float, prior: float) -> None:
    with slots["caption_number"].container():
        st.metric("Caption ROUGE-L", f"{attack:.2f}", f"{attack - prior:+.2f} vs generic caption", help=hw.CAPTION_HELP,
                  delta_color="normal" if abs(attack - prior) >= 0.005 else "off")
        st.caption(hw.caption_headline(attack, prior))


def percentile_line(slot, value: float, scores: dict, victim: str, n_align: int, k: int) -> None:
    vals = list(scores.values())
    p = hl.percentile(value, vals)
    slot.markdown(f"**This photo: {hw.percentile_words(p, len(vals))}** (percentile {p:.0f} by exact tag F1 at "
                  f"{victim}, N={n_align}, k={k})")
