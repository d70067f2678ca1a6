"""The Your own embeddings page's sensitive attributes: what each uploaded embedding gives away (its margin over a
threshold calibrated on the same model's embeddings of held-out public photos), beside how reliably this attacker
reads each attribute for a built-in victim on the public test photos (ROC AUC with its 95% interval, beside chance
and the oracle). The numbers come from slime_core.experiments.attribute_report."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from slime_core.experiments import attribute_report as ar
from slime_core.present.app_figures import attribute_auc_frame, uploaded_attributes_frame
from slime_core.present.figures import attribute_auc_figure

from app_pages._evaluation import eval_samples
from app_pages._resources import get_attacker

AUC_PHOTOS, AUC_BOOT = 100, 200  # where no measured file exists: the first 100 test photos, 200 resamples
INTRO = ("What a privacy review asks of a photo (a child? people? a beach?), read off each embedding alone. Each "
         "attribute is a list of words; its score is the best retrieval score among the attacker's tags that contain "
         "one of them.")
MARGIN_HELP = ("Margin: the embedding's score minus a threshold set on your model's embeddings of {photos} public "
               "photos the attacker never trained on ({calibration}): above the threshold sits the same share of "
               "those photos as truly show the attribute (the prior). Above 0: the attacker would say your photo "
               "shows it.")


@st.cache_data(show_spinner="Measuring the attribute AUCs on public test photos ...", max_entries=8)
def victim_aucs(victim: str) -> dict:
    """The built-in victim's AUCs: the measured file when it exists, else measured here on a small sample."""
    return ar.built_in_aucs(get_attacker(), victim, eval_samples(AUC_PHOTOS), n_boot=AUC_BOOT)


def _calibration_frame(scores: dict) -> pd.DataFrame:
    return pd.DataFrame([{"attribute": a["name"], "threshold": a["threshold"],
                          "share of the public photos that show it (prior)": a["prior"],
                          "flags that are right on those photos": a["precision"]} for a in scores["attributes"]])


def show(attacker, fit, pool, X, names, n_align: int) -> dict:
    """Both tables, side by side; returns what the JSON download carries."""
    st.subheader("Sensitive attributes")
    st.caption(INTRO)
    scores = ar.uploaded_attribute_scores(attacker, fit, pool, X, names, n_align)
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**What each of your embeddings gives away**")
        if not scores["attributes"]:
            st.info("None of the attributes' words is a tag of this attacker's vocabulary: nothing to score.")
        else:
            about = {a["name"]: a["about"] for a in scores["attributes"]}
            st.dataframe(uploaded_attributes_frame(scores), hide_index=True,
                         column_config={a: st.column_config.NumberColumn(format="%+.2f", help=about[a] or None)
                                        for a in about})
            st.caption(MARGIN_HELP.format(photos=scores["calibration_photos"], calibration=scores["calibration"]))
            with st.expander("How the flags are set"):
                st.dataframe(_calibration_frame(scores), hide_index=True)
    with right:
        victims = [v for v in attacker.bundle.encoders() if v != attacker.bundle.image_encoder]
        if not victims:
            st.info("This bundle has no built-in victim to measure the attributes' AUCs on.")
            return {"scores": scores}
        victim = st.selectbox("How reliably: ROC AUC for a built-in victim", victims, key="own_attr_victim",
                              index=victims.index("lite0") if "lite0" in victims else 0)
        aucs = victim_aucs(victim)
        st.plotly_chart(attribute_auc_figure(aucs), use_container_width=True)
        st.dataframe(attribute_auc_frame(aucs), hide_index=True)
        st.caption(f"{ar.AUC_MEANS} Measured on the public test photos, not on yours: {aucs['source']}.")
    return {"scores": scores, "built_in_aucs": aucs}  # the whole measurement: the HTML report draws its section
