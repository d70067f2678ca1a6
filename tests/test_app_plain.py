"""Upload names and error texts are shown literally: Markdown in a file name never becomes a link or markup."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app_pages.common import plain  # noqa: E402

APP = str(Path(__file__).resolve().parent.parent / "app.py")
UNESCAPE = re.compile(r"\\(.)")


@pytest.mark.parametrize("text", [
    "[click me](http://evil.example).png: not a readable image",
    "**bold** _it_ `code` <b>html</b> :red[colour] :material/home: $x^2$ | a | b |",
    "- a list item", "+ another", "1. an ordered item", "  12. indented", "a.png: 3 rows, 1280-d",
])
def test_plain_escapes_markup_and_reads_back_unchanged(text):
    shown = plain(text)
    assert UNESCAPE.sub(r"\1", shown) == text  # what the reader sees is the text itself
    assert not re.search(r"(?<!\\)[\[\]()*_`<>:$|]", shown)  # no live Markdown character is left
    assert not re.match(r"\s*([-+]|\d+\.)\s", shown)  # and no list marker at the start


def test_uploaded_file_name_with_markdown_is_shown_literally():
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.radio(key="source").set_value("Upload a photo").run()
    name = "[prize](http://evil.example) **now**.jpg"
    at.file_uploader(key="photo").set_value((name, b"not an image at all", "image/jpeg")).run()
    assert not at.exception
    assert len(at.error) == 1
    value = at.error[0].value
    assert name in UNESCAPE.sub(r"\1", value) and "not a readable image" in value
    assert "](http" not in value and "**now**" not in value
