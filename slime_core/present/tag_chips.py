"""The recovered tags as coloured HTML chips: green where the tag is one of the photo's own tags, amber next to one,
grey a miss (`experiments.headline.classify_tags` gives the classes). Every tag is escaped: a tag is text, never
markup."""

from __future__ import annotations

import html

COLOURS = {"exact": ("#1e8449", "#ffffff"), "neighbourhood": ("#f5b041", "#222222"), "miss": ("#e5e7e9", "#444444")}
LEGEND = ("**green** = one of this photo's own tags (exact) · **amber** = next to one (among its 5 nearest "
          "vocabulary tags) · **grey** = miss")


def chips(classified: list[tuple[str, str]]) -> str:
    out = []
    for tag, cls in classified:
        bg, fg = COLOURS[cls]
        out.append(f'<span class="slime-tag slime-{cls}" data-class="{cls}" style="background:{bg};color:{fg}">'
                   f"{html.escape(tag)}</span>")
    return " ".join(out)
