"""Shared, cached resources for the pages: one attacker, one tag parser, one scorer, the demo gallery.

Everything heavy is built once per server process (`st.cache_resource`) so a slider change only redoes
the cheap steps. Science lives in slime_core; this module only wires it to Streamlit.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from slime_core import settings
from slime_core.errors import SlimeError

EVAL_SPLIT = "test"


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


@st.cache_resource(show_spinner="Loading the spaCy tag parser ...")
def get_parser():
    from slime_core.tags import make_parser

    return make_parser("spacy")


@st.cache_resource(show_spinner="Loading the text encoder for neighbourhood scores ...")
def get_scorer():
    return get_attacker().scorer()


@st.cache_resource(show_spinner="Loading the caption writer ...")
def get_writer(spec: str, mode: str | None = None):
    from slime_core.write import make_writer

    return make_writer(spec, mode)


@st.cache_data(show_spinner=False)
def reference_tags(captions: tuple[str, ...]) -> list[str]:
    from slime_core.tags import tags_of_captions

    return list(tags_of_captions(list(captions), get_parser()))


@st.cache_data(show_spinner=False)
def gallery() -> list[dict]:
    """The committed demo gallery (held-out test photos with their captions)."""
    from slime_core.data import load_folder
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
    from slime_core.encoders.base import content_hash
    from slime_core.uploads import check_image_upload

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


@st.cache_data(show_spinner=False)
def eval_samples(limit: int, split: str = EVAL_SPLIT):
    from slime_core.data import load_folder
    from slime_core.pipeline import default_data

    samples = [s for s in load_folder(default_data(), split, require_images=False) if s.path is not None]
    return samples[:limit] if limit else samples


def run_evaluation(victim: str, n_aligns: list[int], ks: list[int], method: str, limit: int, n_boot: int,
                   writer_spec: str = "none", seed: int = 0) -> dict:
    """evaluate() once per N with a progress bar; the merged result is kept in the session."""
    from slime_core.experiments.evaluation import check_grid, evaluate

    key = ("eval", victim, tuple(n_aligns), tuple(ks), method, limit, n_boot, writer_spec, seed)
    if key in st.session_state:
        return st.session_state[key]
    attacker = get_attacker()
    check_grid(n_aligns, ks, len(attacker.pool_attack))
    samples = eval_samples(limit)
    writer = get_writer(writer_spec) if writer_spec != "none" else None
    bar = st.progress(0.0, text=f"Evaluating {len(samples)} test images ...")
    result = evaluate(attacker, samples, victim, n_aligns, ks, method, seed, writer, n_boot=n_boot, progress=False,
                      parser=get_parser(), scorer=get_scorer(),
                      on_progress=lambda f, msg: bar.progress(min(f, 1.0), text=f"{msg} ..."))
    st.session_state[key] = result
    return result


# Characters that make Markdown links, emphasis, code, HTML, tables, Streamlit colour/icon directives or LaTeX.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]()<>#!|~$:])")
_LIST_START = re.compile(r"^(\s*)([-+]|\d+\.)")


def plain(text: str) -> str:
    """`text` shown literally by st.error/st.warning: an uploaded file's name never becomes a link or markup."""
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", text)
    return _LIST_START.sub(_escape_list_marker, escaped)


def _escape_list_marker(m: re.Match) -> str:
    indent, marker = m.group(1), m.group(2)
    return indent + ("\\" + marker if marker in "-+" else marker[:-1] + "\\.")


def show_error(err: Exception) -> None:
    st.error(plain(str(err)), icon=":material/error:")


@contextmanager
def timed(log: list, label: str):
    start = time.perf_counter()
    yield
    log.append((label, time.perf_counter() - start))


@st.cache_resource(show_spinner="Checking which paper encoders can load here ...")
def encoder_problem(name: str) -> str | None:
    """None when `name` loads here and the pool images are on disk to embed N of them, else why not."""
    from slime_core.errors import SlimeError

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
    from slime_core.availability import victim_choices

    return victim_choices(get_attacker().bundle.encoders(), probe=encoder_problem)


@st.cache_resource(show_spinner=False)
def _probe_state() -> dict:
    return {"done": False}


def victim_options_fast():
    """victim_options() once this server has probed the paper encoders; before that, without the probe (which
    imports open_clip and transformers: ~10 s on a busy 2-core machine) so the first tags are not kept waiting.
    `finish_victim_options` probes after the page is drawn."""
    from slime_core.availability import victim_choices

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


def pool_image(name: str) -> Path | None:
    path = get_attacker().data / "images" / name
    return path if path.exists() else None


@st.cache_resource(show_spinner=False, max_entries=4)
def defence_setup(victim: str, limit: int, n_align: int, k: int, method: str = "ridge", seed: int = 0,
                  n_boot: int = 200, writer: str = "none"):
    """`defence_curves.prepare` on the first `limit` test images (victim and attacker embeddings, reference tags, the
    prior baselines and the undefended point), once per set of inputs; shared by the Defences page and the
    audit report button. Reuses the app's parser and text encoder. `writer` ("none" | "consensus") adds
    caption ROUGE-L."""
    from slime_core.experiments.defence_curves import prepare
    from slime_core.write import make_writer

    samples = eval_samples(limit)
    refs = [reference_tags(tuple(s.captions)) for s in samples]
    return prepare(get_attacker(), samples, victim, n_align, k, method, seed, n_boot, False, refs=refs,
                   scorer=get_scorer(), writer=make_writer(writer))


@st.cache_data(show_spinner=False, max_entries=16)
def mean_caption(writer_spec: str, k: int) -> str:
    """The writer's caption of the mean public embedding: the caption prior (what a no-information embedding gets)."""
    from slime_core import headline as hl

    return hl.mean_embedding_caption(get_attacker(), get_writer(writer_spec), k)


NO_PUBLIC_CAPTIONS = ("needs the public pool's captions (../shared/data/flickr8k_subset1000), which are not in this "
                      "checkout.")


def writer_options() -> tuple[dict, str | None]:
    """Caption writers offered here, and why the consensus writer is left out (None when it is offered)."""
    options = {"consensus": "nearest public images' consensus caption (no LLM)", "none": "no caption",
               "local": "local SmolLM2-135M (offline LLM; first load up to ~40 s on 2 cores)",
               "litellm": "chat model via litellm (API key)"}
    if public_captions():
        return options, None
    del options["consensus"]
    return options, "The consensus caption " + NO_PUBLIC_CAPTIONS
