"""The offline low-fidelity image: TAEF2 with its real weights, the regressor, both inversions, the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages import taef2
from slime_core.stages.generate import (
    ImageTower,
    InvertConfig,
    LatentRegressor,
    OfflineGenerator,
    PixelConfig,
    RegressorConfig,
    invert_latents,
    invert_pixels,
    total_variation,
)
from slime_core.training.build_lowfi import TrainConfig, pca_basis, train_regressor
from tests.conftest import BLACK_DOG, DEMO


def tiny_tower(dim: int = 8) -> ImageTower:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, dim))
    return ImageTower(net, size=32)


def tiny_generator(dim: int = 8, steps: int = 0) -> OfflineGenerator:
    torch.manual_seed(0)
    reg = LatentRegressor(RegressorConfig(dim=dim, hidden=8, n_basis=4, latent_shape=(32, 2, 2)))
    reg.basis.normal_()
    return OfflineGenerator(reg, taef2.decoder(width=8).eval(), tiny_tower(dim) if steps else None,
                            InvertConfig(steps=steps) if steps else None)


def test_real_taef2_reconstructs_a_photo():
    model = taef2.load_taef2()
    photo = Image.open(DEMO / "images" / BLACK_DOG).convert("RGB").resize((128, 96))
    x = torch.from_numpy(np.asarray(photo, np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        z = model.encode(x)
        back = model.decode(z)
    assert z.shape == (1, taef2.LATENT_CHANNELS, 12, 16)
    psnr = 10 * np.log10(1 / float(((back - x) ** 2).mean()))
    assert psnr > 20  # a decoder wired wrongly (e.g. without the pool branch) gives about 16 dB


def test_missing_taef2_weights_name_the_file(tmp_path):
    with pytest.raises(MissingModelError, match="taef2_encoder.safetensors"):
        taef2.load_taef2(tmp_path)


def test_regressor_round_trips_through_safetensors(tmp_path):
    gen = tiny_generator()
    gen.regressor.save(tmp_path, {"photos": 3})
    back = LatentRegressor.load(tmp_path)
    e = torch.randn(2, 8)
    assert torch.allclose(back(e), gen.regressor(e), atol=0.05)  # stored as float16
    (tmp_path / "regressor.json").write_text('{"config": {"dim": "x"}}')
    with pytest.raises(SlimeError, match="regressor.safetensors: not a low-fidelity regressor"):
        LatentRegressor.load(tmp_path)
    with pytest.raises(MissingModelError):
        LatentRegressor.load(tmp_path / "absent")


def test_generator_makes_one_image_per_embedding_and_checks_the_dimension():
    images = tiny_generator().generate(np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))
    assert [im.size for im in images] == [(16, 16)] * 3
    with pytest.raises(SlimeError, match="8-d attack-space"):
        tiny_generator().generate(np.ones((1, 5), np.float32))


def test_refinement_needs_a_tower():
    gen = tiny_generator()
    with pytest.raises(SlimeError, match="image tower"):
        OfflineGenerator(gen.regressor, gen.decoder, None, InvertConfig(steps=2))


def test_latent_inversion_moves_the_decoding_towards_the_target():
    tower, dec = tiny_tower(), taef2.decoder(width=8).eval()
    target = torch.nn.functional.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    start = torch.zeros(2, 32, 4, 4)
    before = (tower(dec(start).clamp(0, 1)) * target).sum(-1)
    images = invert_latents(target, start, dec, tower, InvertConfig(steps=30, lr=0.3, prior_weight=0.0, jitter=0))
    after = (tower(images) * target).sum(-1)
    assert images.shape == (2, 3, 32, 32) and float(images.min()) >= 0 and float(images.max()) <= 1
    assert float(after.mean()) > float(before.mean()) + 0.05


def test_pixel_inversion_raises_the_cosine_and_keeps_images_valid():
    tower = tiny_tower()
    target = torch.nn.functional.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(2)), dim=-1)
    grey = torch.full((2, 3, 24, 24), 0.5)
    before = (tower(grey) * target).sum(-1)
    images = invert_pixels(target, 24, tower, PixelConfig(steps=40, lr=0.2, tv_weight=0.0, jitter=0))
    assert images.shape == (2, 3, 24, 24)
    assert float((tower(images) * target).sum(-1).mean()) > float(before.mean()) + 0.05


def test_total_variation_is_zero_for_a_flat_image_only():
    assert float(total_variation(torch.full((1, 3, 8, 8), 0.3))) == 0
    assert float(total_variation(torch.rand(1, 3, 8, 8))) > 0


def test_pca_basis_is_orthonormal_and_centred():
    Z = torch.randn(50, 32, 2, 2)
    basis, mean = pca_basis(Z, 5)
    assert torch.allclose(basis @ basis.T, torch.eye(5), atol=1e-4)
    assert torch.allclose(mean, Z.flatten(1).mean(0))


def test_trainer_learns_a_linear_map_from_embedding_to_latent():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(400, 8)).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    Z = (E @ rng.normal(size=(8, 32 * 2 * 2)).astype(np.float32)).reshape(-1, 32, 2, 2)
    cfg = TrainConfig(epochs=60, batch_size=64, lr=3e-3, feature_steps=0)
    model, info = train_regressor(E, Z, None, None, cfg, RegressorConfig(dim=8, hidden=32, n_basis=8, latent_shape=(32, 2, 2)))
    with torch.no_grad():
        err = float(((model(torch.from_numpy(E)) - torch.from_numpy(Z)) ** 2).mean())
    assert err < 0.1 * float(Z.var())  # the mean latent alone leaves all of the variance
    assert info["latent_mse"] < 0.1 * float(Z.var())


def test_feature_matching_stage_runs_and_reports_the_tower_cosine():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(40, 8)).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    Z = rng.normal(size=(40, 32, 2, 2)).astype(np.float32)
    cfg = TrainConfig(epochs=2, batch_size=16, feature_steps=10, feature_batch=4)
    _, info = train_regressor(E, Z, taef2.decoder(width=8).eval(), tiny_tower(), cfg,
                              RegressorConfig(dim=8, hidden=8, n_basis=4, latent_shape=(32, 2, 2)))
    assert -1 <= info["tower_cosine_first_tenth"] <= 1 and -1 <= info["tower_cosine_last_tenth"] <= 1


def test_generator_starts_from_the_nearest_photos_where_they_exist(tmp_path):
    gen = tiny_generator()
    gen.encoder = taef2.encoder(width=8).eval()
    photo = DEMO / "images" / BLACK_DOG
    aligned = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    from_photos, starts = gen.generate_with_starts(aligned, init_photos=[[photo, photo], [tmp_path / "absent.jpg"]])
    assert starts == ["nearest photos", "regressor"]  # a row whose photos are missing falls back, and says so
    plain, starts = gen.generate_with_starts(aligned)
    assert starts == ["regressor", "regressor"]
    assert np.asarray(from_photos[1]).tolist() == np.asarray(plain[1]).tolist()
    assert np.asarray(from_photos[0]).tolist() != np.asarray(plain[0]).tolist()
