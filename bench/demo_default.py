"""The demo's opening photo, by a stated rule: the gallery photo whose gain in neighbourhood tag F1 over the most
frequent tags is the gallery's median at the app's default settings (victim lite0, N = 300, k = 10; exact F1's median
is a tie: half the photos score exactly the prior's exact F1 at k = 10). Run after every
rebuild of models/default; writes assets/demo/default_photo.json, which the app reads for that bundle only.

    python bench/demo_default.py
"""

from __future__ import annotations

import json

import numpy as np

from slime_core.experiments import headline as hl
from slime_core.pipeline import DEMO_DATA, Attacker
from slime_core.stages import bundle
from slime_core.stages.data import load_folder
from slime_core.stages.tags import make_parser

DEFAULTS = hl.DEFAULT_SETTINGS


def main() -> None:
    attacker = Attacker()
    samples = [s for s in load_folder(DEMO_DATA) if s.path is not None]
    table = hl.gallery_table(attacker, samples, make_parser("spacy"), **DEFAULTS)
    d = table["default_scores"]
    image = hl.default_photo(d["names"], d["gain"])
    i = d["names"].index(image)
    out = {"image": image, "rule": hl.DEFAULT_RULE, "settings": DEFAULTS,
           "bundle": bundle.bundle_identity(attacker.bundle),
           "exact_f1": round(d["exact_f1"][i], 4), "neighbourhood_f1_gain": round(d["gain"][i], 4),
           "gallery_gain_median": round(float(np.median(d["gain"])), 4), "photos": len(d["names"])}
    (DEMO_DATA / "default_photo.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
