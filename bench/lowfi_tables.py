"""README tables from bench/results/lowfi_eval_lite0.json (written by bench/lowfi_eval.py):
    python bench/lowfi_tables.py [path.json]"""
from __future__ import annotations

import json
import sys

NAMES = {"regress": "(b) regressor, latent loss only", "regress_fm": "(b) regressor + feature matching",
         "invert": "(a) inversion from the nearest photos' latents (shipped)", "pixels": "(c) pixel inversion, jitter + TV",
         "nearest": "nearest public photo", "random_public": "random public photo"}


def ci(e: dict, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    m = e.get("mean", e.get("diff"))
    return f"{f.format(m)} [{f.format(e['ci_low'])}, {f.format(e['ci_high'])}]"


def main() -> None:
    r = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "bench/results/lowfi_eval_lite0.json"))
    o = r["objects"]
    print(f"Objects, against FastestDet's detections on the original photo (prior: {o['prior']['objects']}, "
          f"F1 {ci(o['prior']['f1'])}):\n")
    print("| objects from | photos | precision | recall | F1 | Δ F1 vs prior |\n|---|---|---|---|---|---|")
    for name, v in o.items():
        if name == "prior":
            continue
        label = NAMES.get(name.removeprefix("generated_"), name)
        label = f"generated image: {label}" if name.startswith("generated_") else label
        if name == "union":
            label = "union of " + ", ".join(r.get("union_of", []))
        print(f"| {label} | {v['n_images']} | {v['precision']['mean']:.3f} | {v['recall']['mean']:.3f} | {ci(v['f1'])} "
              f"| {ci(v['vs_prior'], True)} |")
    d = r["detector_on_original_vs_caption_nouns"]
    print(f"\nThe detector on the original photo against the captions' nouns: F1 {ci(d['f1'])} "
          f"(precision {d['precision']['mean']:.3f}, recall {d['recall']['mean']:.3f}).\n")
    print("| image | photos | s / image | tower cosine to target | detector top-5 overlap | Lite1 top-5 overlap "
          "| identified (Lite1) | identified (16×16 thumbnail) |\n|---|---|---|---|---|---|---|---|")
    for name, v in r["pictures"].items():
        n = o.get(f"generated_{name}", {}).get("n_images", r["n_images"])
        secs = r["seconds_per_image"].get(name, "–")
        cos = ci(r["tower_cosine_to_target"][name]) if name in r.get("tower_cosine_to_target", {}) else "–"
        print(f"| {NAMES.get(name, name)} | {n} | {secs} | {cos} | {ci(v['detector_top5_overlap'])} | "
              f"{ci(v['lite1_top5_overlap'])} | {ci(v['identified_lite1'])} | {ci(v['identified_thumbnail'])} |")


if __name__ == "__main__":
    main()
