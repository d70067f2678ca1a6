"""Which victim encoders this server can offer: the paper encoders are probed once per server process (loading
each, checking the pool images are on disk), after the first page has been drawn so the first tags do not wait."""

from __future__ import annotations

import streamlit as st

from slime_core.infra.errors import SlimeError
from slime_core.stages.encoders.availability import victim_choices

from app_pages._resources import get_attacker


@st.cache_resource(show_spinner="Checking which paper encoders can load here ...")
def encoder_problem(name: str) -> str | None:
    """None when `name` loads here and the pool images are on disk to embed N of them, else why not."""
    attacker = get_attacker()
    missing = [p for p in attacker.pool_paths() if not p.exists()]
    if missing:
        return f"its embeddings of the public pool are not in the bundle and the pool images are not in {attacker.data}"
    try:
        attacker.encoder(name)
    except SlimeError as err:
        return str(err)
    except Exception as err:  # a broken install or corrupt weights: say so rather than crash the page
        return f"failed to load: {type(err).__name__}: {err}"
    return None


def victim_options():
    return victim_choices(get_attacker().bundle.encoders(), probe=encoder_problem)


@st.cache_resource(show_spinner=False)
def _probe_state() -> dict:
    return {"done": False}


def victim_options_fast():
    """victim_options() once this server has probed the paper encoders; before that, without the probe (which
    imports open_clip and transformers: ~10 s on a busy 2-core machine) so the first tags are not kept waiting.
    `finish_victim_options` probes after the page is drawn."""
    if _probe_state()["done"]:
        return victim_options()
    return victim_choices(get_attacker().bundle.encoders())


def finish_victim_options(slot, offered: list[str]) -> None:
    """Probe the paper encoders (once per server), list the unavailable ones in `slot`, and rerun when the probe
    found a usable encoder the page did not offer yet."""
    with slot.container(), st.spinner("Checking which paper encoders can load here ..."):
        usable, unavailable = victim_options()
    _probe_state()["done"] = True
    with slot.container():
        unavailable_expander(unavailable)
    if usable != offered:
        st.rerun()


def unavailable_expander(unavailable: list[dict]) -> None:
    if unavailable:
        with st.expander(f"Paper encoders not available here ({len(unavailable)})"):
            for u in unavailable:
                st.markdown(f":grey[**{u['encoder']}** ({u['dim']}-d) - {u['about']}]  \n"
                            f":grey[unavailable: {u['reason']}]")
