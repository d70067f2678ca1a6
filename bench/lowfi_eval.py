"""The generated low-fidelity image and the objects in it, measured on Flickr8k's test photos (issue 21).

For each method (regress on --n photos; invert and pixels, which optimise per image, on the first --n-slow):
  objects      P/R/F1 of detections on the generated image against detections on the original photo, beside the
               most-frequent-objects prior, the tags' nouns, the nearest public photo and their union;
               and the detector's own F1 on the original photo against the captions' nouns (the ceiling);
  top-5        overlap of the detector's and of EfficientNet-Lite1's (ImageNet, not the attacker's tower) top-5
               labels with the original photo's, beside the nearest public photo and a random public photo;
  identify     how often the image is closer to its own photo than to the other test photos on average, in
               Lite1's features and in a 16x16 colour thumbnail, beside the nearest public photo;
  seconds      per image, on this machine.
    python bench/lowfi_eval.py [--n 1000] [--n-slow 100] [--out bench/results/lowfi_eval_lite0]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from slime_core.experiments.objects_eval import prior_objects, score_sources, union
from slime_core.pipeline import Attacker
from slime_core.stages import detect
from slime_core.stages.data import load_folder
from slime_core.stages.encoders import get_encoder
from slime_core.stages.generate import (
    ImageTower,
    InvertConfig,
    LatentRegressor,
    OfflineGenerator,
    PixelConfig,
    invert_pixels,
    to_images,
)
from slime_core.stages.metrics import Estimate
from slime_core.stages.objects import (
    detect_objects,
    object_scores,
    objects_from_captions,
    objects_from_tags,
    read_pool_objects,
)
from slime_core.stages.taef2 import load_taef2


def top5_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ta, tb = np.argsort(-a, 1)[:, :5], np.argsort(-b, 1)[:, :5]
    return np.array([len(set(x) & set(y)) / 5 for x, y in zip(ta, tb)])


def identification(G: np.ndarray, O: np.ndarray, similarity: bool) -> np.ndarray:
    """1 where row i of G is closer to O[i] than to the other rows of O on average."""
    S = G @ O.T if similarity else -np.linalg.norm(G[:, None] - O[None], axis=-1)
    n = len(G)
    others = (S.sum(1) - np.diag(S)) / (n - 1)
    return (np.diag(S) > others).astype(float)


def thumbnails(images) -> np.ndarray:
    return np.stack([np.asarray(Image.open(im).convert("RGB") if isinstance(im, (str, Path)) else im.convert("RGB"))
                     .astype(np.float32) for im in [_thumb(i) for i in images]]).reshape(len(images), -1) / 255


def _thumb(im):
    im = Image.open(im) if isinstance(im, (str, Path)) else im
    return im.convert("RGB").resize((16, 16), Image.BOX)


def pictures_scores(name, images, originals, lite1, det_orig, lite1_orig, thumbs_orig, n_boot):
    n = len(images)
    det = np.stack([detect.class_scores(im) for im in images])
    feats = lite1.features(images)
    probs = lite1.classify(feats)
    f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    fo = lite1_orig[1][:n]
    return {"detector_top5_overlap": Estimate.bootstrap(top5_overlap(det, det_orig[:n]), n_boot).to_dict(),
            "lite1_top5_overlap": Estimate.bootstrap(top5_overlap(probs, lite1_orig[0][:n]), n_boot).to_dict(),
            "identified_lite1": Estimate.bootstrap(identification(f, fo, True), n_boot).to_dict(),
            "identified_thumbnail": Estimate.bootstrap(identification(thumbnails(images), thumbs_orig[:n], False),
                                                       n_boot).to_dict()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/flickr8k_8k_224")
    ap.add_argument("--victim", default="lite0")
    ap.add_argument("--n-align", type=int, default=300)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-slow", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--regressor-fm", default="/tmp/taef/reg_fm", help="the regressor trained with feature matching")
    ap.add_argument("--regressor", default="models/lowfi")
    ap.add_argument("--methods", default="regress,regress_fm,invert,pixels")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", default="bench/results/lowfi_eval_lite0")
    args = ap.parse_args()
    torch.manual_seed(0)
    attacker = Attacker(data=args.data)
    samples = load_folder(args.data, "test")[:args.n]
    train = load_folder(args.data, "train")
    paths = [str(s.path) for s in samples]
    X = attacker.embed(args.victim, paths, progress=True)
    aligned = attacker.alignment(args.victim, args.n_align).transform(X)
    tags = [[t for t, _ in row] for row in attacker.retrieve(aligned, args.k)]
    nearest = [row[0][0] for row in attacker.neighbours(aligned, 1)]
    pool_objects = read_pool_objects(attacker.bundle.path)
    reference = detect_objects(paths, True, "objects in the test photos")
    train_objects = [pool_objects[s.name] for s in train]
    prior = prior_objects(train_objects)
    image_dir = Path(args.data) / "images"
    rng = np.random.default_rng(0)
    random_public = [image_dir / n for n in rng.choice(sorted(pool_objects), len(samples))]

    lite1 = get_encoder("lite1")
    det_orig = np.stack([detect.class_scores(p) for p in paths])
    lite1_feats = lite1.features(paths)
    lite1_orig = (lite1.classify(lite1_feats), lite1_feats / np.linalg.norm(lite1_feats, axis=1, keepdims=True))
    thumbs_orig = thumbnails(paths)
    sources = {"tags": [objects_from_tags(t) for t in tags], "nearest": [pool_objects[n] for n in nearest]}
    result = {"victim": args.victim, "n_align": args.n_align, "k": args.k, "n_images": len(samples),
              "detector_on_original_vs_caption_nouns": {m: Estimate.bootstrap(v, args.bootstrap).to_dict() for m, v in
                  object_scores(reference, [objects_from_captions(s.captions) for s in samples]).items()},
              "pictures": {"nearest": pictures_scores("nearest", [image_dir / n for n in nearest], paths, lite1, det_orig,
                                                      lite1_orig, thumbs_orig, args.bootstrap),
                           "random_public": pictures_scores("random", random_public, paths, lite1, det_orig, lite1_orig,
                                                            thumbs_orig, args.bootstrap)},
              "seconds_per_image": {}, "prior_objects": prior}

    taef2 = load_taef2()
    decoder, tower = taef2.decoder, ImageTower.efficientnet_lite(attacker.bundle.image_encoder)
    regressor = LatentRegressor.load(Path(args.regressor))
    size = regressor.cfg.size
    target = torch.nn.functional.normalize(torch.as_tensor(aligned, dtype=torch.float32), dim=-1)
    near4 = [[n for n, _ in row] for row in attacker.neighbours(aligned[:args.n_slow], 4)]
    made = {}
    for method in args.methods.split(","):
        n = len(samples) if method.startswith("regress") else min(args.n_slow, len(samples))
        t0 = time.time()
        if method == "regress":
            made[method] = OfflineGenerator(regressor, decoder).generate(aligned[:n], progress=True)
        elif method == "regress_fm":  # the regressor with its feature-matching stage
            made[method] = OfflineGenerator(LatentRegressor.load(Path(args.regressor_fm)), decoder).generate(
                aligned[:n], progress=True)
        elif method == "invert":  # the product's path: the 4 nearest public photos' mean latent, then inversion
            gen = OfflineGenerator(regressor, decoder, tower, InvertConfig(), taef2.encoder)
            made[method] = gen.generate(aligned[:n], [[image_dir / m for m in row] for row in near4[:n]], progress=True)
        elif method == "pixels":
            made[method] = sum((to_images(invert_pixels(target[:n][i:i + 8], size, tower, PixelConfig()))
                                for i in range(0, n, 8)), [])
        result["seconds_per_image"][method] = round((time.time() - t0) / n, 3)
        with torch.no_grad():
            made_t = torch.stack([torch.from_numpy(np.asarray(im, np.float32) / 255).permute(2, 0, 1) for im in made[method]])
            cos = torch.cat([(tower(made_t[i:i + 32]) * target[:n][i:i + 32]).sum(-1) for i in range(0, n, 32)]).numpy()
        result.setdefault("tower_cosine_to_target", {})[method] = Estimate.bootstrap(cos, args.bootstrap).to_dict()
        sources[f"generated_{method}"] = detect_objects(made[method], True, f"objects in {method} images")
        result["pictures"][method] = pictures_scores(method, made[method], paths, lite1, det_orig, lite1_orig,
                                                     thumbs_orig, args.bootstrap)
        print(method, result["seconds_per_image"][method], "s/image", flush=True)
    best = next((f"generated_{m}" for m in ("invert", "regress") if f"generated_{m}" in sources), None)
    if best:  # over the photos that method covers
        sources["union"] = union(sources["tags"], sources[best], sources["nearest"])
        result["union_of"] = ["tags", best, "nearest"]
    result["objects"] = score_sources(sources, reference, prior, args.bootstrap)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    examples(samples, made, out.with_name(out.name + "_examples.jpg"))
    print(json.dumps(result["objects"], indent=1)[:3000])


def example_rows(samples, limit: int, rows: int = 4) -> list[int]:
    """The first `rows` test photos, in file order, that the repo's demo gallery already carries (Flickr8k photos
    may be in the repo only as that downsized gallery) among the first `limit` (the ones every method covers)."""
    gallery = {json.loads(line)["image"] for line in open("assets/demo/captions.jsonl") if line.strip()}
    return [i for i, s in enumerate(samples[:limit]) if s.name in gallery][:rows]


def examples(samples, made: dict, path: Path, side: int = 128) -> None:
    """original | each method's generated image, one row per `example_rows` photo; JPEG, small."""
    rows = example_rows(samples, min(len(v) for v in made.values()))
    sheet = Image.new("RGB", (side * (1 + len(made)), side * len(rows)), "white")
    for r, i in enumerate(rows):
        for c, im in enumerate([Image.open(samples[i].path), *[made[m][i] for m in made]]):
            sheet.paste(im.convert("RGB").resize((side, side)), (c * side, r * side))
    sheet.save(path, quality=85)


if __name__ == "__main__":
    main()
