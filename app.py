"""SLImE - semantic leakage from image embeddings: the interactive demo.

    streamlit run app.py

Pages live in app_pages/ and stay thin: every computation is a call into slime_core.
"""

import streamlit as st

st.set_page_config(page_title="SLImE - semantic leakage from image embeddings", page_icon=":material/visibility:",
                   layout="wide")

pages = [
    st.Page("app_pages/attack.py", title="Attack one image", icon=":material/image_search:", default=True),
    st.Page("app_pages/alignment.py", title="Alignment explorer", icon=":material/linear_scale:"),
    st.Page("app_pages/retrieval.py", title="Retrieval explorer", icon=":material/leaderboard:"),
    st.Page("app_pages/own_embeddings.py", title="Your own embeddings", icon=":material/upload_file:"),
    st.Page("app_pages/defences.py", title="Defences", icon=":material/shield:"),
    st.Page("app_pages/batch_report.py", title="Batch report", icon=":material/summarize:"),
    st.Page("app_pages/about.py", title="About", icon=":material/info:"),
]
st.navigation(pages).run()
