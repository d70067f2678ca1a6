"""The app's side of the output gate: every text Streamlit shows (markdown, captions, errors, tables, JSON,
download contents, image captions, a plotly figure's labels and hover text, a Graphviz source) passes through
`errors.mask_output`, which knows the environment's keys and st.secrets.

Installed once per process by `install()` (common.py imports this), by wrapping Streamlit's text-showing
calls on every container, so no page can forget it.
"""

from __future__ import annotations

import functools

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from slime_core.infra.errors import mask_output, register_secrets

SHOWN = ("markdown", "write", "caption", "code", "text", "error", "warning", "info", "success", "json", "title",
         "header", "subheader", "download_button", "dataframe", "table", "metric", "latex", "toast", "exception",
         "expander", "html", "image", "plotly_chart", "graphviz_chart")
NOT_TEXT = {"key", "type", "icon", "mime", "language", "on_click", "width", "height", "column_config"}


def _mask(value):
    if isinstance(value, str):
        return mask_output(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return value  # binary (a PNG): no text to leak
        masked = mask_output(text)
        return value if masked == text else masked.encode("utf-8")
    if isinstance(value, (dict, list, tuple)) and not hasattr(value, "_fields"):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        out = {k: _mask(v) for k, v in items}
        return out if isinstance(value, dict) else type(value)(out.values())
    if hasattr(value, "to_plotly_json") and hasattr(value, "to_json"):  # a plotly figure: every string in it
        import plotly.io as pio

        text = value.to_json()
        masked = mask_output(text)
        return value if masked == text else pio.from_json(masked)
    if type(value).__name__ in ("Digraph", "Graph") and hasattr(value, "source"):  # a graphviz graph
        masked = mask_output(value.source)
        return value if masked == value.source else masked
    if type(value).__name__ == "DataFrame" and hasattr(value, "map"):
        return value.map(lambda x: mask_output(x) if isinstance(x, str) else x)
    return value


def _gated(fn):
    @functools.wraps(fn)
    def shown(*args, **kwargs):
        _register_streamlit_secrets()  # st.secrets may be read after the first import (a new session, a test)
        args = [_mask(a) if not isinstance(a, DeltaGenerator) else a for a in args]
        kwargs = {k: (v if k in NOT_TEXT else _mask(v)) for k, v in kwargs.items()}
        return fn(*args, **kwargs)

    shown.__slime_gated__ = True
    return shown


def _register_streamlit_secrets() -> None:
    """The values of st.secrets whose names say they are secrets (OPENAI_API_KEY, [openai] api_key, ...); other
    settings kept there (a data folder) are not masked."""
    from slime_core.infra.settings import is_secret_name

    try:
        values = []
        for name, value in st.secrets.items():
            if hasattr(value, "items"):  # a [section]
                values += [v for k, v in value.items() if is_secret_name(k) or is_secret_name(f"{name}_{k}")]
            elif is_secret_name(name):
                values.append(value)
        register_secrets(values)
    except Exception:  # noqa: BLE001 - no secrets.toml is the usual case
        pass


def install() -> None:
    """Wrap Streamlit's text-showing calls (idempotent) and learn st.secrets' values."""
    _register_streamlit_secrets()
    for name in SHOWN:
        method = getattr(DeltaGenerator, name, None)
        if method is not None and not getattr(method, "__slime_gated__", False):
            setattr(DeltaGenerator, name, _gated(method))
        module_level = getattr(st, name, None)
        if module_level is not None and not getattr(module_level, "__slime_gated__", False):
            setattr(st, name, _gated(module_level))
