"""Page 1 - attack one image: what an aligned victim embedding gives away, beside the baselines."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import common
from slime_core import app_support as sup
from slime_core.align import METHODS
from slime_core.errors import SlimeError

st.title("Attack one image")
st.caption("A victim embedding is mapped into the attacker's space with N leaked public pairs; the attacker then "
           "retrieves tags, nearby public images and a caption. Every score sits beside a baseline that needs no "
           "victim embedding.")

attacker = common.attacker_or_stop()
pool_size = len(attacker.pool_attack)
victims, unavailable = common.victim_options()

WRITERS = {"consensus": "nearest public images' consensus caption (no LLM)", "none": "no caption",
           "local": "local SmolLM2-135M (offline LLM; first load ~16 s)", "litellm": "chat model via litellm (API key)"}

with st.sidebar:
    st.subheader("Settings")
    source = st.radio("Image source", ["Demo gallery", "Upload a photo", "Upload a victim embedding"], key="source")
    victim = st.selectbox("Victim embedder", victims, index=victims.index("lite0") if "lite0" in victims else 0,
                          key="victim", help="lite2 is the attacker's own image tower: the no-alignment ceiling.")
    common.unavailable_expander(unavailable)
    method = st.selectbox("Alignment method", METHODS, key="method")
    n_align = st.slider("N leaked pairs", 10, pool_size, min(300, pool_size), step=5, key="n_align")
    k = st.slider("k tags", 1, 50, 10, key="k")
    default_writer = "consensus" if common.public_captions() else "none"
    writer_spec = st.selectbox("Caption writer", list(WRITERS), index=list(WRITERS).index(default_writer),
                               format_func=WRITERS.get, key="writer")
    llm_model = None
    if writer_spec == "litellm":
        keys = sup.any_llm_key()
        st.caption("Keys found in the environment: " + (", ".join(keys) if keys else "none"))
        llm_model = st.text_input("litellm model name (e.g. gpt-4o-mini, anthropic/claude-3-5-haiku-latest)", "",
                                  key="llm_model").strip()

# ---- the image --------------------------------------------------------------------------------------------
image_label, image_show, references, embedding = None, None, [], None
try:
    if source == "Demo gallery":
        items = common.gallery()
        names = [g["name"] for g in items]
        name = st.selectbox("Gallery image", names, key="gallery_image")
        item = items[names.index(name)]
        image_label, image_show, references = name, item["path"], item["captions"]
        embedding = common.embed_path(victim, item["path"])
    elif source == "Upload a photo":
        up = st.file_uploader("A photo (jpg, png, webp)", type=["jpg", "jpeg", "png", "webp"], key="photo")
        refs_text = st.text_area("Reference captions (optional, one per line) to score the attack against",
                                 key="photo_refs")
        references = [r.strip() for r in refs_text.splitlines() if r.strip()]
        if up is None:
            st.info("Upload a photo to attack it.")
            st.stop()
        data = up.getvalue()
        embedding = common.embed_bytes(victim, data)
        image_label, image_show = up.name, data
    else:
        up = st.file_uploader(f"One {victim} embedding (.npy, .csv or .parquet; the first row is used)",
                              type=list(sup.EMBEDDING_TYPES), key="embedding_file")
        refs_text = st.text_area("Reference captions (optional, one per line)", key="emb_refs")
        references = [r.strip() for r in refs_text.splitlines() if r.strip()]
        if up is None:
            st.info(f"Upload a victim embedding made with {victim} to attack it.")
            st.stop()
        arr, _ = sup.parse_embeddings(up.name, up.getvalue())
        dim = attacker.alignment(victim, n_align, method).W.shape[0]
        embedding = sup.check_victim_embedding(arr, dim, victim)[0]
        image_label = up.name
except SlimeError as err:
    common.show_error(err)
    st.stop()

# ---- the attack -----------------------------------------------------------------------------------------
log: list = []
status = st.status("Running the attack ...", expanded=False)
try:
    with common.timed(log, "align"):
        status.write(f"Aligning {victim} -> {attacker.bundle.attacker} with N={n_align} ({method}) ...")
        fit = attacker.alignment(victim, n_align, method)
    with common.timed(log, "retrieve"):
        status.write(f"Retrieving the top {k} tags and the nearest public images ...")
        result = attacker.attack(embedding=embedding, victim=victim, n_align=n_align, k=k, method=method,
                                 name=image_label)
except SlimeError as err:
    status.update(label="Attack failed", state="error")
    common.show_error(err)
    st.stop()

caption, caption_error = None, None
with common.timed(log, "caption"):
    if writer_spec == "litellm" and not llm_model:
        caption_error = "enter a litellm model name in the sidebar."
    elif writer_spec != "none":
        status.write("Writing a caption ...")
        try:
            writer = common.get_writer(llm_model if writer_spec == "litellm" else writer_spec)
            near_caps = attacker.captions_of([n["image"] for n in result.neighbors])
            caption = writer.write([t["tag"] for t in result.tags], near_caps).text
        except SlimeError as err:
            caption_error = str(err)
with common.timed(log, "scene graph"):
    from slime_core.infer import graph_from_tags

    graph = graph_from_tags([t["tag"] for t in result.tags])

# ---- side by side -----------------------------------------------------------------------------------------
c1, c2, c3 = st.columns([1.1, 1.2, 1])
with c1:
    st.subheader("Original")
    if image_show is not None:
        st.image(image_show, width="stretch")
    else:
        st.caption(f"Embedding only: {image_label}")
    if references:
        st.markdown("**Reference captions**")
        st.markdown("\n".join(f"- {c}" for c in references))
with c2:
    st.subheader("Nearest public images")
    st.caption("Low-fidelity view: the public pool images nearest to the aligned embedding (the Kandinsky "
               "decoder needs its weights; see About).")
    tags_of = dict(zip(attacker.bundle.pool["images"], attacker.bundle.pool["tags"]))
    shown = [n for n in result.neighbors if common.pool_image(n["image"])]
    if shown:
        cols = st.columns(3)
        for i, n in enumerate(shown[:6]):
            cols[i % 3].image(str(common.pool_image(n["image"])), caption=f"{n['score']:.2f}", width="stretch")
    else:
        st.dataframe(pd.DataFrame([{"image": n["image"], "cosine": n["score"],
                                    "its tags": ", ".join(tags_of.get(n["image"], [])[:6])} for n in result.neighbors]),
                     hide_index=True)
with c3:
    st.subheader(f"Top {k} tags")
    st.dataframe(pd.DataFrame(result.tags), hide_index=True, height=min(38 + 35 * len(result.tags), 420))
    st.markdown("**Tags (text)**: " + ", ".join(t["tag"] for t in result.tags))

g1, g2 = st.columns([1, 1])
with g1:
    st.subheader("Reconstructed caption")
    if caption:
        st.markdown(f"> {caption}")
    elif caption_error:
        st.warning(f"No caption: {caption_error}")
    else:
        st.caption("No caption writer selected.")
    st.plotly_chart(sup.scene_graph_figure(graph), key="scene_graph")
with g2:
    st.subheader("Metrics")
    st.metric("Alignment cosine (held-out pairs)", f"{fit.heldout_cosine:.3f}")
    if references:
        with common.timed(log, "scores"):
            try:
                status.write("Scoring against the reference captions ...")
                refs = common.reference_tags(tuple(references))
                scores = sup.single_image_scores(attacker, result, refs, common.get_scorer())
                st.dataframe(pd.DataFrame(scores).set_index("metric").style.format("{:.3f}"))
                st.caption(f"{len(refs)} reference tags from the captions. Baselines: the k most frequent training "
                           "tags, and the tags of the nearest public image.")
                if caption:
                    pub = common.public_captions()
                    cap, note = sup.caption_scores(caption, references, pub)
                    st.dataframe(pd.DataFrame(cap).set_index("metric").style.format("{:.3f}", na_rep="-"))
                    if note:
                        st.caption(f"METEOR left out: {note}")
                    if not pub:
                        st.caption("The random-public-caption baseline needs the pool captions (not in this checkout).")
            except SlimeError as err:
                common.show_error(err)
    else:
        st.info("No reference captions: add them above to score tags and caption.")

total = sum(s for _, s in log)
status.update(label=f"Attack done in {total:.2f} s - " + ", ".join(f"{n} {s:.2f} s" for n, s in log),
              state="complete")
with st.expander("Raw result (JSON)"):
    st.json(dict(result.to_dict(), caption=caption))
