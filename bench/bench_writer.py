"""Seconds per caption of the offline writer (SmolLM2-135M, tags mode), on 20 real tag sets.
Run: python bench/bench_writer.py"""

import json
import statistics
import time

import torch

from slime_core.attack_spec import AttackSpec
from slime_core.pipeline import Attacker, default_data
from slime_core.stages.write import LocalWriter

torch.set_num_threads(2)
attacker = Attacker()
images = sorted((default_data() / "images").glob("*.jpg"))[:20]
tag_sets = [[t["tag"] for t in attacker.attack(image=str(p), spec=AttackSpec("lite0")).tags] for p in images]
t = time.perf_counter()
writer = LocalWriter("tags")
writer.write(tag_sets[0])  # the first call loads the GGUF weights
load = time.perf_counter() - t
times = []
for tags in tag_sets:
    t = time.perf_counter()
    writer.write(tags)
    times.append(time.perf_counter() - t)
print(json.dumps({"load_and_first_caption_s": round(load, 2), "median_s_per_caption": round(statistics.median(times), 3),
                  "max_s_per_caption": round(max(times), 3), "captions": len(times)}))
