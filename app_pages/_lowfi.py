"""The attack page's low-fidelity row, below the headline: original | image generated from the embedding | nearest
public photos | tags | caption | scene graph, side by side, the objects seen in the generated image marked in the
graph; and the generator choice in the sidebar, generators that cannot run here greyed with their loader's reason
(as the paper encoders are).

The offline generator takes a few seconds (20 steps of inversion from the nearest public photos' latents), drawn
after the headline under a spinner; the image is kept in the session per (generator, embedding), so moving a slider
that leaves the embedding alone makes nothing twice. Whether a generator can run is checked without loading it
(`lowfi.check_lowfi`), so the sidebar costs the first screen nothing.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from slime_core.infra.errors import SlimeError
from slime_core.stages.encoders import availability

from app_pages import _details, common

NONE = "none"
LABELS = {"offline": "offline (TAEF2 latent inversion, a few s)", "kandinsky": "Kandinsky 2.2 (the paper's decoder)",
          NONE: "none"}
WIDTHS = [1.0, 1.0, 1.0, 1.0, 1.0, 1.6]


@st.cache_resource(show_spinner=False)
def lowfi_problem(method: str, image_encoder: str) -> str | None:
    """None when `method`'s generator can run for an attacker whose attack space is `image_encoder`, else why not;
    nothing is loaded (the first generation loads it)."""
    from slime_core.stages.lowfi import check_lowfi

    try:
        check_lowfi(method, image_encoder)
    except SlimeError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - a broken install or corrupt weights: say so rather than crash the page
        return f"failed to load: {type(err).__name__}: {err}"
    return None


def choice(attacker) -> str:
    """The sidebar's generator choice: the usable generators first (the default), then none; the others greyed."""
    encoder = attacker.bundle.image_encoder
    usable, unavailable = availability.lowfi_choices(lambda method: lowfi_problem(method, encoder))
    method = st.selectbox("Low-fidelity image", usable + [NONE], format_func=lambda m: LABELS.get(m, m), key="lowfi",
                          help="A picture generated from the aligned embedding alone: what the embedding looks like.")
    for u in unavailable:
        st.caption(f":grey[**{LABELS.get(u['method'], u['method'])}** unavailable: {common.plain(u['reason'])}]")
    return method


def generated(attacker, aligned, method: str):
    """(image, {"method", "seconds", "image"}, None) or (None, None, why there is none)."""
    if method == NONE:
        return None, None, "No low-fidelity image: choose a generator in the sidebar."
    key = (method, hashlib.sha1(aligned.tobytes()).hexdigest())
    memo = st.session_state.setdefault("_lowfi_images", {})
    if key not in memo:
        from slime_core.pipeline import lowfi_maker

        try:
            made = attacker.generate_lowfi(aligned, lowfi_maker(method, attacker.bundle.image_encoder))
        except SlimeError as err:
            return None, None, f"No low-fidelity image: {err}"
        memo.clear()  # one image per session
        memo[key] = made
    image, info = memo[key]
    return image, dict(info), None


def objects(attacker, result, pred: list[str], image) -> tuple[dict | None, str | None]:
    nearest = result.neighbours[0]["image"] if result.neighbours else None
    try:
        return attacker.objects_of(pred, image, nearest), None
    except SlimeError as err:  # e.g. the detector's model missing from this checkout
        return None, f"Objects not listed: {err}"


def row(attacker, target, result, pred: list[str], caption: str | None, caption_note: str | None, method: str,
        log: list, classified=None) -> dict:
    """Draw the row; returns {"lowfi", "objects"} as the CLI's JSON has them (the image's path None)."""
    cols = st.columns(WIDTHS, gap="small")
    with cols[0]:
        st.markdown("**Original**")
        if target.image is not None:
            st.image(target.image, width="stretch")
        else:
            st.caption("An uploaded embedding: the attacker never sees a photo.")
    with cols[1]:
        st.markdown("**Generated from the embedding**")
        with common.timed(log, "low-fidelity image"), st.spinner(f"Generating ({method}) ..."):
            image, info, note = generated(attacker, result.aligned, method)
        if image is not None:
            st.image(image, caption=f"{info['method']}, {info['seconds']:.2f} s", width="stretch")
        else:
            st.caption(common.plain(note))
    with cols[2]:
        _details.neighbours(attacker, result, stacked=True)
    with common.timed(log, "objects"), cols[5], st.spinner("Finding the objects ..."):
        found, why = objects(attacker, result, pred, image)
    with cols[3]:
        st.markdown("**Tags**")
        st.markdown("\n".join(f"- {common.plain(t)}" for t in pred))
        if found:
            st.caption(f"COCO objects the tags name: {_details.names(found['tags'])}")
    with cols[4]:
        st.markdown("**Caption**")
        st.markdown(f"_{common.plain(caption)}_" if caption else common.plain(caption_note or "No caption writer."))
    with cols[5]:
        _details.scene_graph(pred, found, why)
    _details.download(attacker, target, result, caption, image, info, found, classified)
    return {"lowfi": info, "objects": found}
