"""Leakage against the attacker's public data: train attackers on growing subsets of the train split, score each
on the same test photos, each metric beside its prior.

    python bench/training_size.py [--data ../shared/data/flickr8k_8k_224] [--sizes 662,1500,3000,5909]

For each size a dataset folder is made under bench/out/ (the first `size` train photos after a seeded shuffle,
the whole dev and test splits, images linked, not copied); `slime build` trains a bundle on it and `slime eval`
scores victim lite0 at N = 300, k = 10 with MBR captions on the same 1,000 test photos. The attacker's public pool is
its train + dev photos, so it grows with the training set too (dev, 1,000 photos, is the same for every size). Writes bench/results/training_size.json and bench/results/training_size.png
(the app's About page draws the JSON).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERIES = [  # (label, result section, metric, prior key, paired-difference key)
    ("exact tag F1", "rows", "exact_f1", "frequent", "vs_frequent"),
    ("neighbourhood tag F1", "rows", "neighbourhood_f1", "frequent", "vs_frequent"),
    ("caption ROUGE-L", "captions", "rougeL", "mean_embedding_caption", "vs_mean_embedding_caption"),
]


def subset_folder(data: Path, size: int, out: Path, seed: int) -> Path:
    records = [json.loads(line) for line in (data / "captions.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if r["split"] == "train"]
    if size > len(train):
        sys.exit(f"{data}: only {len(train)} train photos, cannot take {size}.")
    random.Random(seed).shuffle(train)
    keep = train[:size] + [r for r in records if r["split"] in ("dev", "test")]
    (out / "images").mkdir(parents=True, exist_ok=True)
    for r in keep:
        link = out / "images" / r["image"]
        if not link.exists():
            link.symlink_to((data / "images" / r["image"]).resolve())
    (out / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    return out


def run(args: list[str]) -> None:
    print("+ slime " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "slime_core.cli.main", *args], cwd=ROOT, check=True)


def point(result: dict, section: str, metric: str, prior: str, diff: str) -> dict:
    m = result[section][0]["metrics"][metric]
    return {"attack": m["attack"], "ci": [m["ci_low"], m["ci_high"]], "prior": m[prior],
            "diff": m[diff]["diff"], "diff_ci": [m[diff]["ci_low"], m[diff]["ci_high"]]}


def png(result: dict, path: Path) -> None:
    """The README's picture (matplotlib: no browser needed); the app draws the same JSON with plotly
    (slime_core.present.figures.training_size_figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    x = [r["train_images"] for r in rows]
    fig, axes = plt.subplots(1, len(SERIES), figsize=(13, 3.6))
    for ax, (label, *_rest) in zip(axes, SERIES):
        ys = [r[label] for r in rows]
        ax.errorbar(x, [y["attack"] for y in ys], yerr=[[y["attack"] - y["ci"][0] for y in ys],
                    [y["ci"][1] - y["attack"] for y in ys]], color="#c0392b", marker="o", capsize=3,
                    label=f"attack ({result['victim']}, N={result['n_align']}, k={result['k']})")
        ax.plot(x, [y["prior"] for y in ys], color="#7f8c8d", linestyle="--", marker="s", label="prior (no embedding)")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(x, [f"{v:,}" for v in x])
        ax.set_title(label)
        ax.set_xlabel("attacker's training photos")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"What leaks, by the attacker's public training data ({rows[0]['test_images']:,} Flickr8k test photos)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "flickr8k_8k_224")
    ap.add_argument("--sizes", default="662,1500,3000,5909", help="train-split sizes, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "training_size.json")
    args = ap.parse_args()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        work = ROOT / "bench" / "out" / f"train_{size}"
        folder = subset_folder(args.data, size, work / "data", args.seed)
        bundle, result = work / "bundle", work / "eval.json"
        run(["build", "--data", str(folder), "--out", str(bundle), "--seed", str(args.seed), "--no-progress"])
        run(["eval", "--data", str(folder), "--split", "test", "--bundle", str(bundle), "--pool-data", str(folder),
             "--victim", "lite0", "--n-align", "300", "--k", "10", "--caption", "mbr", "--no-progress",
             "--format", "json", "--output", str(result)])
        evaluation = json.loads(result.read_text())
        manifest = json.loads((bundle / "manifest.json").read_text())
        rows.append({"train_images": size, "vocabulary": manifest["n_tags"], "pool_images": len(
            json.loads((bundle / "pool.json").read_text())["images"]), "test_images": evaluation["n_images"]}
            | {label: point(evaluation, *rest) for label, *rest in SERIES})
        print(json.dumps(rows[-1]), flush=True)
    result = {"victim": "lite0", "n_align": 300, "k": 10, "writer": "mbr", "data": args.data.name, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2))
    png(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
