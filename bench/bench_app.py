"""Time the Streamlit app: cold start of the default page and re-render after a slider change.

    python bench/bench_app.py [--repeats 5]

Runs the app in-process through streamlit.testing.v1.AppTest (the same script run a browser session gets,
minus the websocket). "cold" includes importing slime_core and torch, loading the bundle, the spaCy parser,
the text encoder and the victim encoder; a warm on-disk embedding cache is assumed unless --fresh-cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fresh-cache", action="store_true", help="empty embedding cache (first visit on a new machine)")
    ap.add_argument("--phases", action="store_true", help="instead: time each cold-start stage of page 1 in order")
    args = ap.parse_args()
    if args.phases:
        return phases()
    if args.fresh_cache:
        os.environ["SLIME_CACHE"] = tempfile.mkdtemp(prefix="slime-bench-")
    t0 = time.perf_counter()
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    cold = time.perf_counter() - t0
    if at.exception:
        print("app raised:", [e.value for e in at.exception], file=sys.stderr)
        return 1
    out = {"cold_start_s": round(cold, 2)}
    for key, values in (("k", [5, 12, 3, 20, 10]), ("n_align", [200, 100, 300]), ("gallery_pick", None)):
        times = []
        for i in range(args.repeats):
            if key == "gallery_pick":  # a click on a thumbnail of the gallery picker (one page of 12 photos)
                picks = [b for b in at.button if b.key and b.key.startswith("pick_")]
                step = picks[(i + 1) % len(picks)].click()
            else:
                step = at.slider(key=key).set_value(values[i % len(values)])
            t = time.perf_counter()
            step.run()
            times.append(time.perf_counter() - t)
            if at.exception:
                print("app raised:", [e.value for e in at.exception], file=sys.stderr)
                return 1
        out[f"rerender_{key}_s"] = {"median": round(statistics.median(times), 3), "max": round(max(times), 3),
                                    "first": round(times[0], 3)}
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))
    return 0


def phases() -> int:
    """Cold-start stages of page 1 in the order the page runs them; tags are on screen after 'attack'."""
    start = last = time.perf_counter()
    out = {}

    def lap(name):
        nonlocal last
        now = time.perf_counter()
        out[name] = round(now - last, 2)
        last = now

    import streamlit  # noqa: F401

    lap("import streamlit")
    import torch

    from slime_core.attack_spec import AttackSpec
    from slime_core.experiments.single_image import caption_scores, single_image_scores
    from slime_core.pipeline import DEMO_DATA, Attacker
    from slime_core.pipeline import embed_cached as embed_images

    torch.set_num_threads(int(os.environ.get("SLIME_APP_THREADS", "1")))  # as app_pages/_resources.py does
    lap("import slime_core (torch)")
    attacker = Attacker()
    lap("load bundle")
    first = json.loads((DEMO_DATA / "captions.jsonl").read_text().splitlines()[0])
    emb = embed_images(attacker, "lite0", [str(DEMO_DATA / "images" / first["image"])])[0]
    lap("victim embedding (disk cache or encoder)")
    result = attacker.attack(embedding=emb, spec=AttackSpec("lite0", 300, 10))
    lap("align N=300 + retrieve")
    out["time_to_tags_s"] = round(time.perf_counter() - start, 2)
    from slime_core.stages.tags import make_parser, tags_of_captions

    refs = list(tags_of_captions(first["captions"], make_parser("spacy")))
    lap("spaCy parser + reference tags")
    scorer = attacker.scorer()
    single_image_scores(attacker, result, refs, scorer)
    lap("text encoder + tag scores")
    from slime_core.stages.write import make_writer

    public = attacker.captions_of(attacker.bundle.pool["images"])
    if public:
        caption = make_writer("consensus").write([t["tag"] for t in result.tags],
                                                 attacker.captions_of([n["image"] for n in result.neighbours])).text
        caption_scores(caption, first["captions"], public)
        lap("consensus caption + BLEU/ROUGE/METEOR (WordNet)")
    out["full_page_s"] = round(time.perf_counter() - start, 2)
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
