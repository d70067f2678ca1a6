"""The paper's encoders with tiny stand-ins: open_clip (random tiny config), transformers vision models
(tiny random checkpoints, native and remote-code), and the REST APIs against local fake servers."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages.encoders import get_encoder


def _image(color, size=(40, 32)) -> Image.Image:
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[..., :] = color
    arr[::3, ::5] = 255 - np.asarray(color, np.uint8)  # some texture
    return Image.fromarray(arr)


@pytest.fixture
def images(tmp_path):
    """Two JPEG files and one PNG as raw bytes."""
    paths = []
    for i, color in enumerate([(200, 30, 30), (30, 200, 30)]):
        paths.append(tmp_path / f"img{i}.jpg")
        _image(color).save(paths[-1], "JPEG")
    png = tmp_path / "img.png"
    _image((30, 30, 200)).save(png, "PNG")
    return paths + [png.read_bytes()]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected network access: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def empty_hf_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    return tmp_path / "hf-hub"


# ---------------------------------------------------------------- open_clip

TINY_CLIP = "slime-test-tiny-clip"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import open_clip

    path = tmp_path_factory.mktemp("clipcfg") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps({
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
    }))
    open_clip.add_model_config(path)
    return TINY_CLIP


def test_open_clip_random_tiny_model(tiny_clip, images):
    enc = get_encoder("clip-vit-bigg-14", device="cpu", model=tiny_clip, pretrained=None)
    assert enc.dim == 32 and set(enc.modalities) == {"image", "text"}
    img = enc.encode_images(images, batch_size=2, progress=True)
    txt = enc.encode_texts(["a red square", "a green square", "a blue square"], batch_size=2)
    for arr in (img, txt):
        assert arr.shape == (3, 32) and arr.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(img[0], img[1])
    np.testing.assert_array_equal(enc.encode_images(images, batch_size=2), img)  # deterministic
    np.testing.assert_allclose(enc.encode_images(images, batch_size=16), img, atol=1e-6)
    again = get_encoder("clip-vit-bigg-14", device="cpu", model=tiny_clip, pretrained=None)
    np.testing.assert_allclose(again.encode_texts(["a red square"]), txt[:1], atol=1e-6)
    assert enc.encode_images([]).shape == (0, 32)


def test_open_clip_loads_a_weight_file(tiny_clip, images, tmp_path):
    from safetensors.torch import save_file

    enc = get_encoder("clip-vit-bigg-14", device="cpu", model=tiny_clip, pretrained=None, seed=0)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(weights))
    other = get_encoder("clip-vit-bigg-14", device="cpu", model=tiny_clip, pretrained=None, seed=1)
    loaded = get_encoder("clip-vit-bigg-14", device="cpu", model=tiny_clip, pretrained=str(weights), seed=1)
    assert not np.allclose(other.encode_images(images), enc.encode_images(images))
    np.testing.assert_allclose(loaded.encode_images(images), enc.encode_images(images), atol=1e-5)
    (tmp_path / "junk.bin").write_bytes(b"half a download")
    with pytest.raises(SlimeError, match="cannot load open_clip"):
        get_encoder("clip-vit-bigg-14", device="cpu", model=tiny_clip, pretrained=str(tmp_path / "junk.bin"))


@pytest.mark.parametrize("name, repo", [("clip-vit-bigg-14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"),
                                        ("clip-vit-l-14", "timm/vit_large_patch14_clip_224.openai")])
def test_open_clip_missing_weights_fail_fast(name, repo, monkeypatch, tmp_path, empty_hf_cache, no_network):
    import open_clip  # noqa: F401  (import time is not what is measured)

    monkeypatch.setenv("SLIME_OPEN_CLIP_DIR", str(tmp_path / "nothing-here"))
    start = time.perf_counter()
    with pytest.raises(MissingModelError, match=f"hf download {repo} open_clip_model.safetensors") as err:
        get_encoder(name, device="cpu")
    assert time.perf_counter() - start < 1.0
    assert "SLIME_OPEN_CLIP_DIR" in str(err.value)


def test_open_clip_weight_locations(monkeypatch, tmp_path, empty_hf_cache):
    from slime_core.stages.encoders.open_clip import find_weights

    repo, fname = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", "open_clip_model.safetensors"
    snapshot = empty_hf_cache / ("models--" + repo.replace("/", "--")) / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / fname).write_bytes(b"x")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    assert find_weights("ViT-bigG-14", "laion2b_s39b_b160k")[0] == str(snapshot / fname)

    ours = tmp_path / "clip" / repo / fname
    ours.parent.mkdir(parents=True)
    ours.write_bytes(b"x")
    monkeypatch.setenv("SLIME_OPEN_CLIP_DIR", str(tmp_path / "clip"))
    assert find_weights("ViT-bigG-14", "laion2b_s39b_b160k")[0] == str(ours)
    dotted = tmp_path / "weights.v1" / fname  # a folder name with a dot is still a folder
    dotted.parent.mkdir()
    dotted.write_bytes(b"x")
    assert find_weights("ViT-bigG-14", "laion2b_s39b_b160k", path=str(dotted.parent))[0] == str(dotted)
    weights, cfg = find_weights("ViT-L-14", "openai", path=str(ours))
    assert weights == str(ours) and cfg["quick_gelu"] is True  # OpenAI weights need QuickGELU


# ---------------------------------------------------------------- transformers vision (Nomic's path)

REMOTE_CODE = '''
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput


class TinyVisionConfig(PretrainedConfig):
    model_type = "slime_tiny_vision"

    def __init__(self, n_embd=16, patch_size=16, **kwargs):
        self.n_embd, self.patch_size = n_embd, patch_size
        super().__init__(**kwargs)

    @property
    def hidden_size(self):
        return self.n_embd


class TinyVisionModel(PreTrainedModel):
    config_class = TinyVisionConfig
    base_model_prefix = "model"

    def __init__(self, config):  # like Nomic's: no post_init, and a buffer computed here, never saved
        super().__init__(config)
        self.patch = nn.Conv2d(3, config.n_embd, config.patch_size, config.patch_size)
        self.cls = nn.Parameter(torch.randn(1, 1, config.n_embd))
        self.register_buffer("scale", torch.full((config.n_embd,), 2.0), persistent=False)

    def forward(self, pixel_values, **kwargs):
        tokens = self.patch(pixel_values).flatten(2).transpose(1, 2)
        hidden = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], 1) * self.scale
        return BaseModelOutput(last_hidden_state=hidden)
'''


def _reference_cls(model, folder, images) -> np.ndarray:
    from transformers import ViTImageProcessor

    from slime_core.stages.encoders.base import load_image

    pixels = ViTImageProcessor.from_pretrained(folder)(images=[load_image(i) for i in images], return_tensors="pt")
    with torch.no_grad():
        cls = model.eval()(pixel_values=pixels["pixel_values"]).last_hidden_state[:, 0].numpy()
    return cls / np.linalg.norm(cls, axis=1, keepdims=True)


def test_hf_vision_native_tiny_vit(tmp_path, images):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    model = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                               image_size=32, patch_size=16))
    model.save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    enc = get_encoder("nomic-vision-v1.5", device="cpu", model=str(tmp_path / "vit"), trust_remote_code=False)
    out = enc.encode_images(images, batch_size=2, progress=True)
    assert enc.dim == 32 and out.shape == (3, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference_cls(model, tmp_path / "vit", images), atol=1e-5)


def test_hf_vision_remote_code_model(tmp_path, images, monkeypatch):
    """The path Nomic takes: code from the checkpoint folder, buffers computed, not left uninitialised."""
    import transformers.dynamic_module_utils as dynamic
    from transformers import ViTImageProcessor

    # transformers copies remote code into a modules cache under ~/.cache; keep it in tmp_path.
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    monkeypatch.syspath_prepend(str(tmp_path / "hf-modules"))

    folder = tmp_path / "remote"
    folder.mkdir()
    (folder / "modeling_tiny.py").write_text(REMOTE_CODE)
    spec = importlib.util.spec_from_file_location("slime_test_modeling_tiny", folder / "modeling_tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.TinyVisionConfig(auto_map={"AutoConfig": "modeling_tiny.TinyVisionConfig",
                                               "AutoModel": "modeling_tiny.TinyVisionModel"})
    torch.manual_seed(0)
    model = module.TinyVisionModel(config)
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)

    monkeypatch.delenv("SLIME_TRUST_REMOTE_CODE", raising=False)
    with pytest.raises(MissingModelError, match="SLIME_TRUST_REMOTE_CODE=1"):  # a checkpoint's code is opt-in
        get_encoder("nomic-vision-v1.5", device="cpu", path=str(folder))
    monkeypatch.setenv("SLIME_TRUST_REMOTE_CODE", "1")
    enc = get_encoder("nomic-vision-v1.5", device="cpu", path=str(folder))
    assert torch.equal(enc.model.scale, torch.full((16,), 2.0))
    out = enc.encode_images(images)
    assert out.shape == (3, 16)
    np.testing.assert_allclose(out, _reference_cls(model, folder, images), atol=1e-5)


def test_hf_vision_missing_model_fails_fast(monkeypatch, tmp_path, empty_hf_cache, no_network):
    monkeypatch.setenv("SLIME_HF_DIR", str(tmp_path / "nothing-here"))
    start = time.perf_counter()
    with pytest.raises(MissingModelError, match="hf download nomic-ai/nomic-embed-vision-v1.5"):
        get_encoder("nomic-vision-v1.5", device="cpu")
    assert time.perf_counter() - start < 1.0
    with pytest.raises(MissingModelError, match="not on this machine"):
        get_encoder("nomic-vision-v1.5", device="cpu", model=str(tmp_path / "no" / "such" / "folder"))


def test_hf_vision_missing_remote_code_fails_fast(tmp_path, empty_hf_cache, no_network):
    folder = tmp_path / "nomic"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "nomic_bert", "auto_map": {
        "AutoConfig": "nomic-ai/nomic-bert-2048--configuration_hf_nomic_bert.NomicBertConfig",
        "AutoModel": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicVisionModel"}}))
    with pytest.raises(MissingModelError, match="hf download nomic-ai/nomic-bert-2048 "
                                                "configuration_hf_nomic_bert.py modeling_hf_nomic_bert.py"):
        get_encoder("nomic-vision-v1.5", device="cpu", path=str(folder))


# ---------------------------------------------------------------- REST APIs against fake servers

KEY = "sk-test-very-secret-123"


def fake_vector(image_bytes: bytes, dim: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(image_bytes).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=dim).tolist()


class FakeAPI:
    """A local HTTP server that records every request and answers through `reply(index, request)`,
    which returns (status, body, headers); body may be a dict (sent as JSON) or bytes."""

    def __init__(self, reply):
        self.requests, self.reply = [], reply
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {"path": self.path, "headers": dict(self.headers), "json": json.loads(raw)}
                api.requests.append(request)
                status, body, headers = api.reply(len(api.requests) - 1, request)
                data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that timed out and hung up is expected here, not worth a traceback

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def cohere_ok(index, request):
    uri = request["json"]["images"][0]
    return 200, {"id": "x", "embeddings": {"float": [fake_vector(base64.b64decode(uri.split(",", 1)[1]), 1536)]}}, {}


def gemini_ok(index, request):
    data = base64.b64decode(request["json"]["instances"][0]["image"]["bytesBase64Encoded"])
    return 200, {"predictions": [{"imageEmbedding": fake_vector(data, 1408)}], "deployedModelId": "1"}, {}


@pytest.fixture
def api_env(monkeypatch, tmp_path):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("CO_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj-x")
    servers = []

    def start(reply, name="cohere-embed-v4", **overrides):
        servers.append(FakeAPI(reply))
        spec = {"base_url": servers[-1].url, "cache_dir": str(tmp_path / "cache"), "backoff": 0.01, **overrides}
        return servers[-1], get_encoder(name, **spec)

    yield start
    for s in servers:
        s.close()


def _raw(item) -> bytes:
    return item if isinstance(item, bytes) else item.read_bytes()


def test_cohere_request_format(api_env, images):
    server, enc = api_env(cohere_ok)
    out = enc.encode_images(images, progress=True)
    assert out.shape == (3, 1536) and out.dtype == np.float32
    assert len(server.requests) == 3  # one image per request, as the API demands
    sent = {}
    for r in server.requests:
        assert r["path"] == "/v2/embed"
        assert r["headers"]["Authorization"] == f"Bearer {KEY}"
        body = r["json"]
        assert body["model"] == "embed-v4.0" and body["input_type"] == "image"
        assert body["embedding_types"] == ["float"] and len(body["images"]) == 1
        head, b64 = body["images"][0].split(",", 1)
        sent[base64.b64decode(b64)] = head
    assert sent == {_raw(images[0]): "data:image/jpeg;base64", _raw(images[1]): "data:image/jpeg;base64",
                    _raw(images[2]): "data:image/png;base64"}
    for row, item in zip(out, images):  # each row belongs to its own image, whatever the request order
        expected = np.asarray(fake_vector(_raw(item), 1536), np.float32)
        np.testing.assert_allclose(row, expected / np.linalg.norm(expected), atol=1e-6)


def test_gemini_request_format(api_env, images):
    server, enc = api_env(gemini_ok, name="gemini-mm-001")
    out = enc.encode_images(images[:2])
    assert out.shape == (2, 1408)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    decoded = set()
    for r in server.requests:
        assert r["path"] == ("/v1/projects/proj-x/locations/us-central1/publishers/google/models/"
                             "multimodalembedding@001:predict")
        assert r["headers"]["Authorization"] == f"Bearer {KEY}"
        assert r["json"]["parameters"] == {"dimension": 1408}
        (instance,) = r["json"]["instances"]
        assert instance["image"]["mimeType"] == "image/jpeg"
        decoded.add(base64.b64decode(instance["image"]["bytesBase64Encoded"]))
    assert decoded == {_raw(images[0]), _raw(images[1])}


def test_cache_means_no_second_payment(api_env, images, tmp_path):
    server, enc = api_env(cohere_ok)
    first = enc.encode_images(images + [images[0]])  # a repeated image is sent once
    assert len(server.requests) == 3
    np.testing.assert_array_equal(first[3], first[0])
    np.testing.assert_array_equal(enc.encode_images(images[::-1]), first[:3][::-1])
    pil = Image.open(images[0])
    enc.encode_images([pil, pil])
    assert len(server.requests) == 4  # a PIL image is keyed by its pixels: one new request
    _, fresh = api_env(cohere_ok)  # a new encoder (and server) reading the same cache
    fresh.encode_images(images)
    assert len(server.requests) == 4


def test_answers_paid_for_are_kept_when_a_run_fails(api_env, images):
    def second_fails(index, request):
        return (400, {"message": "bad image"}, {}) if index == 1 else cohere_ok(index, request)

    server, enc = api_env(second_fails, workers=1)
    with pytest.raises(SlimeError, match="HTTP 400"):
        enc.encode_images(images[:2])
    server.reply = cohere_ok
    enc.encode_images(images[:2])
    assert len(server.requests) == 3  # the first image was not paid for twice


def test_retries_429_and_5xx(api_env, images):
    script = [(429, {"message": "slow down"}, {"Retry-After": "0"}), (503, b"busy", {}), (500, b"oops", {})]

    def flaky(index, request):
        return script[index] if index < len(script) else cohere_ok(index, request)

    server, enc = api_env(flaky)
    out = enc.encode_images(images[:1])
    assert len(server.requests) == 4 and out.shape == (1, 1536)


def test_gives_up_after_retries(api_env, images):
    server, enc = api_env(lambda i, r: (500, b"down", {}), retries=2)
    with pytest.raises(SlimeError, match="giving up after 3 tries; last problem: HTTP 500"):
        enc.encode_images(images[:1])
    assert len(server.requests) == 3


def test_timeout_is_retried(api_env, images):
    def slow_first(index, request):
        if index == 0:
            time.sleep(0.6)
        return cohere_ok(index, request)

    server, enc = api_env(slow_first, timeout=0.2)
    assert enc.encode_images(images[:1]).shape == (1, 1536)
    assert len(server.requests) == 2


def test_client_errors_are_clear_and_keep_the_key_secret(api_env, images):
    server, enc = api_env(lambda i, r: (401, {"message": f"invalid api token {KEY}"}, {}))
    with pytest.raises(SlimeError) as err:
        enc.encode_images(images[:1])
    assert "HTTP 401" in str(err.value) and "CO_API_KEY" in str(err.value) and KEY not in str(err.value)
    assert len(server.requests) == 1  # a 4xx other than 429 is not retried


@pytest.mark.parametrize("body, message", [
    (b"<html>not json</html>", "not JSON"),
    ({"embeddings": {}}, "unexpected answer"),
    ({"embeddings": {"float": [[0.1] * 10]}}, r"shape \(1, 10\)"),
    ({"embeddings": {"float": [[0.1] * 1536, [0.2] * 1536]}}, r"shape \(2, 1536\)"),
    ({"embeddings": {"float": [["x"] * 1536]}}, "unexpected answer"),
])
def test_malformed_answers(api_env, images, body, message):
    server, enc = api_env(lambda i, r: (200, body, {}))
    with pytest.raises(SlimeError, match=message):
        enc.encode_images(images[:1])


def test_gemini_wrong_dimension(api_env, images):
    server, enc = api_env(lambda i, r: (200, {"predictions": [{"imageEmbedding": [0.5] * 512}]}, {}),
                          name="gemini-mm-001")
    with pytest.raises(SlimeError, match=r"expected \(1, 1408\)"):
        enc.encode_images(images[:1])


def test_missing_credentials_fail_before_any_request(monkeypatch, no_network, tmp_path):
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj-x")
    with pytest.raises(MissingModelError, match="CO_API_KEY"):
        get_encoder("cohere-embed-v4", cache_dir=str(tmp_path))
    with pytest.raises(MissingModelError, match="GOOGLE_API_KEY.*gcloud auth print-access-token"):
        get_encoder("gemini-mm-001", cache_dir=str(tmp_path))
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    with pytest.raises(MissingModelError, match="GOOGLE_CLOUD_PROJECT"):
        get_encoder("gemini-mm-001", cache_dir=str(tmp_path))


def test_bad_inputs_are_refused_before_any_request(api_env, tmp_path):
    server, enc = api_env(cohere_ok)
    with pytest.raises(SlimeError, match="no such image file"):
        enc.encode_images([tmp_path / "missing.jpg"])
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(SlimeError, match="not a readable image"):
        enc.encode_images([tmp_path / "junk.jpg"])
    assert server.requests == []
    assert enc.encode_images([]).shape == (0, 1536)


def test_unsupported_format_is_reencoded(api_env, tmp_path):
    server, enc = api_env(cohere_ok)
    tiff = tmp_path / "img.tiff"
    _image((10, 20, 30)).save(tiff, "TIFF")
    enc.encode_images([tiff])
    head, b64 = server.requests[0]["json"]["images"][0].split(",", 1)
    assert head == "data:image/png;base64"
    assert Image.open(io.BytesIO(base64.b64decode(b64))).size == (40, 32)
