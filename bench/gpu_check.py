"""One prepared GPU check for the paper's set-up (< 5 minutes on one H100), printing one JSON report.

  python bench/gpu_check.py                 # real sizes: ViT-bigG-14, 1.75M tags, 1M-tag faiss index
  python bench/gpu_check.py --tiny          # small shapes, runs on a CPU in well under a minute

Measures
  1. ViT-bigG-14 image embedding, images/s: the model alone on preprocessed batches (fp16 on CUDA), and
     end to end through OpenClipEncoder.encode_images on synthetic JPEG files (decode + resize + model).
     Real weights when they are on this machine (registry lookup, never a download), else random weights
     at the real size: the same FLOPs, so the same speed.
  2. Contrastive heads, one training step at paper scale with sampled negatives (build_scale):
     1280-d image and text embeddings, 1.75M tags, batch 1024, 16k random + 8 mined negatives per image;
     and one hard-negative mining pass, extrapolated to 118k COCO training images.
  3. Tag retrieval at attack time: query latency over 1M random tags (257-d keys, as `with_prior`
     makes them) with a faiss IVF index (what `TagIndex` builds above 200k tags, build time reported; recall on random keys is its worst case) and with
     exact chunked search on the GPU (`build_scale.exact_topk`).
Writes the report to --out too (default: $OUT/gpu_check.json when $OUT is set).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slime_core.infra.errors import SlimeError  # noqa: E402
from slime_core.stages.retrieve import HeadConfig, TagIndex  # noqa: E402
from slime_core.training import build_scale  # noqa: E402

TINY_CFG = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeat: int) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return (time.perf_counter() - t) / repeat


def image_encoder(args, device: str):
    from slime_core.stages.encoders import get_encoder

    if args.tiny:
        path = Path(tempfile.mkdtemp()) / "slime-gpucheck-tiny.json"
        path.write_text(json.dumps(TINY_CFG))
        return get_encoder("clip-vit-bigg-14", device=device, model_config=str(path), pretrained=None), "tiny random"
    try:
        return get_encoder("clip-vit-bigg-14", device=device), "real weights"
    except SlimeError as err:
        print(f"[gpu_check] no real ViT-bigG-14 weights ({str(err).splitlines()[0][:120]}...); random weights at real size",
              file=sys.stderr)
        return get_encoder("clip-vit-bigg-14", device=device, pretrained=None), "random weights, real size"


def check_embedding(args, device: str) -> dict:
    t = time.perf_counter()
    enc, weights = image_encoder(args, device)
    load_s = time.perf_counter() - t
    size = enc.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    x = torch.randn(args.batch, 3, size, size, device=device, dtype=enc.dtype)

    @torch.inference_mode()
    def forward():
        enc.model.encode_image(x)

    per_batch = timed(forward, device, args.repeat)
    # end to end on JPEG files like COCO's (640x480), through the encoder's own preprocessing threads
    from PIL import Image

    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.jpegs):
        arr = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
        paths.append(str(folder / f"{i}.jpg"))
        Image.fromarray(arr).save(paths[-1], quality=90)
    enc.encode_images(paths[: args.batch], batch_size=args.batch)
    sync(device)
    t = time.perf_counter()
    enc.encode_images(paths, batch_size=args.batch)
    sync(device)
    e2e = time.perf_counter() - t
    out = {"weights": weights, "model": "tiny" if args.tiny else "ViT-bigG-14", "dtype": str(enc.dtype),
           "image_size": size, "batch": args.batch, "load_seconds": round(load_s, 1),
           "model_images_per_s": round(args.batch / per_batch, 1),
           "end_to_end_images_per_s": round(len(paths) / e2e, 1), "end_to_end_images": len(paths),
           "coco_train_118k_minutes_at_end_to_end": round(118_287 / (len(paths) / e2e) / 60, 1)}
    del enc, x
    if device.startswith("cuda"):
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return out


def check_heads(args, device: str) -> dict:
    rng = np.random.default_rng(0)
    V, d, B, steps = args.tags, args.dim, args.heads_batch, args.heads_steps
    T = rng.standard_normal((V, d), dtype=np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    n = B * steps
    X = rng.standard_normal((n, d), dtype=np.float32)
    P = build_scale.SparseRows.from_lists([list(rng.integers(0, V, 20)) for _ in range(n)], V)  # ~20 tags per image
    neg = build_scale.NegativeSampling(above=0, batch_size=B, random=args.random_negatives, hard_per_image=8)
    cfg = HeadConfig(epochs=1)
    small = build_scale.SparseRows.from_lists([list(rng.integers(0, V, 20)) for _ in range(2 * B)], V)
    build_scale.train_heads_sampled(X[: 2 * B], T, small, cfg, neg, device)  # warm-up (kernels, allocator)
    sync(device)
    t = time.perf_counter()
    heads = build_scale.train_heads_sampled(X, T, P, cfg, neg, device)
    sync(device)
    step_s = (time.perf_counter() - t) / steps
    # one mining pass over `mine` images, extrapolated to COCO train x 1 variant
    mine = min(n, args.mine_images)
    Xt = torch.from_numpy(X[:mine]).to(device)
    Tt = torch.from_numpy(T).to(device, torch.float16 if device.startswith("cuda") else torch.float32)
    heads = heads.to(device)
    sync(device)
    t = time.perf_counter()
    build_scale.mine_hard_negatives(heads, Xt, Tt, P.select(np.arange(mine)), 8, device)
    sync(device)
    mine_s = time.perf_counter() - t
    out = {"tags": V, "dim": d, "batch": B, "random_negatives": args.random_negatives, "steps_timed": steps,
           "step_seconds": round(step_s, 4), "coco_epoch_minutes": round(118_287 / B * step_s / 60, 2),
           "mining_images": mine, "mining_seconds": round(mine_s, 2),
           "mining_coco_train_minutes": round(mine_s * 118_287 / mine / 60, 2)}
    if device.startswith("cuda"):
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        torch.cuda.empty_cache()
    return out


def check_retrieval(args, device: str) -> dict:
    rng = np.random.default_rng(1)
    V, d, k = args.faiss_tags, 257, 50
    keys = rng.standard_normal((V, d), dtype=np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, d), dtype=np.float32)
    t = time.perf_counter()
    index = TagIndex(keys, faiss_above=0)  # IVF, as the attack builds above 200k tags
    build_s = time.perf_counter() - t
    one = timed(lambda: index.search(queries[:1], k), "cpu", 20)
    batch = timed(lambda: index.search(queries, k), "cpu", 3)
    exact_ids = build_scale.exact_topk(queries, keys, k, device)[1]
    ivf_ids = index.search(queries, k)[1]
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact_ids, ivf_ids)]))
    exact = timed(lambda: build_scale.exact_topk(queries, keys, k, device), device, 3)
    return {"tags": V, "dim": d, "k": k, "faiss_ivf_build_seconds": round(build_s, 1),
            "faiss_ivf_query_ms": round(one * 1000, 3), "faiss_ivf_batch_ms_per_query": round(batch / len(queries) * 1000, 3),
            "faiss_ivf_recall_at_k_vs_exact": round(recall, 3), "queries": len(queries),
            "exact_search_ms_per_query": round(exact / len(queries) * 1000, 3), "exact_device": device,
            "faiss_threads": __import__("faiss").omp_get_max_threads()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="small shapes (CPU smoke run)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: embedding,heads,retrieval")
    args = ap.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    real = dict(batch=128, repeat=5, jpegs=512, tags=1_750_000, dim=1280, heads_batch=1024, heads_steps=10,
                random_negatives=16_384, mine_images=20_000, faiss_tags=1_000_000, queries=500)
    tiny = dict(batch=16, repeat=2, jpegs=32, tags=20_000, dim=64, heads_batch=128, heads_steps=3,
                random_negatives=1024, mine_images=512, faiss_tags=20_000, queries=50)
    for key, value in (tiny if args.tiny else real).items():
        setattr(args, key, value)
    skip = {s for s in args.skip.split(",") if s}
    report = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu",
              "torch": torch.__version__, "tiny": args.tiny, "cpus": os.cpu_count()}
    t0 = time.perf_counter()
    for name, fn in (("embedding", check_embedding), ("heads", check_heads), ("retrieval", check_retrieval)):
        if name in skip:
            continue
        t = time.perf_counter()
        try:
            report[name] = fn(args, device)
        except Exception as err:  # report the failure and go on to the next part
            import traceback

            traceback.print_exc()
            report[name] = {"error": f"{type(err).__name__}: {err}"}
        report[name]["seconds"] = round(time.perf_counter() - t, 1)
        print(f"[gpu_check] {name}: {json.dumps(report[name])}", file=sys.stderr, flush=True)
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=2)
    print(text)
    out = args.out or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    if out:
        Path(out).write_text(text)
    return 0 if all("error" not in v for v in report.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
