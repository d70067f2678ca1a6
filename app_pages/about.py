"""Page 6 - about: the attack, the threat model, the models in use, and where the numbers come from."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from slime_core.experiments.audit import PAPER_FIGURES_ENV, load_paper_figures, paper_figures_path
from slime_core.infra import settings
from slime_core.infra.errors import SlimeError
from slime_core.present.figures import paper_figure, training_size_figure
from slime_core.stages.encoders import encoder_cfg, encoder_names

from app_pages import common

st.title("About SLImE")
st.markdown("""
**Semantic leakage from image embeddings.** Image embeddings are often treated as safe to share: they are "just
vectors". SLImE shows they are not. An attacker who holds a *different* embedding model and a small set of public
images aligns the victim's embedding space to its own with **N leaked (victim, attacker) pairs**, then reads the
aligned vector with its own model: it **retrieves tags** ("black dog", "man sit on bench"), finds the **nearest public
images**, **writes a caption** and infers a **scene graph** (objects, relations, scene).

**Threat model.** The attacker sees victim embeddings (e.g. from a vector database or an embedding API) but not the
images and not the victim model's weights. It can embed public images with its own model and knows, for N public
images, the victim's embeddings too (leaked, or obtained by querying the victim service). It needs no training on
victim data beyond the linear map.

**Reading the numbers honestly.** Tag vocabularies are skewed: returning the most frequent tags already scores
something. Every leakage figure in this app sits beside two baselines that need no victim embedding - the *k most
frequent training tags* and the *tags of the nearest public image* - and captions beside a *random public caption*;
evaluation pages show the paired difference with a bootstrap 95% interval over images. The *oracle* (tags from the
attacker's own embedding of the image) is the ceiling alignment can reach.
""")

attacker = common.attacker_or_stop()
b = attacker.bundle
st.subheader("Models in use")
st.markdown(f"Attacker bundle **{b.attacker}** (`{b.path}`): image tower **{b.image_encoder}**, text tower "
            f"**{b.manifest['text_encoder']}**, {len(b.tags):,} tags, public pool of {len(attacker.pool_attack)} "
            f"images, pool embeddings for {', '.join(b.encoders())}. Data folder: `{attacker.data}`.")
rows = []
for name in encoder_names():
    cfg = encoder_cfg(name)
    rows.append({"encoder": name, "dims": cfg.dim, "offline": cfg.offline,
                 "in this bundle": name in b.pool_embeddings, "about": cfg.about})
st.dataframe(pd.DataFrame(rows), hide_index=True)
st.caption("Paper encoders (open_clip ViT-bigG-14 / ViT-L-14, Nomic, Gemini, Cohere) need weights or API keys; "
           "keys are read only from the environment or st.secrets and are never shown. The Kandinsky 2.2 decoder "
           "(low-fidelity image from an embedding) needs its weights and a GPU; offline the app shows the nearest "
           "public images instead.")

st.subheader("Reference numbers")
m = b.manifest.get("metrics", {})
by_alpha = m.get("retrieval_by_alpha", {})
if by_alpha:
    st.markdown(f"This bundle's own dev-split check (victim {m.get('dev_victim')}, k={m.get('dev_k')}), from its "
                "manifest - exact and neighbourhood tag F1 by tag-prior weight alpha "
                f"(the bundle uses alpha = {b.manifest.get('prior_alpha')}):")
    st.dataframe(pd.DataFrame([{"alpha": a, **v} for a, v in by_alpha.items()]), hide_index=True)
trained = b.manifest.get("training_data", {})
st.markdown(f"""
The paper's own figures come from its configuration - a CLIP ViT-bigG-14 attacker trained on COCO, CLIP/Nomic/
Gemini/Cohere victims, 500 COCO test images - and are not comparable number-for-number with this offline bundle
(EfficientNet-Lite + MiniLM trained on {trained.get('train_images', '?'):,} {trained.get('folder', '')} photos). Compare
the *shape* instead: leakage above the baselines that grows with N and saturates, and neighbourhood F1 separating the
attack from the baselines more clearly than exact F1. Run **Batch report** for this bundle's test-split numbers with
their intervals.
""")

training_size = settings.REPO / "bench" / "results" / "training_size.json"
if training_size.exists():
    st.subheader("Leakage against the attacker's public data")
    st.caption("One attacker trained per training-set size (bench/training_size.py; same dev and test photos); each "
               "metric beside its prior, with 95% bootstrap intervals over the test photos.")
    st.plotly_chart(training_size_figure(json.loads(training_size.read_text())), use_container_width=True)


def paper_table(t: dict) -> None:
    st.markdown(f"**{t['title']}**")
    # convert_dtypes keeps integer columns with gaps (the models' dimensions) integers
    st.dataframe(pd.DataFrame(t["rows"], columns=t["columns"]).convert_dtypes(), hide_index=True,
                 column_config={m: st.column_config.NumberColumn(format="%.2f") for m in t.get("metrics", [])})
    if t.get("note"):
        st.caption(t["note"])


st.subheader("The paper's reference figures")
paper_path = paper_figures_path()
try:
    paper = load_paper_figures(paper_path)
except SlimeError as err:
    common.show_error(err)
else:
    # Drawn apart from this bundle's numbers above: a bordered box, every part named as the paper's.
    with st.container(border=True):
        st.markdown("**The paper's numbers, on its data and with its models - not measured by this app.**")
        st.caption(f"Source: {paper.get('source', 'the paper').rstrip('.')} (file `{paper_path}`; "
                   f"`${PAPER_FIGURES_ENV}` names another). {paper.get('units', '')}")
        for t in paper.get("tables", []):
            paper_table(t)
        for i, figure in enumerate(paper.get("figures", [])):
            st.plotly_chart(paper_figure(figure), key=f"about_paper_{i}")
            if figure.get("note"):
                st.caption(figure["note"])
        if paper.get("text_figures"):
            st.markdown("**Given only in the paper's text** (its plots are not available):\n"
                        + "\n".join(f"- {s}" for s in paper["text_figures"]))
        if paper.get("relation_predicates"):
            st.markdown("**The paper's relation predicates** for scene graphs: "
                        + ", ".join(f"`{r}`" for r in paper["relation_predicates"]))
        if paper.get("models"):
            paper_table(paper["models"])
