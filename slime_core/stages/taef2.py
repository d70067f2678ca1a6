"""TAEF2: a tiny convolutional autoencoder for the FLUX.2 latent space, used here as a natural-image prior.

Weights: GitHub madebyollin/taesd (`taef2_encoder.pth`, `taef2_decoder.pth`, MIT, licence beside them), converted
once to safetensors in `models/taef2/` so a fresh clone needs no network and no pickle is ever loaded. An RGB
image in [0, 1] of size H x W becomes a 32 x H/8 x W/8 latent and back.

The layer layout is the TAESD family's (conv stacks of residual `Block`s, three 2x down/up-samplings). TAEF2 adds,
in the three blocks at the latent's resolution, a `pool` branch -- 1x1 conv 64->256, GroupNorm, GELU, 1x1 conv
256->64 -- that the checkpoint names but does not describe. How it is wired was decided by measurement: of the
wirings and norms tried (added before or after the 3x3 convs, on pooled or local features, 1..256 groups, ReLU
or GELU), a per-pixel residual before the convs with GroupNorm(16) and GELU reconstructs three Flickr8k photos at
512x384 best: 27.8 dB PSNR (the weights' README measured 26.0 dB on one photo; without the branch: 16.6 dB).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from slime_core.infra import loaded_models, settings
from slime_core.infra.errors import MissingModelError

MODEL_DIR = settings.REPO / "models" / "taef2"
LATENT_CHANNELS = 32
SCALE = 8  # pixels per latent cell, each side


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3  # keeps an optimised latent in the range the decoder was trained on


class Block(nn.Module):
    def __init__(self, channels: int = 64, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(channels, channels), nn.ReLU(), _conv(channels, channels), nn.ReLU(),
                                  _conv(channels, channels))
        self.pool = nn.Sequential(nn.Conv2d(channels, 4 * channels, 1, bias=False), nn.GroupNorm(16, 4 * channels),
                                  nn.GELU(), nn.Conv2d(4 * channels, channels, 1, bias=False)) if pool else None
        self.fuse = nn.ReLU()

    def forward(self, x):
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


def encoder(width: int = 64) -> nn.Sequential:
    down = lambda: _conv(width, width, stride=2, bias=False)  # noqa: E731
    return nn.Sequential(
        _conv(3, width), Block(width),
        down(), Block(width), Block(width), Block(width),
        down(), Block(width), Block(width), Block(width),
        down(), Block(width, True), Block(width, True), Block(width, True),
        _conv(width, LATENT_CHANNELS))


def decoder(width: int = 64) -> nn.Sequential:
    up = lambda: [nn.Upsample(scale_factor=2), _conv(width, width, bias=False)]  # noqa: E731
    return nn.Sequential(
        Clamp(), _conv(LATENT_CHANNELS, width), nn.ReLU(),
        Block(width, True), Block(width, True), Block(width, True), *up(),
        Block(width), Block(width), Block(width), *up(),
        Block(width), Block(width), Block(width), *up(),
        Block(width), _conv(width, 3))


class TAEF2(nn.Module):
    """`encode(images (n,3,H,W) in [0,1]) -> latents (n,32,H/8,W/8)`; `decode(latents) -> images in [0,1]`."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.encoder, self.decoder = encoder(width), decoder(width)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents).clamp(0, 1)


def load_taef2(folder: str | Path | None = None) -> TAEF2:
    """The real TAEF2 from `folder` (default models/taef2), float32, eval mode, gradients off for its weights."""
    return _load_taef2(str(Path(folder or MODEL_DIR)))


@loaded_models.load_once("taef2")
def _load_taef2(folder: str) -> TAEF2:
    from safetensors.torch import load_file
    paths = [Path(folder) / f"taef2_{part}.safetensors" for part in ("encoder", "decoder")]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise MissingModelError(f"{missing[0]}: TAEF2 weights not found (a clone of the repo carries them in models/taef2).")
    model = TAEF2()
    model.encoder.load_state_dict({k: v.float() for k, v in load_file(paths[0]).items()})
    model.decoder.load_state_dict({k: v.float() for k, v in load_file(paths[1]).items()})
    return model.eval().requires_grad_(False)
