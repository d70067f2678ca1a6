"""Train the offline low-fidelity image regressor (`generate.LatentRegressor`) on the attacker's public pool.

Pairs: each pool photo's attack-space embedding (the attacker's image tower, unit length) and its TAEF2 latent at
the generated image's size (`bench/lowfi_latents.py` writes them). Two stages:
  1. a PCA basis of the latents, then the network fitted to the photos' coordinates in it (mean squared error);
  2. feature matching: the decoded latent must embed, in the attacker's image tower, near the input embedding --
     so the picture carries the embedding's meaning rather than only the average photo's colours. Pixel or latent
     error alone gives the blurry mean; the tower's cosine is the perceptual term. A pull to the stage-1 latent
     keeps the decoding in the range TAEF2 was trained on.
    python -m slime_core.training.build_lowfi --latents ~/.cache/slime/taef2_latents/latents_128.npz --out models/lowfi
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from slime_core.stages.generate import ImageTower, LatentRegressor, RegressorConfig


@dataclass
class TrainConfig:
    epochs: int = 40  # stage 1 (cheap: no decoder)
    batch_size: int = 256
    lr: float = 1e-3
    feature_steps: int = 150  # stage 2: each decodes and embeds a batch, about 1 s on 2 CPU cores
    feature_batch: int = 16
    feature_lr: float = 3e-4
    latent_weight: float = 0.5  # stage 2's pull to the true latent, relative to the tower's 1 - cosine
    seed: int = 0


def pca_basis(latents: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    flat = latents.flatten(1)
    mean = flat.mean(0)
    _, _, v = torch.linalg.svd(flat - mean, full_matrices=False)
    return v[:n], mean


def fit_coordinates(model: LatentRegressor, E: torch.Tensor, Z: torch.Tensor, cfg: TrainConfig, progress: bool) -> float:
    """Stage 1: the network's outputs fitted to each latent's coordinates in the basis; returns the mean squared
    error of the predicted latents over all pairs afterwards."""
    coords = (Z.flatten(1) - model.mean) @ model.basis.T
    opt = torch.optim.AdamW(model.mlp.parameters(), lr=cfg.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in tqdm(range(cfg.epochs), desc="regressor: latents", disable=not progress):
        for idx in torch.randperm(len(E), generator=gen).split(cfg.batch_size):
            loss = F.mse_loss(model.mlp(E[idx]), coords[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float(sum(F.mse_loss(model(e), z, reduction="sum") for e, z in zip(E.split(512), Z.split(512))) / Z.numel())


def match_features(model: LatentRegressor, E: torch.Tensor, Z: torch.Tensor, decoder, tower: ImageTower,
                   cfg: TrainConfig, progress: bool) -> dict:
    """Stage 2: the tower's cosine between decoded prediction and input embedding, plus the latent pull."""
    opt = torch.optim.AdamW(model.mlp.parameters(), lr=cfg.feature_lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    decoder.requires_grad_(False)
    cosines = []
    for _ in tqdm(range(cfg.feature_steps), desc="regressor: feature matching", disable=not progress):
        idx = torch.randint(0, len(E), (cfg.feature_batch,), generator=gen)
        z = model(E[idx])
        cos = (tower(decoder(z).clamp(0, 1)) * E[idx]).sum(-1)
        loss = (1 - cos).mean() + cfg.latent_weight * F.mse_loss(z, Z[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        cosines.append(float(cos.mean()))
    head = cosines[: max(1, len(cosines) // 10)]
    tail = cosines[-max(1, len(cosines) // 10):]
    return {"tower_cosine_first_tenth": float(np.mean(head)) if cosines else None,
            "tower_cosine_last_tenth": float(np.mean(tail)) if cosines else None}


def train_regressor(E: np.ndarray, Z: np.ndarray, decoder, tower: ImageTower | None, cfg: TrainConfig = TrainConfig(),
                    reg_cfg: RegressorConfig | None = None, progress: bool = False) -> tuple[LatentRegressor, dict]:
    """E (n, d) unit-length attack-space embeddings, Z (n, *latent_shape) their photos' latents."""
    torch.manual_seed(cfg.seed)
    E_t, Z_t = torch.as_tensor(E, dtype=torch.float32), torch.as_tensor(Z, dtype=torch.float32)
    reg_cfg = reg_cfg or RegressorConfig(dim=E.shape[1], latent_shape=tuple(Z.shape[1:]))
    model = LatentRegressor(reg_cfg)
    basis, mean = pca_basis(Z_t, reg_cfg.n_basis)
    model.basis.copy_(basis)
    model.mean.copy_(mean)
    t0 = time.time()
    info = {"latent_mse": fit_coordinates(model, E_t, Z_t, cfg, progress)}
    if tower is not None and cfg.feature_steps:
        info.update(match_features(model, E_t, Z_t, decoder, tower, cfg, progress))
    info["seconds"] = round(time.time() - t0, 1)
    return model.eval().requires_grad_(False), info


def main(argv=None) -> None:
    from slime_core.pipeline import Attacker
    from slime_core.stages.taef2 import load_taef2
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", required=True, help="npz with `latents` and `names` (bench/lowfi_latents.py)")
    ap.add_argument("--data", default="../shared/data/flickr8k_8k_224")
    ap.add_argument("--out", default="models/lowfi")
    ap.add_argument("--feature-steps", type=int, default=TrainConfig.feature_steps)
    args = ap.parse_args(argv)
    with np.load(args.latents) as f:
        Z, names = f["latents"].astype(np.float32), [str(n) for n in f["names"]]
    attacker = Attacker(data=args.data)
    E = attacker.embed(attacker.bundle.image_encoder, [str(Path(args.data) / "images" / n) for n in names], progress=True)
    cfg = TrainConfig(feature_steps=args.feature_steps)
    tower = ImageTower.efficientnet_lite(attacker.bundle.image_encoder) if cfg.feature_steps else None
    model, info = train_regressor(E, Z, load_taef2().decoder, tower, cfg, progress=True)
    model.save(Path(args.out), {"train": asdict(cfg), "photos": len(names), "attacker": attacker.bundle.attacker,
                                "image_encoder": attacker.bundle.image_encoder, "fit": info})
    print(f"regressor -> {args.out}: {info}")


if __name__ == "__main__":
    main()
