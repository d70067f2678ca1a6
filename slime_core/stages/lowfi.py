"""Low-fidelity image from an aligned image embedding: "what this embedding looks like".

KandinskyDecoder  the paper's way: Kandinsky 2.2's decoder, conditioned on an embedding in ViT-bigG-14's
                  CLIP image space (1280-d), turns it back into pixels. Needs the weights locally.
make_lowfi        "offline" (`generate.OfflineGenerator`: TAEF2 latents from the aligned embedding, no network) or
                  "kandinsky" (the paper's decoder); both give `.generate(aligned (n, d)) -> [PIL image]`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from slime_core.infra.errors import MissingModelError, SlimeError

KANDINSKY_DECODER_ID = "kandinsky-community/kandinsky-2-2-decoder"


def _resolve(path_or_id: str, cache_dir: str | None) -> Path:
    """A local folder holding the pipeline, from a path or the HF cache; never downloads."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    hint = (f"Kandinsky 2.2 decoder not found at {path_or_id!r}. Download {KANDINSKY_DECODER_ID!r} "
            f"(e.g. `huggingface-cli download {KANDINSKY_DECODER_ID}`) on a machine with network, "
            "then pass its folder or keep it in the Hugging Face cache.")
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", path_or_id) or path_or_id.startswith((".", "/")):
        raise MissingModelError(hint)
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(path_or_id, cache_dir=cache_dir, local_files_only=True))
    except Exception as e:  # LocalEntryNotFoundError, validation errors, a missing package: all mean "absent"
        raise MissingModelError(hint) from e


class KandinskyDecoder:
    """Wraps a `diffusers.KandinskyV22Pipeline`; `decode` turns embeddings (n, d) into PIL images."""

    def __init__(self, pipe, negative_embedding: np.ndarray | None = None):
        self.pipe = pipe
        # Kandinsky's own negative is CLIP's embedding of a blank image, which needs the prior's image
        # encoder; zeros are the stand-in unless the caller has the real one.
        self.negative = None if negative_embedding is None else np.asarray(negative_embedding, np.float32).reshape(-1)

    @classmethod
    def from_pretrained(cls, path_or_id: str = KANDINSKY_DECODER_ID, device: str | None = None,
                        cache_dir: str | None = None, **kwargs) -> "KandinskyDecoder":
        folder = _resolve(path_or_id, cache_dir)  # before importing torch/diffusers: fails fast
        try:
            import torch
            from diffusers import KandinskyV22Pipeline
        except ImportError as e:
            raise MissingModelError("The Kandinsky decoder needs torch and diffusers: pip install diffusers") from e
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        try:
            with warnings.catch_warnings():  # newer diffusers rename torch_dtype to dtype; older know only torch_dtype
                warnings.simplefilter("ignore", FutureWarning)
                pipe = KandinskyV22Pipeline.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
        except (OSError, ValueError) as e:
            raise MissingModelError(f"Could not load the Kandinsky 2.2 decoder from {folder}: {e}") from e
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe.to(device), **kwargs)

    @property
    def embed_dim(self) -> int:
        return int(self.pipe.unet.config.encoder_hid_dim)

    def decode(self, embeddings: np.ndarray, steps: int = 50, size: int | tuple[int, int] = 512, seed: int = 0,
               guidance_scale: float = 4.0, embed_norm: float | None = None, batch_size: int = 4) -> list:
        """One image per row of `embeddings` (n, d), d = `embed_dim` (1280 for the real decoder).

        Kandinsky was trained on raw (unnormalised) CLIP image embeddings; for unit-norm aligned embeddings
        pass `embed_norm`, the typical norm of real ViT-bigG-14 image embeddings, to rescale each row.
        """
        import torch

        emb = np.asarray(embeddings, np.float32)
        emb = emb[None] if emb.ndim == 1 else emb
        if emb.ndim != 2 or emb.shape[1] != self.embed_dim:
            raise SlimeError(f"Kandinsky decoder expects embeddings of shape (n, {self.embed_dim}) in ViT-bigG-14's "
                             f"CLIP image space; got {emb.shape}. Align the victim embedding to that space first.")
        if embed_norm:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12) * embed_norm
        h, w = (size, size) if isinstance(size, int) else size
        step = self.pipe.movq_scale_factor ** 2
        if h % step or w % step:
            raise SlimeError(f"Image size must be a multiple of {step} pixels; got {h}x{w}.")
        neg = np.zeros_like(emb[:1]) if self.negative is None else self.negative[None]
        if neg.shape[1] != emb.shape[1]:
            raise SlimeError(f"negative_embedding has dim {neg.shape[1]}, expected {emb.shape[1]}.")
        device, dtype = self.pipe.unet.device, self.pipe.unet.dtype
        generator = torch.Generator("cpu").manual_seed(seed)  # a CPU generator gives the same noise on any device
        images = []
        for i in range(0, len(emb), batch_size):
            chunk = torch.from_numpy(emb[i : i + batch_size]).to(device, dtype)
            out = self.pipe(image_embeds=chunk, negative_image_embeds=torch.from_numpy(neg).to(device, dtype)
                            .expand(len(chunk), -1), height=h, width=w, num_inference_steps=steps,
                            guidance_scale=guidance_scale, generator=generator, output_type="pil")
            images.extend(out.images)
        return images


LOWFI_METHODS = ("offline", "kandinsky")


class KandinskyLowFi:
    """Kandinsky behind the same face as the offline generator. It decodes ViT-bigG-14 CLIP image embeddings, so
    only an attacker whose attack space is that CLIP may use it."""

    name = "kandinsky"

    def __init__(self, decoder: KandinskyDecoder, steps: int = 25, embed_norm: float | None = None):
        self.decoder, self.steps, self.embed_norm = decoder, steps, embed_norm

    def generate(self, aligned: np.ndarray, progress: bool = False, **_) -> list:
        return self.decoder.decode(aligned, steps=self.steps, embed_norm=self.embed_norm)


def check_lowfi(method: str, attacker_image_encoder: str, kandinsky: str = KANDINSKY_DECODER_ID) -> None:
    """What `make_lowfi` would refuse, found without loading any weights (a page can grey a choice at no cost):
    SlimeError for a wrong pairing, MissingModelError for absent weights."""
    if method not in LOWFI_METHODS:
        raise SlimeError(f"unknown low-fidelity method {method!r}; choose one of {', '.join(LOWFI_METHODS)}.")
    if method == "kandinsky":
        if not attacker_image_encoder.startswith("clip-vit-bigg-14"):
            raise SlimeError(f"Kandinsky 2.2 decodes ViT-bigG-14 CLIP image embeddings; this attacker's space is "
                             f"{attacker_image_encoder!r} (use --lowfi offline, or the clip-vit-bigg-14 bundle).")
        _resolve(kandinsky, None)
        return
    from slime_core.stages.generate import REGRESSOR_DIR
    from slime_core.stages.taef2 import MODEL_DIR
    for path in (REGRESSOR_DIR / "regressor.safetensors", MODEL_DIR / "taef2_decoder.safetensors"):
        if not path.is_file():
            raise MissingModelError(f"{path}: not found (a clone of the repo carries it).")


def make_lowfi(method: str, attacker_image_encoder: str, kandinsky: str = KANDINSKY_DECODER_ID,
               refine_steps: int | None = None):
    """The low-fidelity image maker called `method`, checked against the attacker before any weights load.
    MissingModelError (with the loader's reason) where its weights are absent; SlimeError for a wrong pairing."""
    check_lowfi(method, attacker_image_encoder, kandinsky)
    if method == "kandinsky":
        return KandinskyLowFi(KandinskyDecoder.from_pretrained(kandinsky))
    from slime_core.stages.generate import InvertConfig, load_offline_generator
    steps = InvertConfig.steps if refine_steps is None else refine_steps
    return load_offline_generator(steps, image_encoder=attacker_image_encoder)
