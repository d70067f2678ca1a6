"""Image-embedding throughput of the offline encoders on this machine, as `slime build` runs them.

    python bench/bench_encoders.py [--n 64] [--threads 2]

Photos from ../shared/data/flickr8k_subset1000 (else the demo gallery); decode + resize + model, batch 16,
no cache. Writes bench/results/encoder_speed.json.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

from slime_core.infra import settings
from slime_core.stages.encoders import get_encoder

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=64)
ap.add_argument("--threads", type=int, default=os.cpu_count())
args = ap.parse_args()
torch.set_num_threads(args.threads)
images = sorted((settings.data_dir() / "images").glob("*.jpg"))[: args.n]
rows = []
for name in ("lite0", "lite1", "lite2"):
    enc = get_encoder(name)
    enc.encode_images(images[:2])  # warm-up: oneDNN picks its kernels on the first call
    start = time.perf_counter()
    enc.encode_images(images)
    seconds = time.perf_counter() - start
    rows.append({"encoder": name, "images": len(images), "seconds": round(seconds, 2),
                 "images_per_s": round(len(images) / seconds, 1)})
    print(f"{name}: {rows[-1]['images_per_s']} images/s ({len(images)} photos, {seconds:.1f} s)")
out = Path(__file__).parent / "results" / "encoder_speed.json"
out.write_text(json.dumps({"threads": args.threads, "load_average": os.getloadavg()[0], "rows": rows}, indent=2))
