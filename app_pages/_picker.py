"""The demo gallery's photo picker: a page of thumbnails, each a button that makes its photo the attacked one."""

from __future__ import annotations

import io

import streamlit as st

PER_PAGE = 12


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(path: str, side: int = 160) -> bytes:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((side, side))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)
        return buf.getvalue()


def _choose(name: str) -> None:
    st.session_state["gallery_image"] = name


def picker(items: list[dict], scores: dict | None) -> None:
    """A page of thumbnails; clicking one makes it the attacked photo."""
    pages = max(1, -(-len(items) // PER_PAGE))
    current = st.session_state.get("gallery_image")
    start_page = next((i // PER_PAGE for i, g in enumerate(items) if g["name"] == current), 0)
    page = st.number_input(f"Page (of {pages}, {PER_PAGE} photos each)", 1, pages, start_page + 1, key="gallery_page")
    cols = st.columns(6)
    for i, g in enumerate(items[(page - 1) * PER_PAGE: page * PER_PAGE]):
        with cols[i % 6]:
            st.image(thumbnail(g["path"]), width="stretch")
            label = f"{scores[g['name']]:.2f}" if scores and g["name"] in scores else "attack"
            st.button(("● " if g["name"] == current else "") + label, key=f"pick_{g['name']}", on_click=_choose,
                      args=(g["name"],), width="stretch", help=f"Attack {g['name']}")
