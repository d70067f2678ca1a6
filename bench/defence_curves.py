"""Leakage-vs-utility curves for every defence, on the offline default, with one command:

    python bench/defence_curves.py                    # lite0 victim, test split, N=300, k=10
    python bench/defence_curves.py --victim lite1 --out bench/results
    python bench/defence_curves.py --caption none     # tags only, no caption ROUGE-L

Writes <out>/defence_curves_<victim>.json (every row of every curve, the `slime defend` JSON contract),
<out>/defence_curves_<victim>.png (small multiples drawn with matplotlib: no browser, no kaleido) and
<out>/defence_curves_<victim>.html (the interactive plotly charts, self-contained; 5 MB, not committed), and prints one text
table per defence with the wall-clock time it took.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from slime_core.attack_spec import AttackSpec  # noqa: E402
from slime_core.experiments import defence_curves as curves  # noqa: E402
from slime_core.pipeline import Attacker  # noqa: E402
from slime_core.present.figures import defence_figure  # noqa: E402
from slime_core.present.overview_png import render_png  # noqa: E402
from slime_core.present.serialise import jsonable  # noqa: E402
from slime_core.present.tables import defence_table  # noqa: E402
from slime_core.stages.data import load_folder  # noqa: E402
from slime_core.stages.defences import defence_spec, list_defences, parse_strengths  # noqa: E402
from slime_core.stages.write import make_writer  # noqa: E402


def write_pictures(results: dict, stem: Path) -> None:
    """<stem>.png (matplotlib small multiples) and <stem>.html (plotly, self-contained)."""
    import plotly.offline

    render_png(results, stem.with_suffix(".png"))
    divs = [defence_figure(rows).to_html(full_html=False, include_plotlyjs=False) for rows in results.values()]
    stem.with_suffix(".html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>SLImE defence curves</title><script>"
        + plotly.offline.get_plotlyjs() + "</script></head><body>" + "\n".join(divs) + "</body></html>")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--victim", default="lite0")
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default: the attacker's data folder)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--defences", default=",".join(list_defences()), help="comma-separated subset")
    ap.add_argument("--strength", action="append", default=[], metavar="NAME=S1,S2",
                    help="override one defence's strengths, e.g. noise=0,0.1 (repeatable)")
    ap.add_argument("--n-align", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="first L test images only (smoke runs)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--caption", default="mbr",
                    help="caption writer for caption ROUGE-L: mbr (default, no LLM) | consensus | local | <litellm model> | none")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="redraw the PNG and HTML from a JSON this script wrote, without measuring again")
    args = ap.parse_args(argv)
    if args.from_json:
        payload = json.loads(args.from_json.read_text())
        results = {k: [{**r, "strength": float(r["strength"])} for r in rows] for k, rows in payload["curves"].items()}
        write_pictures(results, args.from_json.with_suffix(""))
        print(f"redrew {args.from_json.with_suffix('.png')} and .html", file=sys.stderr)
        return 0

    names = [d.strip() for d in args.defences.split(",") if d.strip()]
    grid = {d: list(defence_spec(d).default_strengths) for d in names}
    for item in args.strength:
        name, _, values = item.partition("=")
        defence_spec(name)
        grid[name] = parse_strengths(values)

    writer = make_writer(args.caption)
    t0 = time.perf_counter()
    attacker = Attacker(data=args.data)
    samples = [s for s in load_folder(args.data or attacker.data, args.split) if s.path is not None]
    if args.limit:
        samples = samples[: args.limit]
    setup = curves.prepare(attacker, samples, AttackSpec(args.victim, args.n_align, args.k, seed=args.seed),
                           n_boot=args.bootstrap, progress=True, writer=writer)
    t_setup = time.perf_counter() - t0
    print(f"set-up (embeddings, reference tags, baselines): {t_setup:.1f}s, {len(samples)} images", file=sys.stderr)

    results, timing = {}, {}
    for name, strengths in grid.items():
        t = time.perf_counter()
        results[name] = curves.curve(setup, name, strengths)
        timing[name] = round(time.perf_counter() - t, 2)
        print(defence_table(results[name]) + f"\n({timing[name]:.1f}s)\n")

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"defence_curves_{args.victim}"
    payload = {"command": "python bench/defence_curves.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "victim": args.victim, "attacker": attacker.bundle.attacker, "n_align": args.n_align, "k": args.k,
               "caption_writer": writer.model if writer else None,
               "n_images": len(samples), "data": str(args.data or attacker.data), "split": args.split,
               "seconds": {"setup": round(t_setup, 2), **timing, "total": round(time.perf_counter() - t0, 2)},
               "undefended": setup.undefended, "curves": results}
    stem.with_suffix(".json").write_text(json.dumps(jsonable(payload), indent=2))
    write_pictures(results, stem)
    print(f"wrote {stem}.json, {stem}.png, {stem}.html in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
