"""Every defence curve on one PNG (small multiples), drawn with Pillow only: no browser, no kaleido."""

from __future__ import annotations

import math

import numpy as np

from slime_core.defend import SPECS
from slime_core.present.tables import fmt_strength




def render_png(curves: dict[str, list[dict]], path, cols: int = 4, panel=(420, 320)) -> None:
    """Small multiples (one panel per defence) as a PNG with Pillow only -- no browser, no kaleido.
    Each panel: neighbourhood F1 (y) against recall@1 (x), strengths labelled, prior dashed, knee red; caption
    ROUGE-L in purple beside its mean-embedding-caption prior where the rows have it."""
    from PIL import Image, ImageDraw, ImageFont

    names = list(curves)
    rows_n = math.ceil(len(names) / cols)
    W, H = panel
    img = Image.new("RGB", (W * min(cols, len(names)), H * rows_n + 40), "white")
    draw = ImageDraw.Draw(img)
    try:
        font, small, big = ImageFont.load_default(14), ImageFont.load_default(11), ImageFont.load_default(17)
    except TypeError:  # Pillow < 10.1
        font = small = big = ImageFont.load_default()
    r0 = curves[names[0]][0]
    captions = "caption_rouge_l" in r0["leakage"]
    draw.text((10, 10), f"SLImE defences: neighbourhood tag F1{' and caption ROUGE-L (purple)' if captions else ''} "
                        f"(leakage) vs image retrieval recall@1 (utility); victim {r0['victim']} -> {r0['attacker']}, "
                        f"N={r0['n_align']} refitted on defended pairs, k={r0['k']}", fill="black", font=big)
    keys = ("neighbourhood_f1", "caption_rouge_l") if captions else ("neighbourhood_f1",)
    ymax = max(r["leakage"][key] for rows in curves.values() for r in rows for key in keys)
    ymax = max(0.05, math.ceil(ymax * 1.15 * 20) / 20)
    for p, name in enumerate(names):
        ox, oy = (p % cols) * W, 40 + (p // cols) * H
        _Panel(draw, (font, small), (ox, oy, W, H), ymax).draw(name, curves[name], captions)
    img.save(path)


class _Panel:
    """One defence's panel of the overview: its axes (recall@1 across, leakage up to `ymax`) in a box."""

    def __init__(self, draw, fonts, box, ymax: float):
        self.d, (self.font, self.small), self.ymax = draw, fonts, ymax
        self.ox, self.oy, W, H = box
        self.left, self.right, self.top, self.bottom = self.ox + 48, self.ox + W - 14, self.oy + 28, self.oy + H - 40

    def sx(self, v):
        return self.left + (self.right - self.left) * (v + 0.03) / 1.08

    def sy(self, v):
        return self.bottom - (self.bottom - self.top) * v / self.ymax

    def axes(self, name: str) -> None:
        d, small, left, bottom = self.d, self.small, self.left, self.bottom
        d.rectangle([left, self.top, self.right, bottom], outline="#888")
        for t in np.linspace(0, 1, 6):
            d.line([self.sx(t), bottom, self.sx(t), bottom + 4], fill="#888")
            d.text((self.sx(t) - 8, bottom + 6), f"{t:.1f}", fill="#444", font=small)
        for t in np.arange(0, self.ymax + 1e-9, 0.05 if self.ymax <= 0.3 else 0.1):
            d.line([left - 4, self.sy(t), left, self.sy(t)], fill="#888")
            d.text((self.ox + 6, self.sy(t) - 6), f"{t:.2f}", fill="#444", font=small)
        d.text((left, self.oy + 6), f"{name} ({SPECS[name].short if name in SPECS else ''})", fill="black", font=self.font)
        d.text((left + 60, bottom + 20), "recall@1 (utility)", fill="#444", font=small)

    def dashed(self, y, colour, label) -> None:
        x = self.left
        while x < self.right:
            self.d.line([x, self.sy(y), min(x + 6, self.right), self.sy(y)], fill=colour)
            x += 12
        self.d.text((self.right - 120, self.sy(y) + 2), label, fill=colour, font=self.small)

    def draw(self, name: str, rows: list[dict], captions: bool) -> None:
        d, small, left, top = self.d, self.small, self.left, self.top
        self.axes(name)
        self.dashed(rows[0]["baselines"]["frequent"]["neighbourhood_f1"], "#d62728", "prior (frequent tags)")
        if captions:
            self.dashed(rows[0]["baselines"]["mean_embedding_caption"]["caption_rouge_l"], "#9467bd",
                        "prior (mean caption)")
            cap = [(self.sx(r["utility"]["recall_at_1"]), self.sy(r["leakage"]["caption_rouge_l"])) for r in rows]
            if len(cap) > 1:
                d.line(cap, fill="#9467bd", width=2)
            for px, py in cap:
                d.ellipse([px - 3, py - 3, px + 3, py + 3], fill="#9467bd")
        pts = [(self.sx(r["utility"]["recall_at_1"]), self.sy(r["leakage"]["neighbourhood_f1"])) for r in rows]
        if len(pts) > 1 and max(abs(px - pts[0][0]) + abs(py - pts[0][1]) for px, py in pts) < 2:
            d.text((left + 6, top + 18), "all strengths give the same point", fill="#666", font=small)
        if len(pts) > 1:
            d.line(pts, fill="#1f77b4", width=2)
        for (px, py), r in zip(pts, rows):
            rad = 7 if r.get("knee") else 3
            d.ellipse([px - rad, py - rad, px + rad, py + rad], fill="crimson" if r.get("knee") else "#1f77b4")
            if r.get("stops_leak"):
                d.ellipse([px - 11, py - 11, px + 11, py + 11], outline="black", width=2)
            d.text((px + 5, py - 14), fmt_strength(r["strength"]), fill="#222", font=small)
        self.crosses([(r["utility"]["recall_at_1"], r["leakage"]["non_adaptive"]["neighbourhood_f1"]) for r in rows
                      if (r["leakage"].get("non_adaptive") or {}).get("applicable")])
        d.text((left + 6, top + 4), "red = knee, ring = leak stopped, teal x = non-adaptive attacker", fill="#666",
               font=small)

    def crosses(self, points) -> None:
        """The non-adaptive attacker's neighbourhood F1 (pre-defence pairs), one teal x per strength."""
        for u, v in points:
            px, py = self.sx(u), self.sy(v)
            self.d.line([px - 4, py - 4, px + 4, py + 4], fill="#17becf", width=2)
            self.d.line([px - 4, py + 4, px + 4, py - 4], fill="#17becf", width=2)
