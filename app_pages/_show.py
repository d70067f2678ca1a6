"""Showing errors and timings: an error's text shown literally (never as Markdown), and a step timer."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager

import streamlit as st

# Characters that make Markdown links, emphasis, code, HTML, tables, Streamlit colour/icon directives or LaTeX.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]()<>#!|~$:])")
_LIST_START = re.compile(r"^(\s*)([-+]|\d+\.)")


def plain(text: str) -> str:
    """`text` shown literally by st.error/st.warning: an uploaded file's name never becomes a link or markup."""
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", text)
    return _LIST_START.sub(_escape_list_marker, escaped)


def _escape_list_marker(m: re.Match) -> str:
    indent, marker = m.group(1), m.group(2)
    return indent + ("\\" + marker if marker in "-+" else marker[:-1] + "\\.")


def show_error(err: Exception) -> None:
    st.error(plain(str(err)), icon=":material/error:")


def show_warnings(warnings: list[str]) -> None:
    for text in warnings:
        st.warning(plain(text), icon=":material/warning:")


@contextmanager
def timed(log: list, label: str):
    start = time.perf_counter()
    yield
    log.append((label, time.perf_counter() - start))
