"""A low-fidelity image offline, from an attack-space embedding alone: "what this embedding looks like".

The paper decodes the aligned embedding with Kandinsky 2.2 (`lowfi.KandinskyDecoder`, where its weights are).
Offline, three real methods make a picture through TAEF2's decoder (`taef2.py`, a natural-image prior) or
without it:

  regress  (b) `LatentRegressor`: a small network trained on the public pool's photos from the attacker's image
           embedding to the photo's TAEF2 latent (a PCA basis of the latents, then a feature-matching stage: the
           attacker's image tower must embed the decoded image near the input embedding). One forward pass.
  invert   (a) decoder-regularised inversion: a TAEF2 latent, started from `init` (the nearest public photos'
           latents where the pool's photos are at hand, else the regressor's output), optimised so the attacker's
           image tower embeds its decoding close to the target; a pull towards the start keeps it photo-like.
  pixels   (c) plain inversion of the image tower in pixel space with jitter and total variation: the baseline.

All work on a batch of unit-length attack-space embeddings (n, d) and return PIL images of `size` pixels.
`ImageTower` is the attacker's image encoder made differentiable (EfficientNet-Lite2 pre-logits offline).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from slime_core.infra.errors import MissingModelError, SlimeError

METHODS = ("regress", "invert", "pixels")


class ImageTower(nn.Module):
    """Images (n,3,h,w) in [0,1] -> unit-length embeddings, differentiably: the model's own resize and scaling.
    `model` maps its normalised input to pre-logits; `size` is its input side; `mean`/`std` its pixel scaling."""

    def __init__(self, model: nn.Module, size: int, mean: float = 127.0 / 255, std: float = 128.0 / 255):
        super().__init__()
        self.model, self.size, self.mean, self.std = model.requires_grad_(False), size, mean, std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=False)
        return F.normalize(self.model((x - self.mean) / self.std), dim=-1)

    @classmethod
    def efficientnet_lite(cls, name: str = "lite2") -> "ImageTower":
        from slime_core.stages.encoders import get_encoder
        enc = get_encoder(name)
        net = enc.model
        return cls(_PreLogits(net).float(), enc.size)


class _PreLogits(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)


@dataclass
class RegressorConfig:
    dim: int = 1280  # attack-space embedding
    hidden: int = 512
    n_basis: int = 256  # principal components of the training latents the network predicts
    latent_shape: tuple[int, int, int] = (32, 16, 16)  # TAEF2 latent of a 128 x 128 image

    @property
    def size(self) -> int:
        return self.latent_shape[-1] * 8


class LatentRegressor(nn.Module):
    """Attack-space embedding (n, dim) -> TAEF2 latent (n, *latent_shape), through a PCA basis of real latents."""

    def __init__(self, cfg: RegressorConfig = RegressorConfig()):
        super().__init__()
        self.cfg = cfg
        n_latent = int(np.prod(cfg.latent_shape))
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.n_basis))
        self.register_buffer("basis", torch.zeros(cfg.n_basis, n_latent))
        self.register_buffer("mean", torch.zeros(n_latent))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return (self.mlp(e) @ self.basis + self.mean).view(-1, *self.cfg.latent_shape)

    def save(self, folder: Path, meta: dict) -> None:
        from safetensors.torch import save_file
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().half().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "regressor.safetensors"))
        (folder / "regressor.json").write_text(json.dumps({"config": asdict(self.cfg), **meta}, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "LatentRegressor":
        from safetensors.torch import load_file
        paths = folder / "regressor.safetensors", folder / "regressor.json"
        if not all(p.is_file() for p in paths):
            raise MissingModelError(f"{folder}: no trained low-fidelity regressor (regressor.safetensors + .json).")
        try:
            cfg = json.loads(paths[1].read_text())["config"]
            model = cls(RegressorConfig(**{**cfg, "latent_shape": tuple(cfg["latent_shape"])}))
            model.load_state_dict({k: v.float() for k, v in load_file(str(paths[0])).items()})
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise SlimeError(f"{paths[0]}: not a low-fidelity regressor ({str(e).splitlines()[0]}).") from None
        return model.eval().requires_grad_(False)


def to_images(batch: torch.Tensor) -> list[Image.Image]:
    arr = (batch.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def jitter(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    dx, dy = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=generator))
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


@dataclass
class InvertConfig:
    steps: int = 20
    lr: float = 0.1
    prior_weight: float = 0.05  # pull towards the starting latent: keeps the decoding photo-like
    jitter: int = 4  # pixels; a random shift per step so the image cannot fool the tower with a fixed pattern


def invert_latents(target: torch.Tensor, start: torch.Tensor, decoder: nn.Module, tower: ImageTower,
                   cfg: InvertConfig = InvertConfig(), progress: Callable[[int], None] | None = None,
                   seed: int = 0) -> torch.Tensor:
    """(a): latents near `start` whose decodings `tower` embeds close to `target` (n, d) -> decoded images."""
    gen = torch.Generator().manual_seed(seed)
    z = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.lr)
    for step in range(cfg.steps):
        images = decoder(z).clamp(0, 1)
        cos = (tower(jitter(images, cfg.jitter, gen)) * target).sum(-1)
        loss = (1 - cos).mean() + cfg.prior_weight * (z - start).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(step + 1)
    with torch.no_grad():
        return decoder(z).clamp(0, 1)


@dataclass
class PixelConfig:
    steps: int = 40
    lr: float = 0.05
    tv_weight: float = 0.3
    jitter: int = 8


def invert_pixels(target: torch.Tensor, size: int, tower: ImageTower, cfg: PixelConfig = PixelConfig(),
                  progress: Callable[[int], None] | None = None, seed: int = 0) -> torch.Tensor:
    """(c): images grown from grey so `tower` embeds them close to `target`; jitter and total variation are the
    only image priors."""
    gen = torch.Generator().manual_seed(seed)
    logits = (0.1 * torch.randn(len(target), 3, size, size, generator=gen)).requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=cfg.lr)
    for step in range(cfg.steps):
        images = torch.sigmoid(logits)
        cos = (tower(jitter(images, cfg.jitter, gen)) * target).sum(-1)
        loss = (1 - cos).mean() + cfg.tv_weight * total_variation(images)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(step + 1)
    return torch.sigmoid(logits).detach()


class OfflineGenerator:
    """The product's offline low-fidelity image, method (a): a TAEF2 latent started from the mean latent of the
    nearest public photos (`init_photos`, encoded by TAEF2's encoder on the fly) -- or from the regressor's output
    (b) where those photos are not on disk -- then `refine.steps` steps of decoder-regularised inversion
    (no `refine`: the start is decoded as it is)."""

    name = "offline"

    def __init__(self, regressor: LatentRegressor, decoder: nn.Module, tower: ImageTower | None = None,
                 refine: InvertConfig | None = None, encoder: nn.Module | None = None):
        self.regressor, self.decoder, self.tower, self.refine, self.encoder = regressor, decoder, tower, refine, encoder
        if refine is not None and refine.steps and tower is None:
            raise SlimeError("refining the generated image needs the attacker's image tower.")

    @property
    def size(self) -> int:
        return self.regressor.cfg.size

    def starts(self, target: torch.Tensor, init_photos: list[list] | None) -> tuple[torch.Tensor, list[str]]:
        """Each row's starting latent and where it came from ("nearest photos" or "regressor")."""
        with torch.no_grad():
            start = self.regressor(target)
            origin = ["regressor"] * len(target)
            if init_photos is None or self.encoder is None:
                return start, origin
            for i, photos in enumerate(init_photos):
                photos = [p for p in photos if Path(p).is_file()]
                if photos:
                    start[i] = self.encoder(photo_batch(photos, self.size)).mean(0)
                    origin[i] = "nearest photos"
        return start, origin

    def generate(self, aligned: np.ndarray, init_photos: list[list] | None = None, batch_size: int = 8,
                 progress: bool = False, on_step: Callable[[float], None] | None = None) -> list[Image.Image]:
        """One image per row of `aligned` (n, d). init_photos: per row, the paths of its nearest public photos."""
        return self.generate_with_starts(aligned, init_photos, batch_size, progress, on_step)[0]

    def generate_with_starts(self, aligned: np.ndarray, init_photos: list[list] | None = None, batch_size: int = 8,
                             progress: bool = False, on_step: Callable[[float], None] | None = None
                             ) -> tuple[list[Image.Image], list[str]]:
        """`generate`'s images and where each started ("nearest photos" or "regressor"). Returned, not stored: one
        generator serves every app session at once."""
        target = F.normalize(torch.as_tensor(np.atleast_2d(aligned), dtype=torch.float32), dim=-1)
        if target.shape[1] != self.regressor.cfg.dim:
            raise SlimeError(f"the generator takes {self.regressor.cfg.dim}-d attack-space embeddings, got {target.shape[1]}.")
        steps = self.refine.steps if self.refine is not None else 0
        out: list[Image.Image] = []
        origins: list[str] = []
        bar = tqdm(total=len(target), desc="generating images", disable=not progress)
        for i in range(0, len(target), batch_size):
            t = target[i:i + batch_size]
            start, origin = self.starts(t, None if init_photos is None else init_photos[i:i + batch_size])
            origins += origin
            if steps:
                tick = (lambda s: on_step((i + len(t) * s / steps) / len(target))) if on_step else None
                images = invert_latents(t, start, self.decoder, self.tower, self.refine, tick)
            else:
                with torch.no_grad():
                    images = self.decoder(start).clamp(0, 1)
            out += to_images(images)
            bar.update(len(t))
            if on_step:
                on_step(min(1.0, (i + len(t)) / len(target)))
        bar.close()
        return out, origins


def photo_batch(paths, size: int) -> torch.Tensor:
    """Photos as (n, 3, size, size) in [0, 1], squashed to a square as the training latents were."""
    from slime_core.stages.encoders.base import load_image
    return torch.stack([torch.from_numpy(np.asarray(load_image(p).resize((size, size), Image.BICUBIC), np.float32)
                                          / 255).permute(2, 0, 1) for p in paths])


REGRESSOR_DIR = Path(__file__).resolve().parents[2] / "models" / "lowfi"


def load_offline_generator(refine_steps: int = InvertConfig.steps, regressor_dir: str | Path | None = None,
                           image_encoder: str = "lite2") -> OfflineGenerator:
    """The shipped generator: TAEF2 and models/lowfi's regressor (both in the repo), plus the attacker's image
    tower when `refine_steps` > 0. MissingModelError names whatever is absent."""
    from slime_core.stages.taef2 import load_taef2
    regressor = LatentRegressor.load(Path(regressor_dir or REGRESSOR_DIR))
    tower = ImageTower.efficientnet_lite(image_encoder) if refine_steps else None
    taef2 = load_taef2()
    return OfflineGenerator(regressor, taef2.decoder, tower, InvertConfig(steps=refine_steps) if refine_steps else None,
                            taef2.encoder)
