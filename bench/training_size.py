"""Leakage against the attacker's public data: train attackers on growing subsets of the train split, score each
on the same test photos, each metric beside its prior.

    python bench/training_size.py [--data ../shared/data/flickr8k_subset1000] [--sizes 200,400,662]

For each size a dataset folder is made under bench/out/ (the first `size` train photos after a seeded shuffle,
the whole dev and test splits, images linked, not copied); `slime build` trains a bundle on it and `slime eval`
scores victim lite0 at N = 300, k = 10 with consensus captions. The attacker's public pool is its train + dev
photos, so it grows with the training set too. Writes bench/results/training_size.json and, where plotly can
export images (kaleido), bench/results/training_size.png.
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
    subprocess.run([sys.executable, "-m", "slime_core.cli", *args], cwd=ROOT, check=True)


def point(result: dict, section: str, metric: str, prior: str, diff: str) -> dict:
    m = result[section][0]["metrics"][metric]
    return {"attack": m["attack"], "ci": [m["ci_low"], m["ci_high"]], "prior": m[prior],
            "diff": m[diff]["diff"], "diff_ci": [m[diff]["ci_low"], m[diff]["ci_high"]]}


def figure(rows: list[dict]):
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(SERIES), subplot_titles=[s[0] for s in SERIES])
    x = [r["train_images"] for r in rows]
    for col, (label, *_rest) in enumerate(SERIES, start=1):
        ys = [r[label] for r in rows]
        fig.add_scatter(x=x, y=[y["attack"] for y in ys], mode="lines+markers", name="attack (lite0, N=300)",
                        error_y=dict(type="data", symmetric=False, array=[y["ci"][1] - y["attack"] for y in ys],
                                     arrayminus=[y["attack"] - y["ci"][0] for y in ys]),
                        line_color="#c0392b", showlegend=col == 1, row=1, col=col)
        fig.add_scatter(x=x, y=[y["prior"] for y in ys], mode="lines+markers", name="prior (no embedding)",
                        line=dict(color="#7f8c8d", dash="dash"), showlegend=col == 1, row=1, col=col)
        fig.update_xaxes(title_text="attacker's training photos", row=1, col=col)
    fig.update_layout(width=1200, height=380, margin=dict(t=60, b=40, l=40, r=20),
                      title="What leaks, by the attacker's public training data (125 Flickr8k test photos, k = 10)")
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "flickr8k_subset1000")
    ap.add_argument("--sizes", default="200,400,662", help="train-split sizes, comma-separated")
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
             "--victim", "lite0", "--n-align", "300", "--k", "10", "--caption", "consensus", "--no-progress",
             "--format", "json", "--output", str(result)])
        evaluation = json.loads(result.read_text())
        manifest = json.loads((bundle / "manifest.json").read_text())
        rows.append({"train_images": size, "vocabulary": manifest["n_tags"], "pool_images": len(
            json.loads((bundle / "pool.json").read_text())["images"]), "test_images": evaluation["n_images"]}
            | {label: point(evaluation, *rest) for label, *rest in SERIES})
        print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(json.dumps({"victim": "lite0", "n_align": 300, "k": 10, "writer": "consensus",
                                    "data": args.data.name, "rows": rows}, indent=2))
    try:
        figure(rows).write_image(args.out.with_suffix(".png"), scale=1)
    except Exception as err:  # kaleido missing or no browser for it: the JSON is the result
        print(f"no PNG written ({err.__class__.__name__}: {err})")


if __name__ == "__main__":
    main()
