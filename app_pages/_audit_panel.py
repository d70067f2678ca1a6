"""The Batch report page's audit panel: the form, `slime report`'s build_report on the app's cached defence
set-up, and the HTML and JSON downloads (present.html_report.report_texts, the same files `slime report` writes)."""

from __future__ import annotations

import time

import streamlit as st

from slime_core.attack_spec import AttackSpec, parse_ints
from slime_core.experiments.audit import build_report, paper_figures_path
from slime_core.infra.errors import SlimeError
from slime_core.pipeline import lowfi_maker
from slime_core.present.html_report import report_texts
from slime_core.stages.defences import defence_spec, list_defences
from slime_core.stages.encoders import availability

from app_pages import _lowfi, common

INTRO = ("One self-contained HTML file (plus the same numbers as JSON), as `slime report` writes it: the threat "
         "model, the models used, alignment cosine vs N, leakage per k beside the prior, example images with what "
         "leaked, and leakage-vs-utility curves for the chosen defences (the attacker refitting on defended pairs). "
         "Every number comes from this run, except the paper's reference tables, shown apart and labelled as the "
         "paper's. Keep the images and defences few for an answer in seconds.")


def build_audit(attacker, victim: str, limit: int, n_boot: int, n_examples: int, defences: list[str],
                ns: list[int], ks: list[int], paper: bytes | None, lowfi: str = _lowfi.NONE) -> dict:
    """`slime report`'s build_report on the cached defence set-up; returns the HTML and JSON text. `lowfi`: the
    generator whose image of each example's embedding goes beside the example (none: no image)."""
    t0 = time.perf_counter()
    maker = None if lowfi == _lowfi.NONE else lowfi_maker(lowfi, attacker.bundle.image_encoder)
    n_align, k = min(300, len(attacker.pool_attack)), 10
    grid = AttackSpec(victim, ns, ks).within(attacker)  # fail fast; the point (n_align, k) is checked by prepare
    bar = st.progress(0.0, text=f"Embedding up to {limit or 'all'} test images with {victim} and tagging captions ...")
    setup = common.defence_setup(victim, limit, n_align, k, "ridge", 0, n_boot)
    bar.progress(0.35, text=f"Attack grid ({len(ns)} N x {len(ks)} k), {len(defences)} defence curve(s), "
                            f"{n_examples} examples ...")
    strengths = {d: list(defence_spec(d).default_strengths) for d in defences}
    report = build_report(attacker, common.eval_samples(limit), grid=grid, n_align=n_align, k=k, defences=strengths,
                          n_examples=n_examples, n_boot=n_boot,
                          paper_figures=paper or paper_figures_path(), setup=setup, lowfi=maker)
    bar.progress(0.9, text="Writing the HTML (plots and thumbnails inlined) ...")
    html, json_text = report_texts(report)
    bar.empty()
    return {"html": html, "json": json_text, "victim": victim, "images": report["data"]["test_images"],
            "defences": list(strengths), "seconds": time.perf_counter() - t0}


def show(attacker, victims: list[str]) -> None:
    st.subheader("Audit report")
    st.caption(INTRO)
    encoder = attacker.bundle.image_encoder
    usable, _ = availability.lowfi_choices(lambda method: _lowfi.lowfi_problem(method, encoder))
    with st.form("ar_form"):
        a1, a2, a3, a4 = st.columns(4)
        victim = a1.selectbox("Victim", [v for v in victims if v != attacker.bundle.image_encoder] or victims,
                              key="ar_victim")
        limit = a2.number_input("Test images (0 = all)", 0, 10_000, 20, step=10, key="ar_limit")
        n_boot = a3.select_slider("Bootstrap resamples", [100, 200, 500, 1000], 200, key="ar_boot")
        n_examples = a4.number_input("Example images", 0, 24, 6, key="ar_examples")
        d1, d2 = st.columns([3, 1])
        defences = d1.multiselect("Defences (each at its default strengths; fewer = faster)", list_defences(),
                                  default=["noise", "rotation", "quantise"], key="ar_defences")
        lowfi = d2.selectbox("Generated image beside each example", usable + [_lowfi.NONE],
                             format_func=lambda m: _lowfi.LABELS.get(m, m), key="ar_lowfi")
        b1, b2 = st.columns(2)
        ns = b1.text_input("N values for alignment cosine vs N", "10,30,100,300", key="ar_ns")
        ks = b2.text_input("k values for leakage per k", "1,5,10,20", key="ar_ks")
        paper = st.file_uploader("Optional: other paper figures (JSON) instead of the packaged tables; shown "
                                 "apart and labelled as the paper's",
                                 type=["json"], key="ar_paper")
        submitted = st.form_submit_button("Build audit report")
    if submitted:
        try:
            if not defences:
                st.info("No defence chosen: the report will have no defence curves.")
            st.session_state["ar_result"] = build_audit(
                attacker, victim, int(limit), int(n_boot), int(n_examples), list(defences),
                sorted(set(parse_ints(ns, "N values"))), sorted(set(parse_ints(ks, "k values"))),
                paper.getvalue() if paper is not None else None, lowfi)
        except SlimeError as err:
            st.session_state.pop("ar_result", None)
            common.show_error(err)
    audit = st.session_state.get("ar_result")
    if audit:
        st.success(f"Audit report for {audit['victim']}: {audit['images']} test images, defences "
                   f"{', '.join(audit['defences']) or 'none'}; built in {audit['seconds']:.1f} s.")
        r1, r2 = st.columns(2)
        r1.download_button("Download audit report (HTML)", audit["html"],
                           file_name=f"slime_audit_{audit['victim']}.html", mime="text/html", key="ar_html",
                           type="primary")
        r2.download_button("Download audit report (JSON)", audit["json"],
                           file_name=f"slime_audit_{audit['victim']}.json", mime="application/json", key="ar_json")
