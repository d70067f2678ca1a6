"""The interface every encoder implements, image loading with clear errors, and the on-disk cache."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from slime_core.errors import SlimeError

MAX_IMAGE_PIXELS = 40_000_000  # ~6300 x 6300; larger uploads are refused rather than decoded
ImageLike = "str | Path | bytes | Image.Image"


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32. Zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def load_image(item) -> Image.Image:
    """An RGB PIL image from a path, raw bytes or a PIL image; SlimeError for anything unreadable."""
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    name = "uploaded bytes" if isinstance(item, (bytes, bytearray)) else str(item)
    try:
        source = io.BytesIO(item) if isinstance(item, (bytes, bytearray)) else item
        with Image.open(source) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise SlimeError(
                    f"{name}: image is {img.width}x{img.height} pixels, more than the "
                    f"{MAX_IMAGE_PIXELS:,} allowed; downsize it first."
                )
            return img.convert("RGB")
    except FileNotFoundError:
        raise SlimeError(f"{name}: no such image file.") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise SlimeError(f"{name}: not a readable image ({err.__class__.__name__}: {err}).") from None


def content_hash(item) -> str:
    """SHA-1 of an image's bytes (file contents, raw bytes, or a PIL image's pixels)."""
    if isinstance(item, Image.Image):
        data = item.tobytes() + repr((item.mode, item.size)).encode()
    elif isinstance(item, (bytes, bytearray)):
        data = bytes(item)
    else:
        data = Path(item).read_bytes()
    return hashlib.sha1(data).hexdigest()


class Encoder:
    """An image and/or text encoder. Outputs are float32 arrays of shape (n, dim), rows L2-normalised."""

    name: str = "encoder"
    dim: int = 0
    modalities: tuple[str, ...] = ()

    def encode_images(self, images: Sequence, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        raise SlimeError(f"encoder '{self.name}' does not embed images.")

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        raise SlimeError(f"encoder '{self.name}' does not embed texts.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def batched(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class EmbeddingCache:
    """Image embeddings on disk, one .npy per (encoder, image content hash).

    Keyed by content, not path, so a renamed file is not re-embedded and a changed file is.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, encoder_name: str, key: str) -> Path:
        return self.root / encoder_name / f"{key}.npy"

    def encode_images(self, encoder: Encoder, images: Sequence, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        keys = [content_hash(img) for img in images]
        out = np.zeros((len(images), encoder.dim), dtype=np.float32)
        missing = []
        for i, key in enumerate(keys):
            path = self._path(encoder.name, key)
            if path.exists():
                out[i] = np.load(path, allow_pickle=False)
            else:
                missing.append(i)
        if missing:
            fresh = encoder.encode_images([images[i] for i in missing], batch_size=batch_size, progress=progress)
            (self.root / encoder.name).mkdir(parents=True, exist_ok=True)
            for i, vec in zip(missing, fresh):
                out[i] = vec
                np.save(self._path(encoder.name, keys[i]), vec.astype(np.float32), allow_pickle=False)
        return out
