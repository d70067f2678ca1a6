"""The objects every page shares: the attacker (its bundle's arrays, built once per server process with
`st.cache_resource`), the tag parser and text scorer around the models it loads, the public captions, the demo
gallery, and embeddings of one photo.

Loaded models have one owner, slime_core.infra.loaded_models, which every session shares; this module caches only the
attacker and data, so a slider change redoes only the cheap steps. Science lives in slime_core; this module only
wires it to Streamlit. slime_core.pipeline and slime_core.experiments import torch (1-2 s), so the app imports
them inside the functions that use them: a page draws its first elements before torch loads.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from slime_core.infra import settings
from slime_core.infra.errors import SlimeError
from slime_core.stages.data import load_folder
from slime_core.stages.encoders.base import content_hash
from slime_core.stages.tags import make_parser, tags_of_captions
from slime_core.stages.uploads import check_image_upload

from app_pages._show import show_error


@st.cache_resource(show_spinner="Loading the attacker bundle ...")
def get_attacker():
    import torch

    from slime_core.pipeline import Attacker

    # The app's torch work is tiny batches (a few tags, one image); on a shared 2-core machine extra OpenMP
    # threads spin-wait and made MiniLM text encoding ~10x slower in our measurements. SLIME_APP_THREADS overrides.
    torch.set_num_threads(settings.app_threads())
    return Attacker(settings.bundle_dir())


def attacker_or_stop():
    """The attacker, or a clear message and the end of this page's run (e.g. a broken bundle)."""
    try:
        return get_attacker()
    except SlimeError as err:
        show_error(err)
        st.stop()


def get_parser():
    return make_parser("spacy")


def get_scorer():
    return get_attacker().scorer()


@st.cache_data(show_spinner=False)
def reference_tags(captions: tuple[str, ...]) -> list[str]:
    return list(tags_of_captions(list(captions), get_parser()))


@st.cache_data(show_spinner=False)
def gallery() -> list[dict]:
    """The committed demo gallery (held-out test photos with their captions)."""
    from slime_core.pipeline import DEMO_DATA

    return [{"name": s.name, "path": str(s.path), "captions": s.captions}
            for s in load_folder(DEMO_DATA, require_images=False) if s.path is not None]


@st.cache_resource(show_spinner=False)
def public_captions() -> list[str]:
    attacker = get_attacker()
    return attacker.captions_of(attacker.bundle.pool["images"])


def embed_upload(victim: str, name: str, data: bytes):
    """Victim embedding of an uploaded photo, kept in this session only: never written to the shared disk cache
    (and never shared with other sessions). Tiny or unreadable images are refused naming the file."""
    image = check_image_upload(name, data)
    memo = st.session_state.setdefault("_upload_embeddings", {})
    key = (victim, content_hash(bytes(data)))
    if key not in memo:
        memo.clear()  # one uploaded photo at a time per session
        memo[key] = get_attacker().encoder(victim).encode_images([image])[0]
    return memo[key]


@st.cache_data(show_spinner=False, max_entries=256)
def embed_path(victim: str, path: str):
    from slime_core.pipeline import embed_cached as embed_images

    return embed_images(get_attacker(), victim, [path])[0]


def pool_image(name: str) -> Path | None:
    path = get_attacker().data / "images" / name
    return path if path.exists() else None
