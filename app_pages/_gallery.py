"""The demo gallery behind the headline: reference tags and every test photo's score (thumbnails: _picker.py).

The gallery table (each photo's reference tags and their neighbourhoods, and each photo's tag F1 at the default
settings, which picks the default photo) is computed once, in a background thread after the first page has been
drawn, and written atomically to the disk cache; later starts read it in milliseconds.
"""

from __future__ import annotations

import threading

import numpy as np
import streamlit as st

from slime_core.experiments import headline as hl
from slime_core.infra import files, settings
from slime_core.stages import bundle
from slime_core.stages.data import load_folder

from app_pages import common

DEFAULTS = hl.DEFAULT_SETTINGS


def table_path(attacker):
    captions = [(g["name"], g["captions"]) for g in common.gallery()]
    key = files.cache_key(bundle.bundle_identity(attacker.bundle), captions, DEFAULTS)
    return settings.cache_root() / "app" / f"gallery_{key}.json"


@st.cache_resource(show_spinner=False)
def _state() -> dict:
    return {"table": None, "thread": None, "error": None, "lock": threading.Lock()}


def table(attacker) -> dict | None:
    """The gallery table when it is ready (from memory or the disk cache), else None."""
    state = _state()
    if state["table"] is None:
        data = files.load_json(table_path(attacker))
        if data and "refs" in data and "default_scores" in data:
            state["table"] = data
    return state["table"]


def _build(attacker, parser, path) -> None:
    from slime_core.pipeline import DEMO_DATA

    state = _state()
    try:
        samples = [s for s in load_folder(DEMO_DATA, require_images=False) if s.path is not None]
        data = hl.gallery_table(attacker, samples, parser, **DEFAULTS)
        state["table"] = data  # kept for this server even when the disk cache cannot take it
        try:
            files.save_json_atomic(path, data)
        except OSError:
            pass  # SLIME_CACHE unwritable: the table is recomputed by the next server process
    except Exception as err:  # noqa: BLE001 - a failed warm-up only costs the percentile; say why on the page
        state["error"] = f"{type(err).__name__}: {err}"


def start_warmup(attacker) -> None:
    """Compute the gallery table in the background (once per server process) when it is not cached yet."""
    state = _state()
    with state["lock"]:
        if state["table"] is not None or state["thread"] is not None or table(attacker) is not None:
            return
        state["thread"] = threading.Thread(target=_build, args=(attacker, common.get_parser(), table_path(attacker)),
                                           name="slime-gallery-warmup", daemon=True)
        state["thread"].start()


def warming() -> bool:
    t = _state()["thread"]
    return t is not None and t.is_alive()


SHIPPED_DEFAULT = settings.DEMO_DATA / "default_photo.json"  # written by bench/demo_default.py for the shipped bundle


def default_photo(attacker) -> tuple[str, str]:
    """(photo name, how it was chosen): the shipped choice for this bundle (so the first start opens on it too),
    else the gallery table's, else the first photo by name while that table is computed."""
    names = [g["name"] for g in common.gallery()]
    shipped = files.load_json(SHIPPED_DEFAULT)
    if shipped and shipped.get("bundle") == bundle.bundle_identity(attacker.bundle) and shipped.get("image") in names:
        return shipped["image"], hl.DEFAULT_RULE
    tab = table(attacker)
    if tab and "gain" in tab["default_scores"]:
        d = tab["default_scores"]
        return hl.default_photo(d["names"], d["gain"]), hl.DEFAULT_RULE
    return names[0], ("the first test photo by file name: the typical-photo default is being computed in the "
                      "background on this first start")


@st.cache_data(show_spinner=False, max_entries=8)
def gallery_embeddings(victim: str) -> np.ndarray:
    from slime_core.pipeline import embed_cached as embed_images

    return embed_images(common.get_attacker(), victim, [g["path"] for g in common.gallery()])


@st.cache_data(show_spinner=False, max_entries=32)
def all_scores(victim: str, n_align: int, k: int, method: str, _refs: dict, refs_key: str) -> dict:
    """{photo name: exact tag F1} for every gallery photo at these settings."""
    names = [g["name"] for g in common.gallery()]
    return hl.scores_by_name(common.get_attacker(), gallery_embeddings(victim), names, _refs, victim, n_align, k, method)
