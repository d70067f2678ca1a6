"""Where the attacked embedding comes from: a gallery photo, an uploaded photo, or an uploaded victim embedding.

Every refusal names the uploaded file and is tied to the current upload: a new upload replaces the old message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from slime_core.experiments import headline as hl
from slime_core.infra.errors import SlimeError
from slime_core.stages import uploads as sup
from slime_core.stages.encoders import availability

from app_pages import _gallery, common

SOURCES = ["Demo gallery", "Upload a photo", "Upload a victim embedding"]


@dataclass
class Target:
    label: str
    image: object | None  # path or bytes to show, None for an embedding
    captions: list[str]
    embedding: object
    refs: list[str] | None = None  # reference tags, when known without the parser
    near: list[set] | None = None  # each reference tag's neighbourhood, when known without the text encoder
    notes: list[str] = field(default_factory=list)


def _captions(key: str, label: str) -> list[str]:
    text = st.text_area(label, key=key, height=68)
    return [r.strip() for r in text.splitlines() if r.strip()]


def gallery_target(attacker, victim: str) -> Target:
    items = common.gallery()
    names = [g["name"] for g in items]
    if st.session_state.get("gallery_image") not in names:
        name, rule = _gallery.default_photo(attacker)
        st.session_state["gallery_image"], st.session_state["default_rule"] = name, rule
    name = st.session_state["gallery_image"]
    item = items[names.index(name)]
    target = Target(name, item["path"], item["captions"], common.embed_path(victim, item["path"]))
    tab = _gallery.table(attacker)
    if tab and name in tab["refs"]:
        target.refs = tab["refs"][name]["refs"]
        target.near = [set(n) for n in tab["refs"][name]["near"]] if tab["refs"][name]["near"] is not None else None
    return target


def upload_target(victim: str, dim_of) -> Target | None:
    """None (with a hint on the page) until something is uploaded; SlimeError naming the file when it is unusable."""
    if st.session_state["source"] == "Upload a photo":
        up = st.file_uploader("A photo (jpg, png, webp), at least 32 pixels a side", type=["jpg", "jpeg", "png", "webp"],
                              key="photo")
        captions = _captions("photo_refs", "Reference captions (optional, one per line) to score the attack against")
        if up is None:
            st.info("Upload a photo to attack it. It stays in this session's memory only.")
            return None
        data = up.getvalue()
        return Target(up.name, data, captions, common.embed_upload(victim, up.name, data))
    up = st.file_uploader(f"One {victim} embedding (.npy, .csv or .parquet; the first row is used)",
                          type=list(sup.EMBEDDING_TYPES), key="embedding_file")
    captions = _captions("emb_refs", "Reference captions (optional, one per line)")
    if up is None:
        st.info(f"Upload a victim embedding made with {victim} to attack it.")
        return None
    try:
        arr, _ = sup.parse_embeddings(up.name, up.getvalue())
    except SlimeError as err:
        raise SlimeError(str(err) if up.name in str(err) else f"{up.name}: {err}") from None
    embedding = sup.check_victim_embedding(arr, dim_of(), victim)[0]
    return Target(up.name, None, captions, embedding)


def target(attacker, victim: str, dim_of) -> Target:
    """The attacked item, or a message (error or hint) and the end of this run."""
    try:
        if st.session_state["source"] == "Demo gallery":
            return gallery_target(attacker, victim)
        got = upload_target(victim, dim_of)
    except SlimeError as err:
        common.show_error(err)
        st.stop()
    if got is None:
        st.stop()
    return got


def llm_model() -> str:
    """The litellm model name typed in the sidebar; the names (never the values) of the keys found are shown."""
    keys = availability.any_llm_key()
    st.caption("Keys found in the environment: " + (", ".join(keys) if keys else "none"))
    return st.text_input("litellm model name (e.g. gpt-4o-mini, anthropic/claude-3-5-haiku-latest)", "",
                         key="llm_model").strip()


def reference_tags(t: Target) -> list[str]:
    if t.refs is not None:
        return t.refs
    return common.reference_tags(tuple(t.captions)) if t.captions else []


def classify(pred: list[str], refs: list[str], near) -> list[tuple[str, str]]:
    return hl.classify_tags(pred, refs, near)
