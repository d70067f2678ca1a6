"""The audit report as one self-contained HTML file (plus the same numbers as JSON beside it).

The page is the Jinja2 template `templates/report.html.j2`; this module only prepares what the template
cannot: the plotly figures (as HTML divs, plotly.js inlined once, so the file opens offline) and the JSON.

    report = experiments.audit.build_report(attacker, samples, grid=AttackSpec("lite0", (30, 300), (5, 10)))
    html_path, json_path = write_report(report, "report.html")

An evaluation (`slime eval`'s result) goes through the same template: `render_html(evaluation_report(result))`.
"""

from __future__ import annotations

import json
from pathlib import Path

from slime_core.errors import SlimeError
from slime_core.experiments.audit import THREAT_MODEL, load_paper_figures, paper_figures_path
from slime_core.present import figures
from slime_core.present.serialise import jsonable
from slime_core.present.tables import fmt_strength, knee_label, optional_cells

TEMPLATES = Path(__file__).resolve().parent / "templates"
EXACT = "exact_f1"  # the JSON name of exact tag F1 in the audit's and the curves' rows

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.note{color:#555;font-size:.9em}
.ex{display:flex;gap:1em;border:1px solid #eee;padding:.6em;margin:.6em 0}.ex img{border-radius:4px}
.tag{display:inline-block;padding:1px 6px;margin:2px;border-radius:10px;font-size:.85em}
.exact{background:#c8e6c9}.near{background:#fff3b0}.miss{background:#eee;color:#777}
.paper{border:3px dashed #b36b00;background:#fff8ec;padding:.5em 1em}.paper h2{color:#b36b00}
.nbs img{margin-right:4px}
"""


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      keep_trailing_newline=False)
    env.filters["json_dumps"] = json.dumps
    return env


def _div(fig) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def render_html(report: dict) -> str:
    """The report dict (`experiments.audit.build_report`, or `evaluation_report`) as one HTML page; plotly.js is
    inlined only when the page has a figure."""
    import plotly.offline

    paper = report.get("paper_figures") or {}
    figs = {"defences": {name: _div(figures.defence_figure(d["rows"])) for name, d in report["defences"].items()},
            "paper": [_div(figures.paper_figure(f)) for f in paper.get("figures", [])]}
    if report.get("attack"):
        figs |= {"alignment_vs_n": _div(figures.alignment_vs_n_figure(report)),
                 "leakage_per_k": _div(figures.leakage_per_k_figure(report))}
    plotly_js = plotly.offline.get_plotlyjs() if report.get("attack") or figs["defences"] or figs["paper"] else ""
    template = _environment().get_template("report.html.j2")
    return template.render(report=report, css=CSS, plotly_js=plotly_js, figures=figs,
                           exact=EXACT, nan=float("nan"), fmt_strength=fmt_strength, knee_label=knee_label,
                           optional_cells=optional_cells)


EVALUATION_SETTINGS = ("victim", "attacker", "method", "n_images", "seed", "bootstrap")


def evaluation_report(result: dict) -> dict:
    """`slime eval`'s result (`experiments.evaluation.evaluate`) as a report the template renders: the threat
    model, the settings, the per-(N, k) tag table and the caption table."""
    import datetime as dt

    return {"title": f"SLImE evaluation: semantic leakage from {result['victim']} image embeddings",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "made_by": "slime eval", "data": {"folder": result.get("data", "the test split"),
                                             "test_images": result["n_images"]},
            "threat_model": [{"role": r, "text": t} for r, t in THREAT_MODEL],
            "settings": {k: result[k] for k in EVALUATION_SETTINGS if k in result},
            "evaluation": result, "examples": [], "defences": {}, "undefended": None,
            "paper_figures": load_paper_figures(paper_figures_path())}  # every report carries the paper's, labelled


def own_embeddings_report(audit: dict, verdict: str) -> dict:
    """The app's "Your own embeddings" audit (held-out cosine, its constant-embedding prior, each audited
    embedding's tags) as a report the template renders; `verdict` is the plain-words comparison to the prior."""
    import datetime as dt
    from collections import Counter

    counts = Counter(t["tag"] for r in audit["results"] for t in r["tags"]).most_common(20)
    return {"title": "SLImE audit: what your embedding model leaks",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "made_by": "the SLImE app, Your own embeddings",
            "data": {"folder": "your uploaded embeddings", "test_images": len(audit["results"])},
            "threat_model": [{"role": r, "text": t} for r, t in THREAT_MODEL],
            "settings": {"N leaked pairs": audit["n_align"], "alignment method": audit["method"], "k tags": audit["k"],
                         "embeddings audited": len(audit["results"])},
            "own": {**audit, "verdict": verdict, "tag_counts": counts},
            "examples": [], "defences": {}, "undefended": None,
            "paper_figures": load_paper_figures(paper_figures_path())}


def write_report(report: dict, out) -> tuple[Path, Path]:
    """Write `out` (HTML) and the same report as JSON beside it (thumbnails left out of the JSON)."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise SlimeError(f"report path {out} should end in .html (the JSON goes beside it).")
    if not out.parent.exists():
        raise SlimeError(f"folder {out.parent} does not exist.")
    html, json_text = report_texts(report)
    out.write_text(html, encoding="utf-8")
    json_path = out.with_suffix(".json")
    json_path.write_text(json_text)
    return out, json_path


def report_json(report: dict) -> str:
    """The report as JSON text, thumbnails left out."""
    slim = json.loads(json.dumps(jsonable(report)))
    for ex in slim["examples"]:
        ex.pop("thumbnail", None)
        for nb in ex["neighbours"]:
            nb.pop("thumbnail", None)
    return json.dumps(slim, indent=2)


def report_texts(report: dict) -> tuple[str, str]:
    """The HTML page and the JSON text `write_report` writes, without touching the disk (the app's downloads)."""
    return render_html(report), report_json(report)
