"""Page 4 - your own embeddings: a privacy team audits its own embedding model."""

from __future__ import annotations

import io
import json
import zipfile

import pandas as pd
import streamlit as st

from slime_core.experiments import explore
from slime_core.experiments import uploaded_pools as upl
from slime_core.infra.errors import SlimeError
from slime_core.present import headline_words as hw
from slime_core.present.html_report import own_embeddings_report, render_html
from slime_core.stages import uploads as sup
from slime_core.stages.align import list_alignment_methods

from app_pages import _own_attributes, common

st.title("Your own embeddings")
st.caption("Audit your own image embedder without sharing it: embed the public pool images with your model, upload "
           "those embeddings and the embeddings you want to audit, and see what an attacker who aligns the two "
           "spaces recovers. Files stay in this server's memory for the session; nothing is stored.")

attacker = common.attacker_or_stop()
pool_names = list(attacker.bundle.pool["images"])

st.subheader("1. The public alignment images")
d1, d2 = st.columns(2)
d1.download_button("Download the list of pool image names (.txt)", "\n".join(pool_names) + "\n",
                   file_name="slime_pool_images.txt", mime="text/plain", key="own_names")
have_images = [p for p in attacker.pool_paths() if p.exists()]
if len(have_images) == len(pool_names):
    @st.cache_data(show_spinner="Zipping the pool images ...")
    def pool_zip() -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for p in attacker.pool_paths():
                z.write(p, p.name)
        return buf.getvalue()

    if d2.toggle("Prepare a zip of the pool images", key="own_zip_toggle"):
        d2.download_button("Download the pool images (.zip)", pool_zip(), file_name="slime_pool_images.zip",
                           mime="application/zip", key="own_zip")
else:
    d2.info(f"The pool images are not in this checkout ({attacker.data / 'images'}); they are Flickr8k images, "
            "fetch them by name from the dataset.")
st.caption(f"{len(pool_names)} images. Embed them in this order, one row each (.npy), or add a name column "
           "(e.g. `image`) in a .csv/.parquet and any order works.")

st.subheader("2. Upload")
u1, u2 = st.columns(2)
pool_up = u1.file_uploader("(a) your embeddings of the pool images", type=list(sup.EMBEDDING_TYPES), key="own_pool")
audit_up = u2.file_uploader("(b) embeddings to audit", type=list(sup.EMBEDDING_TYPES), key="own_audit")
c1, c2, c3 = st.columns(3)
method = c1.selectbox("Alignment method", list_alignment_methods(), key="own_method")
n_align = c2.slider("N leaked pairs", 10, len(pool_names), min(300, len(pool_names)), step=5, key="own_n")
k = c3.slider("k tags", 1, 50, 10, key="own_k")

if pool_up is None or audit_up is None:
    st.info("Upload both files to run the audit.")
    st.stop()
try:
    pool_arr, audit_arr, audit_names = sup.read_audit_uploads((pool_up.name, pool_up.getvalue()),
                                                             (audit_up.name, audit_up.getvalue()), pool_names)
    # This session's pools and maps live in its own state (at most 4 pools), never in the shared attacker.
    pools = st.session_state.setdefault("own_pools", upl.UploadedPools(max_pools=4))
    pool_key = sup.content_key(pool_up.getvalue())
    pools.add(pool_key, pool_arr)
    with st.spinner(f"Fitting {method} on N={n_align} pairs ..."):
        fit, prior = pools.fit(attacker, pool_key, n_align, method)
    results = upl.attack_rows(attacker, fit, audit_arr, audit_names, k)
except SlimeError as err:
    common.show_error(err)
    st.stop()

st.subheader("3. Report")
m1, m2, m3, m4 = st.columns(4)
m1.metric("Held-out alignment cosine", f"{fit.heldout_cosine:.3f}", f"{fit.heldout_cosine - prior:+.3f} vs prior",
          help=hw.ALIGNMENT_HELP)
m2.metric("Prior: a constant embedding", f"{prior:.3f}", help=hw.ALIGNMENT_HELP)
m3.metric("Embeddings audited", len(results))
m4.metric("Embedding dims", pool_arr.shape[1])
verdict = hw.alignment_headline(fit.heldout_cosine, prior, n_align)  # shown here and in the HTML download
st.caption(verdict)
# Scored once per pool and settings in this session: a download click reruns the page, it should not rescore.
leak_memo = st.session_state.setdefault("own_leakage", {})
leak_key = (pool_key, n_align, method, k)
if leak_key not in leak_memo:
    with st.spinner("Scoring the tags your model leaks on held-out public photos ..."):
        leak_memo.clear()
        leak_memo[leak_key] = explore.own_model_leakage(attacker, fit, pool_arr, n_align, k, common.get_scorer())
leak = leak_memo[leak_key]
if leak:
    t1, t2 = st.columns(2)
    for col, key, label in ((t1, "exact_f1", "Tag F1 (exact)"), (t2, "neighbourhood_f1", "Tag F1 (with near misses)")):
        e, d = leak[key], leak[key]["vs_prior"]
        col.metric(f"{label} on {leak['images']} held-out public photos", f"{e['mean']:.3f}",
                   f"{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] vs guessing the {k} most frequent tags",
                   delta_color="normal" if d["ci_low"] > 0 else "off", help=explore.OWN_LEAKAGE_HELP)
table = pd.DataFrame([{"embedding": r.image, "top tags": ", ".join(t["tag"] for t in r.tags),
                       "nearest public image": r.neighbours[0]["image"] if r.neighbours else "",
                       "nearest cosine": r.neighbours[0]["score"] if r.neighbours else None} for r in results])
st.dataframe(table, hide_index=True)
counts = pd.Series([t["tag"] for r in results for t in r.tags]).value_counts().head(20)
st.bar_chart(counts)
attributes = _own_attributes.show(attacker, fit, pool_arr, audit_arr, audit_names, n_align)
payload = {"alignment_cosine": fit.heldout_cosine, "alignment_prior_cosine": prior, "n_align": n_align,
           "method": method, "k": k, "tag_leakage": leak, "results": [r.to_dict() for r in results],
           "sensitive_attributes": attributes}
e1, e2, e3 = st.columns(3)
e3.download_button("Download the HTML audit report", render_html(own_embeddings_report(payload, verdict)),
                   file_name="slime_audit.html", mime="text/html", key="own_html")
e1.download_button("Download JSON", json.dumps(payload, indent=2), file_name="slime_audit.json",
                   mime="application/json", key="own_json")
e2.download_button("Download CSV", table.to_csv(index=False), file_name="slime_audit.csv", mime="text/csv",
                   key="own_csv")
