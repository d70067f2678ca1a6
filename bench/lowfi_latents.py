"""TAEF2 latents of the attacker's public pool photos (train + dev of Flickr8k), at the generated image's size.

The offline low-fidelity generators learn from (attack-space embedding, latent) pairs and start their inversion from
the nearest pool photos' latents; both need these latents. Written once to the cache (float16, atomically):
    python bench/lowfi_latents.py [--data ../shared/data/flickr8k_8k_224] [--size 128]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from slime_core.stages.taef2 import load_taef2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/flickr8k_8k_224")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", default=str(Path.home() / ".cache" / "slime" / "taef2_latents"))
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(Path(args.data) / "captions.jsonl")]
    names = [r["image"] for r in rows if r["split"] in ("train", "dev")]
    model = load_taef2()
    out = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(names), 64), desc=f"TAEF2 latents at {args.size}px"):
            x = torch.stack([torch.from_numpy(np.asarray(Image.open(Path(args.data) / "images" / n).convert("RGB")
                             .resize((args.size, args.size), Image.BICUBIC), np.float32) / 255).permute(2, 0, 1)
                             for n in names[i:i + 64]])
            out.append(model.encode(x).half().numpy())
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".latents_{args.size}.npz.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, latents=np.concatenate(out), names=np.array(names))
    os.replace(tmp, folder / f"latents_{args.size}.npz")
    print(f"{len(names)} latents -> {folder / f'latents_{args.size}.npz'}")


if __name__ == "__main__":
    main()
