"""Caption writers (the local LLM's weights are loaded once per process by slime_core.infra.loaded_models), which ones
are offered here, and the caption prior (the writer's caption of the mean public embedding)."""

from __future__ import annotations

import streamlit as st

from slime_core.stages.write import make_writer

from app_pages._resources import get_attacker, public_captions


def get_writer(spec: str, mode: str | None = None):
    return make_writer(spec, mode)


@st.cache_data(show_spinner=False, max_entries=16)
def mean_caption(writer_spec: str, k: int) -> str:
    """The writer's caption of the mean public embedding: the caption prior (what a no-information embedding gets)."""
    from slime_core.attack_captions import mean_embedding_caption  # torch: imported once a page is drawn

    return mean_embedding_caption(get_attacker(), get_writer(writer_spec), k)


NO_PUBLIC_CAPTIONS = ("needs the public pool's captions (../shared/data/flickr8k_8k_224), which are not in this "
                      "checkout.")


def writer_options() -> tuple[dict, str | None]:
    """Caption writers offered here, and why the neighbour-caption writers are left out (None when they are offered).
    The first is the default: MBR measured best on dev (README, "Captions")."""
    options = {"mbr": "most typical caption of the nearest public images (MBR, no LLM)",
               "consensus": "nearest public images' consensus caption (no LLM)", "none": "no caption",
               "local": "local SmolLM2-135M (offline LLM; first load up to ~40 s on 2 cores)",
               "litellm": "chat model via litellm (API key)"}
    if public_captions():
        return options, None
    del options["mbr"], options["consensus"]
    return options, "The MBR and consensus captions " + NO_PUBLIC_CAPTIONS
