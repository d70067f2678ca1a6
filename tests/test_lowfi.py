"""Low-fidelity images: a tiny Kandinsky 2.2 pipeline on CPU, and the offline gallery lookup."""

import time

import numpy as np
import pytest

from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages.lowfi import KANDINSKY_DECODER_ID, KandinskyDecoder

DIM = 32


@pytest.fixture(scope="module")
def tiny_pipe():
    torch = pytest.importorskip("torch")
    from diffusers import DDPMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        in_channels=4, out_channels=8,  # mean and learned variance, as in Kandinsky
        addition_embed_type="image", encoder_hid_dim=DIM, encoder_hid_dim_type="image_proj",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=32, attention_head_dim=4, resnet_time_scale_shift="scale_shift", class_embed_type=None,
    )
    movq = VQModel(
        block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"], in_channels=3, out_channels=3,
        latent_channels=4, layers_per_block=1, norm_num_groups=8, norm_type="spatial", num_vq_embeddings=12,
        vq_embed_dim=4,
    )
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, variance_type="learned_range", prediction_type="epsilon")
    pipe = KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_tiny_decoder_end_to_end(tiny_pipe):
    dec = KandinskyDecoder(tiny_pipe)
    assert dec.embed_dim == DIM
    emb = np.random.default_rng(0).normal(size=(2, DIM)).astype(np.float32)
    a = dec.decode(emb, steps=2, size=64, seed=1)
    assert len(a) == 2 and all(im.size == (64, 64) and im.mode == "RGB" for im in a)
    b = dec.decode(emb, steps=2, size=64, seed=1)
    c = dec.decode(emb, steps=2, size=64, seed=2)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_load_from_local_folder(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "k22")
    dec = KandinskyDecoder.from_pretrained(str(tmp_path / "k22"), device="cpu")
    (im,) = dec.decode(np.ones(DIM, np.float32), steps=1, size=64, seed=0, embed_norm=3.0)
    assert im.size == (64, 64)


def test_wrong_dim_and_size(tiny_pipe):
    dec = KandinskyDecoder(tiny_pipe)
    with pytest.raises(SlimeError, match=rf"\(n, {DIM}\)"):
        dec.decode(np.zeros((1, 1280), np.float32), steps=1, size=64)
    with pytest.raises(SlimeError, match="multiple"):
        dec.decode(np.zeros((1, DIM), np.float32), steps=1, size=50)


def test_missing_model_fast(tmp_path):
    t = time.perf_counter()
    with pytest.raises(MissingModelError, match=KANDINSKY_DECODER_ID):
        KandinskyDecoder.from_pretrained(KANDINSKY_DECODER_ID, cache_dir=str(tmp_path))
    with pytest.raises(MissingModelError, match=KANDINSKY_DECODER_ID):
        KandinskyDecoder.from_pretrained(str(tmp_path / "nope"))
    assert time.perf_counter() - t < 1.0


