"""Below the headline: the low-fidelity row's nearest public images, scene graph and HTML download (_lowfi.py lays
the row out), the alignment, every score beside its baselines, timings."""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from slime_core.experiments import single_image as sup
from slime_core.infra.errors import SlimeError
from slime_core.present import headline_words as hw
from slime_core.present import scene_graph_dot as sgd
from slime_core.stages import align
from slime_core.stages.infer import graph_from_tags

from app_pages import common


def neighbours(attacker, result, stacked: bool = False) -> None:
    """The public photos nearest to the aligned embedding: five in a row, or (`stacked`, for a narrow column) the
    first three one above the other; their tags where the photos are not on disk."""
    st.markdown("**Nearest public photos**" if stacked else
                "**Nearest public images** (public photos nearest to the aligned embedding)")
    shown = [n for n in result.neighbours if common.pool_image(n["image"])]
    if shown:
        cols = [st.container() for _ in range(3)] if stacked else st.columns(5)
        for col, n in zip(cols, shown):
            col.image(str(common.pool_image(n["image"])), caption=f"cosine {n['score']:.2f}", width="stretch")
        return
    tags_of = dict(zip(attacker.bundle.pool["images"], attacker.bundle.pool["tags"]))
    st.caption("The pool photos are not in this checkout (they come with ../shared/data); their tags instead:")
    st.dataframe(pd.DataFrame([{"public image": n["image"], "cosine": n["score"],
                                "its tags": ", ".join(tags_of.get(n["image"], [])[:6])}
                               for n in result.neighbours[:3 if stacked else 5]]),
                 hide_index=True, width="stretch")


def alignment(attacker, result, method: str) -> None:
    """The fitted map's held-out cosine beside what a constant (no-information) victim embedding gets."""
    prior = align.prior_cosine(attacker.pool_attack, result.n_align, method)
    st.metric("Alignment cosine", f"{result.alignment_cosine:.3f}", f"{result.alignment_cosine - prior:+.3f} vs "
              f"a constant embedding ({prior:.3f})", help=hw.ALIGNMENT_HELP)


def _readable(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["metric"] = [hw.metric_name(m) for m in df["metric"]]
    return df.set_index("metric")


def scores(attacker, result, refs: list[str], captions: list[str], caption: str | None, mean_caption: str | None):
    """Every tag score beside both baselines (needs the text encoder), and the caption's beside its priors."""
    if not refs:
        st.info("No reference captions: nothing to score against.")
        return
    try:
        with st.spinner("Loading the text encoder for near-miss scores (first use: a few seconds) ..."):
            scorer = common.get_scorer()
        st.markdown("**Tag scores beside the baselines** (neither baseline sees the victim embedding)")
        st.dataframe(_readable(sup.single_image_scores(attacker, result, refs, scorer)).style.format("{:.3f}"),
                     width="stretch")
        st.caption(f"{len(refs)} reference tags from the captions. {hw.TAG_SCORE_HELP} Near-miss scores count a tag "
                   "among the 5 nearest vocabulary tags (MiniLM text space) of a reference tag.")
        if caption:
            rows, note = sup.caption_scores(caption, captions, common.public_captions())
            df = _readable(rows)
            if mean_caption:
                got, _ = sup.caption_scores(mean_caption, captions, [])
                df["caption of the mean embedding"] = [r["caption"] for r in got]
            st.markdown("**Caption scores beside the priors**")
            st.dataframe(df.style.format("{:.3f}", na_rep="-"), width="stretch")
            if note:
                st.caption(f"METEOR left out: {note}")
    except SlimeError as err:
        common.show_error(err)


def timings(log: list) -> None:
    total = sum(s for _, s in log)
    with st.expander(f"Timings: {total:.2f} s in all"):
        st.dataframe(pd.DataFrame([{"step": n, "seconds": round(s, 3)} for n, s in log]), hide_index=True)


def names(classes) -> str:
    return ", ".join(classes) if classes else "none"


def scene_graph(pred: list[str], found: dict | None, why: str | None) -> None:
    """The graph of the recovered tags, objects seen in the generated image marked (found: Attacker.objects_of)."""
    st.markdown("**Scene graph** (from the recovered tags)")
    seen = (found or {}).get("generated") or ()
    st.graphviz_chart(sgd.scene_graph_dot(graph_from_tags(pred), font_size=16, seen=seen), width="stretch")
    if found is None:
        st.caption(common.plain(why or ""))
        return
    if found["generated"] is not None:
        st.markdown(f"objects in the generated image: **{names(found['generated'])}** (marked "
                    f"{sgd.SEEN_IN_IMAGE} in the graph)")
    st.caption(f"in the nearest public photo: {names(found['nearest'])}; all: {names(found['union'])}")


def download(attacker, target, result, caption, image, info, found, classified) -> None:
    """This attack as one HTML file (the report template): the photo and the generated image side by side. Made only
    when the button is pressed."""
    record = dict(result.to_dict(), caption=caption, lowfi=info, objects=found)
    make = functools.partial(_html, record, image=target.image, generated=image, captions=target.captions,
                             classified=classified, pool_images=attacker.data / "images")
    st.download_button("Download this attack (HTML report)", make, file_name="slime_attack.html", mime="text/html",
                       key="lowfi_html", on_click="ignore")


def _html(record: dict, **kwargs) -> str:
    from slime_core.present.html_report import attack_report, render_html  # plotly: only when a report is asked for

    return render_html(attack_report(record, **kwargs))
