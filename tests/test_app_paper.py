"""The app's victim selector with a paper encoder: a tiny random open_clip stands in for CLIP ViT-L/14, given the
way a user gives real weights (SLIME_ENCODER_OVERRIDES). The attack page must offer it, embed only the N leaked
pool images with it, and attack a gallery photo end to end."""

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_clip_victim(tmp_path, monkeypatch):
    from slime_core.pipeline import Attacker

    if not all(p.exists() for p in Attacker().pool_paths()):
        pytest.skip("the pool images (../shared/data/flickr8k_subset1000) are needed to embed N of them")
    (tmp_path / "tiny-l14.json").write_text(json.dumps(TINY))
    monkeypatch.setenv("SLIME_ENCODER_OVERRIDES", json.dumps(
        {"clip-vit-l-14": {"model_config": str(tmp_path / "tiny-l14.json"), "pretrained": None, "seed": 1}}))
    st.cache_resource.clear()  # the app caches which encoders load; start from what this environment offers
    yield
    st.cache_resource.clear()


def test_paper_victim_is_offered_and_attacks(tiny_clip_victim):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    victim = at.selectbox(key="victim")
    assert "clip-vit-l-14" in victim.options  # loads here, so it is selectable
    assert "nomic-vision-v1.5" not in victim.options  # no weights: still listed as unavailable
    at.slider(key="n_align").set_value(30).run()
    victim.set_value("clip-vit-l-14").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    chips = next(m.value for m in at.markdown if 'class="slime-tag' in m.value)
    assert chips.count('class="slime-tag') == at.slider(key="k").value
    assert any(m.label == "Alignment cosine" and 0 < float(m.value) <= 1 for m in at.metric)


def test_unloadable_encoder_reason_is_the_loader_message():
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    assert "clip-vit-l-14" not in at.selectbox(key="victim").options
    text = " ".join(m.value for m in at.markdown)
    assert "hf download" in text or "not in" in text  # the loader's own instructions, or the missing pool
