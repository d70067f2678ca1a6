"""A fresh clone without ../shared: the app runs on the bundle and the committed demo gallery alone, and says
what it cannot show (pool photos, neighbour captions) instead of failing."""

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture
def demo_only(monkeypatch):
    monkeypatch.setenv("SLIME_DATA", str(ROOT / "assets" / "demo"))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.mark.parametrize("page", [None, "alignment", "own_embeddings", "defences", "about"])
def test_pages_run_on_the_demo_gallery_alone(demo_only, page):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if page is None:  # the attack page: tags for a gallery photo, and no consensus caption offered by default
        assert any(m.value.count('class="slime-tag') == at.slider(key="k").value for m in at.markdown)
        assert any(m.label == "Tag F1 (exact)" for m in at.metric)
        assert at.selectbox(key="writer").value == "none"
        assert any("their tags instead" in c.value for c in at.caption)  # no pool photos: their tags, said so


def test_defences_caption_toggle_disabled_without_public_captions(demo_only):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.session_state["df_limit"] = 10
    at.session_state["df_boot"] = 100
    at.session_state["df_captions"] = True  # even when asked for (e.g. a kept session), no error naming a CLI flag
    at.switch_page("app_pages/defences.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    toggle = at.toggle(key="df_captions")
    assert toggle.disabled and "not in this checkout" in toggle.help
    assert "caption ROUGE-L" not in " ".join(at.dataframe[0].value["leakage"])
