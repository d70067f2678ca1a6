"""Image embeddings from paid REST APIs: Google Vertex AI `multimodalembedding@001` and Cohere `embed-v4.0`.

Credentials come from the environment only; they are sent in a header, never logged, never written
to disk, and scrubbed from every error message. Each request's embeddings are cached on disk (by
image content) as soon as it returns, so an image is never paid for twice, even when a long run
stops half way. 429 and 5xx answers, timeouts and dropped connections are retried under the one policy
of `slime_core.infra.remote` (bounded tries, backoff honouring Retry-After, the command's deadline); any other
failure is a `SlimeError` that says what went wrong.
"""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import requests
from PIL import Image
from tqdm.auto import tqdm

from slime_core.infra import remote, settings
from slime_core.infra.errors import MissingModelError, SlimeError, mask_secrets
from slime_core.infra.files import MAX_IMAGE_BYTES, read_bytes
from slime_core.stages.encoders.base import EmbeddingCache, Encoder, batched, content_hash, l2_normalise, load_image
from slime_core.stages.encoders.config import EncoderCfg


def default_cache_dir() -> Path:
    return settings.api_embeddings_cache()


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class ApiImageEncoder(Encoder):
    """Shared machinery; a subclass sets the limits and implements `_url`, `_body` and `_parse`."""

    modalities = ("image",)
    provider = "api"
    formats: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png"}  # PIL format -> MIME type accepted
    max_bytes = 5_000_000  # per image as sent
    max_batch = 1  # images per request

    def __init__(self, cfg: EncoderCfg, key_env: str, base_url: str, key_help: str = ""):
        self.name, self.model, self.dim = cfg.name, cfg.model, cfg.dim
        self.key_env = key_env
        if not settings.secret(key_env):
            raise MissingModelError(f"encoder '{self.name}' needs its credential in the environment variable "
                                    f"{key_env}; it is read from there only. {key_help}".strip())
        self.base_url = base_url.rstrip("/")
        self.timeout = float(cfg.timeout or remote.default_timeout())
        self.retries = cfg.retries if cfg.retries is not None else remote.default_retries()
        self.backoff = float(cfg.backoff)
        self.max_wait = float(cfg.max_wait)
        self.workers = max(1, cfg.workers)
        self.batch = max(1, min(self.max_batch if cfg.batch is None else cfg.batch, self.max_batch))
        self.cache = EmbeddingCache(cfg.cache_dir or default_cache_dir())
        # The cache is keyed by what the vector means, so a changed model or dimension is a fresh namespace.
        self._fetcher = SimpleNamespace(name=f"{self.provider}-{self.model}-{self.dim}".replace("/", "_"),
                                        dim=self.dim, encode_images=self._fetch)

    # -- to implement per API -------------------------------------------------------------------
    def _url(self) -> str:
        raise NotImplementedError

    def _body(self, images: list[tuple[bytes, str]]) -> dict:
        raise NotImplementedError

    def _parse(self, body) -> list:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {settings.secret(self.key_env) or ''}", "Accept": "application/json"}

    def _scrub(self, text: str) -> str:
        """Every configured key masked, case-insensitively, and key-like echoes ("Bearer sk-...")."""
        return mask_secrets(text, [settings.secret(self.key_env) or ""])

    def _payload_image(self, item) -> tuple[bytes, str]:
        """Bytes and MIME type to send: the original file when the API takes its format and size,
        else a re-encoding (PNG if it fits, else JPEG, halving the size until it fits)."""
        img = load_image(item)  # validates, and gives the user a clear error for a bad file
        if not isinstance(item, Image.Image):
            raw = bytes(item) if isinstance(item, (bytes, bytearray)) else read_bytes(item, "image file", MAX_IMAGE_BYTES)
            with Image.open(io.BytesIO(raw)) as probe:
                fmt = probe.format
            if fmt in self.formats and len(raw) <= self.max_bytes:
                return raw, self.formats[fmt]
        for fmt in ("PNG", "JPEG"):
            while True:
                buf = io.BytesIO()
                img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
                if buf.tell() <= self.max_bytes:
                    return buf.getvalue(), f"image/{fmt.lower()}"
                if fmt == "PNG" or min(img.size) <= 16:
                    break
                img = img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.Resampling.LANCZOS)
        raise SlimeError(f"{self.name}: cannot fit an image into the API's {self.max_bytes:,}-byte limit.")

    def _post(self, body: dict):
        """One request under slime_core.infra.remote's policy: 429/5xx/timeouts/refused connections retried with
        backoff (honouring Retry-After) within the command's deadline; any other refusal is one SlimeError."""
        url = self._url()

        def send(timeout: float):
            try:
                response = requests.post(url, json=body, headers=self._headers(), timeout=timeout)
            except (requests.ConnectionError, requests.Timeout) as err:
                raise remote.Transient(type(err).__name__) from None
            if response.status_code == 429 or response.status_code >= 500:
                raise remote.Transient(f"HTTP {response.status_code}", _retry_after(response))
            if response.status_code >= 400:
                raise SlimeError(self._scrub(
                    f"{self.name}: the API refused the request (HTTP {response.status_code}): "
                    f"{response.text[:300].strip()}{self.refusal_help(response.status_code)}"))
            try:
                return response.json()
            except ValueError:
                raise SlimeError(f"{self.name}: the API answered HTTP {response.status_code} with a body "
                                 f"that is not JSON: {self._scrub(response.text[:200])!r}") from None

        return remote.call(send, self.name, retries=self.retries, timeout=self.timeout, backoff=self.backoff,
                           max_wait=self.max_wait)

    def refusal_help(self, status: int) -> str:
        return f" (check the key in {self.key_env})" if status in (401, 403) else ""

    def _fetch(self, items, batch_size: int = 1, progress: bool = False) -> np.ndarray:
        """One request for a few uncached images; returns their (n, dim) embeddings."""
        body = self._post(self._body([self._payload_image(i) for i in items]))
        try:
            vectors = self._parse(body)
            arr = np.asarray(vectors, dtype=np.float32)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise SlimeError(f"{self.name}: unexpected answer from the API: {self._scrub(str(body)[:200])!r}") from None
        if arr.shape != (len(items), self.dim) or not np.isfinite(arr).all():
            raise SlimeError(f"{self.name}: the API returned embeddings of shape {arr.shape}, expected "
                             f"({len(items)}, {self.dim}) finite values.")
        return l2_normalise(arr)

    def encode_images(self, images, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        """`batch_size` is ignored: a request carries what the API allows, `workers` requests at a time."""
        images = list(images)
        for item in images:
            if not isinstance(item, (bytes, bytearray, Image.Image)) and not Path(item).is_file():
                raise SlimeError(f"{item}: no such image file.")
        keys = [content_hash(i) for i in images]
        slot: dict[str, int] = {}  # content hash -> position in `unique`; a repeated image is sent once
        unique = []
        for img, key in zip(images, keys):
            if key not in slot:
                slot[key] = len(unique)
                unique.append(img)
        chunks = list(batched(unique, self.batch))
        # Each chunk goes through the cache on its own, so every answer is on disk as soon as it arrives.
        with ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(self.cache.encode_images, self._fetcher, c, self.batch) for c in chunks]
            try:
                parts = [f.result() for f in tqdm(futures, desc=f"embedding images ({self.name})",
                                                   disable=not progress)]
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        if not parts:
            return np.zeros((0, self.dim), np.float32)
        vectors = np.concatenate(parts)
        return vectors[[slot[k] for k in keys]]


class GeminiEncoder(ApiImageEncoder):
    """Vertex AI `multimodalembedding@001` predict endpoint: one image per request, 1408-d by default."""

    provider = "vertex"
    formats = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "BMP": "image/bmp"}
    max_bytes = 20_000_000

    def __init__(self, cfg: EncoderCfg):
        key_env = cfg.env or "GOOGLE_ACCESS_TOKEN"
        self.project = cfg.project or settings.env("GOOGLE_CLOUD_PROJECT")
        self.location = cfg.location or settings.env("GOOGLE_CLOUD_LOCATION") or "us-central1"
        if not self.project:
            raise MissingModelError(f"encoder '{cfg.name}' needs a Google Cloud project id in GOOGLE_CLOUD_PROJECT.")
        base = (cfg.base_url or settings.env("SLIME_GEMINI_BASE_URL")
                or f"https://{self.location}-aiplatform.googleapis.com")
        super().__init__(cfg, key_env, base, key_help=(
            f"It must hold an OAuth access token: `export {key_env}=$(gcloud auth print-access-token)` "
            "(valid about an hour)."))

    def _url(self) -> str:
        return (f"{self.base_url}/v1/projects/{self.project}/locations/{self.location}"
                f"/publishers/google/models/{self.model}:predict")

    def _body(self, images):
        instances = [{"image": {"bytesBase64Encoded": base64.b64encode(raw).decode("ascii"), "mimeType": mime}}
                     for raw, mime in images]
        return {"instances": instances, "parameters": {"dimension": self.dim}}

    def _parse(self, body):
        return [p["imageEmbedding"] for p in body["predictions"]]

    def refusal_help(self, status: int) -> str:
        if status in (401, 403):
            return (f" (check the access token in {self.key_env}, it expires after about an hour, and that "
                    f"project {self.project} has the Vertex AI API enabled)")
        return ""


class CohereEncoder(ApiImageEncoder):
    """Cohere `POST /v2/embed` with `input_type: image`: one image (data URI, at most 5 MB) per request."""

    provider = "cohere"
    formats = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
    max_bytes = 3_700_000  # 5 MB limit, kept safe even if it counts the base64 text

    def __init__(self, cfg: EncoderCfg):
        base = cfg.base_url or settings.env("SLIME_COHERE_BASE_URL") or "https://api.cohere.com"
        super().__init__(cfg, cfg.env or "CO_API_KEY", base,
                         key_help="Create one at https://dashboard.cohere.com/api-keys.")

    def _url(self) -> str:
        return f"{self.base_url}/v2/embed"

    def _body(self, images):
        uris = [f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}" for raw, mime in images]
        return {"model": self.model, "input_type": "image", "embedding_types": ["float"], "images": uris}

    def _parse(self, body):
        return body["embeddings"]["float"]


def build_gemini(cfg: EncoderCfg, device: str | None = None) -> GeminiEncoder:
    return GeminiEncoder(cfg)


def build_cohere(cfg: EncoderCfg, device: str | None = None) -> CohereEncoder:
    return CohereEncoder(cfg)
