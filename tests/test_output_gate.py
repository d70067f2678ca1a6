"""The output gate (issue 22, class 2): a configured key never leaves through stdout, stderr, a written file or
the app, raw, URL-encoded or base64-encoded (also inside "user:key" basic auth), whatever text surrounds it.

Property tests generate the keys, the text around them and where the write boundaries fall; the budget is
small here and raised by SLIME_FUZZ_EXAMPLES (bench/fuzz.sh)."""

from __future__ import annotations

import base64
import io
import os
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slime_core.infra.errors import MASK, SlimeError, mask_output, mask_secrets, register_secrets
from slime_core.infra.output_gate import MaskedStream, masked_streams, write_text

EXAMPLES = int(os.environ.get("SLIME_FUZZ_EXAMPLES", "60"))
DEADLINE_MS = int(os.environ.get("SLIME_FUZZ_DEADLINE_MS", "2000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=DEADLINE_MS, derandomize="SLIME_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                              HealthCheck.too_slow])
KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~+/=:"
keys = st.text(KEY_CHARS, min_size=12, max_size=64).filter(lambda k: any(c.isalnum() for c in k))
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
users = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=0, max_size=12)


def encodings(key: str, user: str) -> dict[str, str]:
    raw = key.encode()
    return {"raw": key, "upper": key.upper(), "url": quote(key, safe=""), "url_plus": quote_plus(key),
            "url_lower": quote(key, safe="").lower(), "b64": base64.b64encode(raw).decode(),
            "b64_nopad": base64.b64encode(raw).decode().rstrip("="), "b64_url": base64.urlsafe_b64encode(raw).decode(),
            "basic": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode(),
            "basic_url": base64.urlsafe_b64encode(f"{user}:{key}".encode()).decode()}


def leaked(key: str, user: str, out: str) -> list[str]:
    """Which encodings of `key` are still in `out` (the raw key case-insensitively)."""
    found = [name for name, enc in encodings(key, user).items() if name not in ("upper", "url_lower") and enc in out]
    return found + (["raw (any case)"] if key.lower() in out.lower() else [])


@pytest.fixture
def key_env(monkeypatch):
    """Sets one configured key (OPENAI_API_KEY, a name the project reads) per example."""
    def set_key(key: str) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    return set_key


@FUZZ
@given(key=keys, user=users, before=texts, after=texts, how=st.sampled_from(sorted(encodings("k" * 12, "u"))))
def test_a_configured_key_never_leaves_in_any_encoding(key_env, key, user, before, after, how):
    key_env(key)
    text = before + encodings(key, user)[how] + after
    out = mask_output(text)
    assert not leaked(key, user, out), (how, text, out)
    assert MASK in out


@FUZZ
@given(key=keys, text=st.text("abcdefghijklmnopqrstuvwxyz ,.", max_size=120))
def test_text_without_the_key_comes_back_unchanged(key_env, key, text):
    key_env(key + "9")  # a digit: never inside lowercase text
    assert mask_output(text) == text


@FUZZ
@given(key=keys, user=users, pieces=st.lists(texts, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 400), max_size=8),
       how=st.sampled_from(["raw", "url", "b64", "basic"]))
def test_stream_masks_a_key_split_across_writes(key_env, key, user, pieces, cuts, how):
    """print() and tqdm write in pieces: a key cut across two writes of one line is still masked."""
    key_env(key)
    text = "\n".join(p + " " + encodings(key, user)[how] for p in pieces) + "\n"
    sink = io.StringIO()
    stream = MaskedStream(sink)
    last = 0
    for cut in sorted(set(min(c, len(text)) for c in cuts)):
        stream.write(text[last:cut])
        last = cut
    stream.write(text[last:])
    stream.flush()
    assert not leaked(key, user, sink.getvalue())


@FUZZ
@given(key=keys, user=users, caption=texts, how=st.sampled_from(["raw", "url", "b64", "basic"]))
def test_written_files_are_masked(key_env, tmp_path, key, user, caption, how):
    key_env(key)
    path = write_text(tmp_path / "out.json", f'{{"caption": "{caption} {encodings(key, user)[how]}"}}', "--output")
    assert not leaked(key, user, path.read_text(encoding="utf-8"))


def test_registered_secrets_and_error_echoes(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    register_secrets(["streamlit-secret-value-123"])
    assert "streamlit-secret" not in mask_output("x streamlit-secret-value-123 y")
    assert mask_output("a bearer carrying flags") == "a bearer carrying flags"  # captions keep their words
    assert "abcdef123456" not in mask_secrets("401: Bearer abcdef123456")  # errors mask echoed tokens
    assert "abcdef123456" not in str(SlimeError("api_key=abcdef123456 refused"))


def test_masked_streams_restore_and_mask(monkeypatch, capsys):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-0123456789abcdef")
    import sys

    before = sys.stdout
    with masked_streams():
        print("caption: tok-0123456789abcdef")
        print("err " + base64.b64encode(b"u:tok-0123456789abcdef").decode(), file=sys.stderr)
    assert sys.stdout is before
    out, err = capsys.readouterr()
    assert "tok-0123456789abcdef" not in out and MASK in out
    assert base64.b64encode(b"u:tok-0123456789abcdef").decode() not in err


@pytest.fixture
def tiny_cli(tiny_bundle_dir, tiny_data, tiny_env):
    from conftest import TINY_VICTIM

    return ["--bundle", tiny_bundle_dir, "--victim", TINY_VICTIM, "--pool-data", tiny_data]


def test_attack_and_its_report_never_show_a_key_the_caption_server_echoes(tmp_path, capsys, monkeypatch, tiny_cli):
    """A chat server that puts the key into a normal caption: `slime attack` prints none of it (text and JSON),
    and the HTML/JSON report made from that result holds none of it."""
    import json

    from slime_core.cli import main as cli
    from slime_core.present.html_report import attack_report, write_report
    from slime_core.stages import write

    from conftest import DEMO, demo_records

    key = "sk-proj-Zx81_secretKEY_0042"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    echo = f"a dog. {key} / {quote(key, safe='')} / {base64.b64encode(('user:' + key).encode()).decode()}"
    monkeypatch.setattr(write.LiteLLMWriter, "_generate", lambda self, messages: (echo, 0.0))
    image = DEMO / "images" / demo_records()[-1]["image"]
    for fmt in ("text", "json"):
        code = cli.main(["attack", *map(str, tiny_cli), "--image", str(image), "--n-align", "10", "--k", "3",
                         "--caption", "gpt-4o-mini", "--format", fmt, "--no-progress"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert not leaked(key, "user", out + err), out
        assert "a dog." in out
    record = json.loads(out)
    record["caption"] = echo  # as the server said it, before the gate
    html, js = write_report(attack_report(record), tmp_path / "r.html")
    for path in (html, js):
        assert not leaked(key, "user", path.read_text(encoding="utf-8")), path


def test_the_app_shows_no_key_from_the_environment_or_st_secrets(monkeypatch):
    """Every text a page shows passes the gate (app_pages/_gate): markdown, captions, errors, tables, downloads."""
    from streamlit.testing.v1 import AppTest

    env_key, app_key = "env-key-0123456789abcdef", "st-secret-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", env_key)
    script = f'''
import base64
import streamlit as st
from app_pages import common
enc = base64.b64encode(b"user:{env_key}").decode()
st.markdown("caption: {env_key} and " + enc)
st.columns(2)[1].caption("secret {app_key}")
st.error("failed: {app_key.upper()}")
st.write("data folder kept: /srv/data")
'''
    at = AppTest.from_string(script, default_timeout=120)
    at.secrets["OPENAI_API_KEY"] = app_key
    at.secrets["SLIME_DATA"] = "/srv/data"
    at.run()
    assert not at.exception, at.exception
    shown = " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.error])
    for key in (env_key, app_key):
        assert not leaked(key, "user", shown), shown
    assert "/srv/data" in shown  # a setting that is not a secret is shown as it is


def test_a_key_straddling_a_long_lines_flush_point_is_masked(key_env):
    from slime_core.infra.output_gate import FLUSH_AT

    key = "sk-longline-0123456789abcdefXYZ"
    key_env(key)
    sink = io.StringIO()
    stream = MaskedStream(sink)
    for offset in range(-40, 40, 7):
        stream.write("x" * (FLUSH_AT + offset - len(key) // 2))
        stream.write(key)
        stream.write("y" * 50)
    stream.write("\n")
    stream.flush()
    assert key not in sink.getvalue() and sink.getvalue().count(MASK) >= 11


def test_plotly_hover_text_image_captions_and_graphviz_are_masked(monkeypatch):
    """The figures a page shows: a key in a plotly trace's hover text or labels, an image's caption or a scene
    graph's node label never reaches the browser; a figure without the key is passed on as it is."""
    import plotly.graph_objects as go
    from streamlit.testing.v1 import AppTest

    key = "hover-key-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    script = f'''
import numpy as np
import plotly.graph_objects as go
import streamlit as st
from app_pages import common
fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], text=["a caption with {key}", "plain"], name="trace {key}"))
fig.update_layout(title="about {key}")
st.plotly_chart(fig, key="f")
st.image(np.zeros((4, 4, 3), np.uint8), caption="generated from {key}")
st.graphviz_chart('digraph {{ a [label="{key}"]; a -> b }}')
'''
    at = AppTest.from_string(script, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    shown = " ".join(str(e.proto) for name in ("plotly_chart", "imgs", "graphviz_chart") for e in at.get(name))
    assert "plain" in shown and "digraph" in shown  # the elements are there ...
    assert not leaked(key, "user", shown), shown  # ... without the key

    from app_pages import _gate

    clean = go.Figure(go.Bar(x=["dog"], y=[1], hovertext=["no secret here"]))
    assert _gate._mask(clean) is clean
