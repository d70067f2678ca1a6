"""The batch pages' shared computations: the test samples, an N x k evaluation with a progress bar (kept in the
session), and the defence curves' set-up (once per server process per set of inputs)."""

from __future__ import annotations

import streamlit as st

from slime_core.attack_spec import AttackSpec
from slime_core.stages.data import load_folder
from slime_core.stages.write import make_writer

from app_pages._resources import get_attacker, get_parser, get_scorer, reference_tags
from app_pages._writers import get_writer

EVAL_SPLIT = "test"


@st.cache_data(show_spinner=False)
def eval_samples(limit: int, split: str = EVAL_SPLIT):
    from slime_core.pipeline import default_data

    samples = [s for s in load_folder(default_data(), split, require_images=False) if s.path is not None]
    return samples[:limit] if limit else samples


def run_evaluation(spec: AttackSpec, limit: int, n_boot: int, writer_spec: str = "none") -> dict:
    """`evaluate` over the N x k grid of `spec` on the first `limit` test images, with a progress bar; the result
    is kept in the session."""
    from slime_core.experiments.evaluation import evaluate

    key = ("eval", spec, limit, n_boot, writer_spec)
    if key in st.session_state:
        return st.session_state[key]
    attacker = get_attacker()
    spec.within(attacker)
    samples = eval_samples(limit)
    writer = get_writer(writer_spec) if writer_spec != "none" else None
    bar = st.progress(0.0, text=f"Evaluating {len(samples)} test images ...")
    result = evaluate(attacker, samples, spec=spec, writer=writer, n_boot=n_boot, progress=False,
                      parser=get_parser(), scorer=get_scorer(),
                      on_progress=lambda f, msg: bar.progress(min(f, 1.0), text=f"{msg} ...")).to_dict()
    st.session_state[key] = result
    return result


@st.cache_resource(show_spinner=False, max_entries=4)
def defence_setup(victim: str, limit: int, n_align: int, k: int, method: str = "ridge", seed: int = 0,
                  n_boot: int = 200, writer: str = "none"):
    """`defence_curves.prepare` on the first `limit` test images (victim and attacker embeddings, reference tags, the
    prior baselines and the undefended point), once per set of inputs; shared by the Defences page and the
    audit report button. Reuses the app's parser and text encoder. `writer` ("none" | "mbr") adds
    caption ROUGE-L."""
    from slime_core.experiments.defence_curves import prepare
    samples = eval_samples(limit)
    refs = [reference_tags(tuple(s.captions)) for s in samples]
    return prepare(get_attacker(), samples, AttackSpec(victim, n_align, k, method, seed), n_boot=n_boot, refs=refs,
                   scorer=get_scorer(), writer=make_writer(writer))
