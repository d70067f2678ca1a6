"""The audit report as one self-contained HTML file (plus the same numbers as JSON beside it).

The page is the Jinja2 template `templates/report.html.j2`; this module only prepares what the template
cannot: the plotly figures (as HTML divs, plotly.js inlined once, so the file opens offline) and the JSON.

    report = experiments.audit.build_report(attacker, samples, grid=AttackSpec("lite0", (30, 300), (5, 10)))
    html_path, json_path = write_report(report, "report.html")

An evaluation (`slime eval`'s result) goes through the same template: `render_html(evaluation_report(result))`, and
so does one attack (the app's Attack one image download): `render_html(attack_report(result.to_dict(), ...))`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from slime_core.experiments.audit import THREAT_MODEL, load_paper_figures, paper_figures_path, png_uri, thumbnail_uri
from slime_core.infra.errors import SlimeError, mask_output
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
.nbs img{margin-right:4px}.unscored{background:#e3f2fd}
.ex figure{margin:0;text-align:center}.ex figcaption{font-size:.8em;color:#555}.gen img{width:144px;image-rendering:auto}
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
    measurable = [r for r in (report.get("sensitive_attributes") or {}).get("rows", []) if r["measurable"]]
    figs["attributes"] = _div(figures.attribute_auc_figure(report["sensitive_attributes"])) if measurable else ""
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
    aucs = (audit.get("sensitive_attributes") or {}).get("built_in_aucs")
    return {"title": "SLImE audit: what your embedding model leaks",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "made_by": "the SLImE app, Your own embeddings",
            "data": {"folder": "your uploaded embeddings", "test_images": len(audit["results"])},
            "threat_model": [{"role": r, "text": t} for r, t in THREAT_MODEL],
            "settings": {"N leaked pairs": audit["n_align"], "alignment method": audit["method"], "k tags": audit["k"],
                         "embeddings audited": len(audit["results"])},
            "own": {**audit, "verdict": verdict, "tag_counts": counts},
            # a built-in victim's measured AUCs, when the page measured them: the report's usual attribute section
            "sensitive_attributes": aucs if aucs and "systems" in aucs else None,
            "examples": [], "defences": {}, "undefended": None,
            "paper_figures": load_paper_figures(paper_figures_path())}


STORE_SETTINGS = (("input", "embeddings"), ("victim", "victim"), ("victim_pool", "victim pool file"),
                  ("attacker", "attacker"), ("n_align", "N leaked pairs"), ("method", "alignment method"),
                  ("seed", "pair draw seed"), ("k", "k tags"), ("batch_size", "batch size"),
                  ("caption", "caption writer"), ("out", "results (Parquet parts)"))


def store_audit_report(summary: dict) -> dict:
    """`slime audit`'s summary (`experiments.store_audit`) as a report the template renders: the run's settings,
    rows scored and skipped, each attribute's share beside its prior, the most exposed embeddings, the tags."""
    import datetime as dt

    s = summary["settings"]
    shown = {"input": f"{s['input']['path']} ({s['input']['kind']}, {s['input']['rows']:,} rows of "
                      f"{s['input']['dim']} dims{', column ' + s['input']['column'] if s['input']['column'] else ''})",
             "victim_pool": (s["victim_pool"] or {}).get("path", "the bundle's")}
    settings = {label: shown.get(key, s.get(key)) for key, label in STORE_SETTINGS}
    settings["caption writer"] = settings["caption writer"] or "none"
    return {"title": "SLImE store audit: what your stored embeddings give away",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "made_by": "slime audit",
            "data": {"folder": s["input"]["path"], "test_images": summary["rows"], "what": "stored embeddings"},
            "threat_model": [{"role": r, "text": t} for r, t in THREAT_MODEL], "settings": settings,
            "store": summary, "examples": [], "defences": {}, "undefended": None,
            "paper_figures": load_paper_figures(paper_figures_path())}


def attack_report(result: dict, image=None, generated=None, captions: Sequence[str] = (),
                  classified: Sequence[tuple[str, str]] | None = None, pool_images: Path | None = None,
                  made_by: str = "the SLImE app, Attack one image") -> dict:
    """One attack (`AttackResult.to_dict()`) as a report the template renders: the photo (`image`: a path or the
    bytes of an upload; None for an embedding) beside the image generated from its embedding (`generated`, a PIL
    image, embedded as PNG), the tags (`classified`: (tag, "exact" | "neighbourhood" | "miss") when the photo's
    `captions` were known, else unscored), the caption, the objects, the nearest public photos (thumbnails from
    `pool_images` where they are on disk)."""
    import datetime as dt
    import io

    match = {"neighbourhood": "near"}
    marks = dict(classified or [])
    item = {"image": result.get("image") or "the attacked embedding", "caption": captions[0] if captions else "",
            "tags": [{"tag": t["tag"], "score": t["score"], "match": match.get(marks.get(t["tag"]), marks.get(t["tag"]))
                      or "unscored"} for t in result["tags"]],
            "neighbours": [dict(n) for n in result["neighbors"]], "attack_caption": result.get("caption"),
            "objects": result.get("objects"), "lowfi_method": (result.get("lowfi") or {}).get("method")}
    if image is not None:
        item["thumbnail"] = thumbnail_uri(io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image, 256)
    if generated is not None:
        item["generated"] = png_uri(generated)
    for nb in item["neighbours"]:
        if pool_images is not None and (Path(pool_images) / nb["image"]).is_file():
            nb["thumbnail"] = thumbnail_uri(Path(pool_images) / nb["image"], 96)
    settings = {"victim": result["victim"], "attacker": result["attacker"], "N leaked pairs": result["n_align"],
                "k tags": result["k"], "alignment cosine (held-out)": result["alignment_cosine"],
                "low-fidelity image": item["lowfi_method"] or "none"}
    return {"title": "SLImE: what one image embedding gives away",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "made_by": made_by,
            "data": {"folder": "one attacked image", "test_images": 1},
            "threat_model": [{"role": r, "text": t} for r, t in THREAT_MODEL], "settings": settings,
            "result": result, "examples": [item], "defences": {}, "undefended": None,
            "paper_figures": load_paper_figures(paper_figures_path())}


def write_report(report: dict, out) -> tuple[Path, Path]:
    """Write `out` (HTML) and the same report as JSON beside it (thumbnails left out of the JSON)."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise SlimeError(f"report path {out} should end in .html (the JSON goes beside it).")
    if not out.parent.exists():
        raise SlimeError(f"folder {out.parent} does not exist.")
    from slime_core.infra.output_gate import write_text  # masked: no configured key reaches the files

    html, json_text = report_texts(report)
    json_path = out.with_suffix(".json")
    write_text(json_path, json_text, "the report's JSON")  # the smaller file first: the HTML can still be tried
    write_text(out, html, "the report")
    return out, json_path


def report_json(report: dict) -> str:
    """The report as JSON text, thumbnails left out."""
    slim = json.loads(json.dumps(jsonable(report)))
    for ex in slim["examples"]:
        ex.pop("thumbnail", None)
        ex.pop("generated", None)
        for nb in ex["neighbours"]:
            nb.pop("thumbnail", None)
    return json.dumps(slim, indent=2)


def report_texts(report: dict) -> tuple[str, str]:
    """The HTML page and the JSON text `write_report` writes, without touching the disk (the app's downloads);
    both through the output gate (`errors.mask_output`: no configured key, in any common encoding)."""
    return mask_output(render_html(report)), mask_output(report_json(report))
