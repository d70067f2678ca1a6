"""open_clip dual encoders (the paper's ViT-bigG-14 attacker, the ViT-L-14 victim), weights found offline only.

open_clip itself downloads a tag's weights on demand; we never let it. A tag is resolved here to a
local file (a folder of ours, or the Hugging Face cache) and handed to open_clip as a path, so a
missing file is one quick `MissingModelError` instead of minutes of retries.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from slime_core.infra import loaded_models, settings
from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages.encoders.base import Encoder, batched, l2_normalise, load_image
from slime_core.stages.encoders.config import EncoderCfg

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
ENV_DIR = "SLIME_OPEN_CLIP_DIR"


def _hub_location(model: str, tag: str) -> tuple[str, dict, list[str]]:
    """(HF repo id, open_clip's config for the tag, candidate weight file names)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg.get("hf_hub"):
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise MissingModelError(
            f"open_clip knows no Hugging Face weights for {model} with pretrained={tag!r} (tags: {known}); "
            "give `pretrained` as the path of a weight file instead."
        )
    # open_clip's convention: "org/repo/" means the default file names, "org/repo/file.bin" one file.
    repo, filename = os.path.split(cfg["hf_hub"])
    if not filename:
        return repo, cfg, list(WEIGHT_FILES)
    stem, ext = os.path.splitext(filename)
    return repo, cfg, ([f"{stem}.safetensors"] if ext in (".bin", ".pth", ".pt") else []) + [filename]


def find_weights(model: str, tag: str, path: str | None = None) -> tuple[str, dict]:
    """Local weight file for (model, tag) and the tag's open_clip config; never touches the network.

    Looks in `path` (a file, or a folder holding the file), then $SLIME_OPEN_CLIP_DIR/<hf repo>/,
    then the Hugging Face cache."""
    if Path(tag).expanduser().is_file():
        return str(Path(tag).expanduser()), {}
    repo, cfg, names = _hub_location(model, tag)
    candidates = []
    if path:
        p = Path(path).expanduser()
        candidates += [p] if p.is_file() else [p / n for n in names]
    if settings.weights_dir(ENV_DIR):
        candidates += [settings.weights_dir(ENV_DIR) / repo / n for n in names]
    for c in candidates:
        if c.is_file():
            return str(c), cfg
    from huggingface_hub import try_to_load_from_cache

    for n in names:
        cached = try_to_load_from_cache(repo, n)
        if isinstance(cached, str):
            return cached, cfg
    looked = [str(c) for c in candidates] + [f"Hugging Face cache ({repo})"]
    raise MissingModelError(
        f"open_clip weights for {model} (pretrained={tag!r}) are not on this machine. Download them with "
        f"`hf download {repo} {names[0]} --local-dir ${ENV_DIR}/{repo}` "
        f"and set {ENV_DIR}, or run `hf download {repo} {names[0]}` to fill the Hugging Face cache, "
        f"or set the encoder's `path` to the file. Looked in: {'; '.join(looked)}."
    )


PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


@loaded_models.load_once("open_clip")
def _load_open_clip(model: str, weights: str | None, quick_gelu: bool, preprocess_cfg: tuple, device: str,
          precision: str, seed: int):
    """(model, preprocess, tokenizer), once per process: the attacker's image and text towers share one copy."""
    import open_clip

    pp = dict(preprocess_cfg)
    if open_clip.get_model_config(model) is None:
        raise SlimeError(f"open_clip has no model config named {model!r}.")
    # Random weights (weights=None) are seeded so a tiny test model is the same in every process.
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net, _, preprocess = open_clip.create_model_and_transforms(
                model, pretrained=weights, device=device, precision=precision, force_quick_gelu=quick_gelu,
                pretrained_text=False, pretrained_image=False,  # no tower downloads behind our back
                image_mean=pp.get("mean"), image_std=pp.get("std"), image_interpolation=pp.get("interpolation"),
                image_resize_mode=pp.get("resize_mode"),
            )
    except Exception as err:  # a truncated download or a file for another architecture
        raise SlimeError(f"cannot load open_clip {model} from {weights}: {type(err).__name__}: {err}") from err
    return net.eval(), preprocess, open_clip.get_tokenizer(model)


@lru_cache(maxsize=1)
def _decoder_pool():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="slime-decode")


def register_config(path: str) -> str:
    """Register an open_clip model config JSON (e.g. a tiny test architecture) under its file stem."""
    import open_clip

    p = Path(path).expanduser()
    if not p.is_file():
        raise SlimeError(f"open_clip model config {p} does not exist.")
    if open_clip.get_model_config(p.stem) is None:
        open_clip.add_model_config(p)
    return p.stem


class OpenClipEncoder(Encoder):
    modalities = ("image", "text")

    def __init__(self, name: str, model: str, weights: str | None = None, tag_cfg: dict | None = None,
                 device: str = "cpu", precision: str = "fp32", seed: int = 0, quick_gelu: bool = False):
        import open_clip

        tag_cfg = tag_cfg or {}
        # open_clip applies a tag's QuickGELU flag and preprocessing only when it resolves the tag
        # itself; we hand it a path, so they are passed on here.
        quick_gelu = quick_gelu or bool(tag_cfg.get("quick_gelu", False))
        pp = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in tag_cfg.items() if k in PREPROCESS_KEYS)
        self.name, self.device = name, device
        self.model, self.preprocess, self.tokenizer = _load_open_clip(model, weights, quick_gelu, pp, device, precision, seed)
        self.dim = open_clip.get_model_config(model)["embed_dim"]
        # open_clip's fp16 keeps some parameters (class embedding, logit scale) in fp32: take the precision asked for
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)

    def _run(self, items, batch_size, progress, what, step) -> np.ndarray:
        items = list(items)
        out = []
        chunks = batched(items, batch_size)
        total = -(-len(items) // batch_size)
        with torch.inference_mode():
            for chunk in tqdm(chunks, total=total, desc=f"embedding {what} ({self.name})", disable=not progress):
                out.append(step(chunk).float().cpu().numpy())
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def encode_images(self, images, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        def prepare(item):
            return self.preprocess(load_image(item))

        def step(chunk):
            # JPEG decoding and resizing (PIL releases the GIL) in threads, so the GPU is not kept waiting.
            x = torch.stack(list(_decoder_pool().map(prepare, chunk)) if len(chunk) > 1 else [prepare(chunk[0])])
            return self.model.encode_image(x.to(self.device, self.dtype))

        return self._run(images, batch_size, progress, "images", step)

    def encode_texts(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        def step(chunk):
            return self.model.encode_text(self.tokenizer([str(t) for t in chunk]).to(self.device))

        return self._run(texts, batch_size, progress, "texts", step)


def build_open_clip(cfg: EncoderCfg, device: str | None = None) -> OpenClipEncoder:
    """cfg: `model` (open_clip config name), `pretrained` (tag, weight file path, or None for random
    weights), optional `path`, `precision` ("fp16" on CUDA and "fp32" elsewhere by default, or "bf16"), `seed` (random weights),
    `quick_gelu` (for a weight file given by path whose model was trained with QuickGELU),
    `model_config` (a JSON architecture file, registered under its stem, which then replaces `model`)."""
    model = register_config(cfg.model_config) if cfg.model_config else cfg.model
    tag = cfg.pretrained
    weights, tag_cfg = find_weights(model, str(tag), cfg.path) if tag else (None, {})
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    precision = cfg.precision or ("fp16" if str(device).startswith("cuda") else "fp32")  # fp16 on GPUs
    return OpenClipEncoder(cfg.name, model, weights, tag_cfg, device, precision, cfg.seed, cfg.quick_gelu)
