"""Only the README's picture of bench/lowfi_eval.py, regenerated for its photos (minutes, not the whole evaluation):
    python bench/lowfi_examples.py   -> bench/results/lowfi_eval_lite0_examples.jpg
Same methods and settings as the evaluation; (c) starts from fresh noise per batch, so its pictures differ in detail."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lowfi_eval import example_rows, examples  # noqa: E402 - the evaluation's own picture rule

from slime_core.pipeline import INIT_PHOTOS, Attacker
from slime_core.stages.data import load_folder
from slime_core.stages.generate import (
    ImageTower,
    InvertConfig,
    LatentRegressor,
    OfflineGenerator,
    PixelConfig,
    invert_pixels,
    to_images,
)
from slime_core.stages.taef2 import load_taef2

DATA = Path("../shared/data/flickr8k_8k_224")


def main() -> None:
    attacker = Attacker(data=DATA)
    samples = load_folder(DATA, "test")
    rows = example_rows(samples, 100)
    chosen = [samples[i] for i in rows]
    aligned = attacker.alignment("lite0", 300).transform(attacker.embed("lite0", [str(s.path) for s in chosen]))
    taef2, tower = load_taef2(), ImageTower.efficientnet_lite("lite2")
    regressor = LatentRegressor.load(Path("models/lowfi"))
    near = [[DATA / "images" / n for n, _ in row] for row in attacker.neighbours(aligned, INIT_PHOTOS)]
    target = torch.nn.functional.normalize(torch.as_tensor(aligned), dim=-1)
    made = {"regress": OfflineGenerator(regressor, taef2.decoder).generate(aligned),
            "invert": OfflineGenerator(regressor, taef2.decoder, tower, InvertConfig(), taef2.encoder).generate(aligned, near),
            "pixels": to_images(invert_pixels(target, regressor.cfg.size, tower, PixelConfig()))}
    examples(chosen, made, Path("bench/results/lowfi_eval_lite0_examples.jpg"))
    print("rows:", [s.name for s in chosen])


if __name__ == "__main__":
    main()
