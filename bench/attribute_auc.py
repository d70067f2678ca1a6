"""Sensitive-attribute ROC AUCs of the offline attack on the Flickr8k test photos (issue 24, part 2):

    python bench/attribute_auc.py                      # lite0, N = 30 and 300, ridge, seed 0, 1,000 resamples
    python bench/attribute_auc.py --limit 100          # a smoke run on the first 100 test photos

Writes <out>/attribute_auc_<victim>.json (slime_core.experiments.attribute_eval's dict) and prints the README's
Markdown table: AUC [95% CI] per attribute for each N and the oracle, and each attribute's prevalence.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from slime_core.experiments.attribute_eval import evaluate_attributes  # noqa: E402
from slime_core.pipeline import Attacker  # noqa: E402
from slime_core.stages.attributes import load_attributes  # noqa: E402
from slime_core.stages.data import load_folder  # noqa: E402


def markdown_table(result: dict) -> str:
    """AUC [95% CI] per attribute and system, and the prevalence in the captions (count of photos)."""
    labels = list(result["systems"])
    lines = ["| attribute | prevalence | " + " | ".join(f"AUC {lab}" for lab in labels) + " |",
             "|---|---:|" + "---:|" * len(labels)]
    for row in result["rows"]:
        cells = ["—" if e is None else f"{e['mean']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"
                 for e in (row["auc"][lab] for lab in labels)]
        prevalence = f"{row['prevalence']:.1%} ({row['n_positive']})"
        lines.append(f"| {row['attribute']} | {prevalence} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--victim", default="lite0")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "flickr8k_8k_224")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n-align", default="30,300")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--attributes", type=Path, default=None, help="an attributes JSON file (default: the packaged one)")
    ap.add_argument("--limit", type=int, default=0, help="first L photos only (smoke runs)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    attacker = Attacker(data=args.data)
    samples = load_folder(args.data, args.split)
    samples = samples[: args.limit] if args.limit else samples
    attributes = load_attributes(args.attributes, vocab=attacker.bundle.tags)
    result = evaluate_attributes(attacker, samples, victim=args.victim, seed=args.seed, n_boot=args.bootstrap,
                                 n_aligns=tuple(int(n) for n in args.n_align.split(",")), attributes=attributes,
                                 progress=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"attribute_auc_{args.victim}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(result))
    print(f"\n{len(samples)} {args.split} photos, {args.bootstrap} resamples, {result['seconds']} s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
