"""The Streamlit app's pages (run with `streamlit run app.py`)."""
