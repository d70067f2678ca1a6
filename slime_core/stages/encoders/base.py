"""The interface every encoder implements, image loading with clear errors, and the on-disk cache."""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from slime_core.infra.errors import SlimeError
from slime_core.infra.files import MAX_IMAGE_BYTES, cache_off, read_bytes, write_cache_entry

MAX_IMAGE_PIXELS = 40_000_000  # ~6300 x 6300; larger uploads are refused rather than decoded
# Bump when image decoding or preprocessing changes what an encoder sees (e.g. 16-bit PNG scaling): every
# cached embedding made before is then a miss, not a stale answer.
PREPROCESS_VERSION = 2
ImageLike = "str | Path | bytes | Image.Image"


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32. Zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


MIN_IMAGE_SIDE = 32  # smaller files carry too little to embed; refused rather than upscaled into noise
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB, scaling 16/32-bit greyscale (a 16-bit PNG opens as I;16 or I) down to 8 bit instead of
    clipping every value above 255 to white."""
    if img.mode in _HIGH_BIT_MODES:
        arr = np.asarray(img, dtype=np.float64)
        sixteen = img.mode.startswith("I;16") or getattr(img, "format", None) == "PNG"  # older Pillow: PNG 16-bit as I
        top = 65535.0 if sixteen or arr.max(initial=0) > 255 else 255.0
        if arr.max(initial=0) > 65535:
            top = float(arr.max())
        arr = np.clip(arr, 0, None) / top * 255.0
        return Image.fromarray(np.round(arr).astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def load_image(item, name: str | None = None) -> Image.Image:
    """An RGB PIL image from a path, raw bytes or a PIL image; SlimeError for anything unreadable.

    `name` is what messages call the image (an upload's file name); by default its path, or "uploaded
    bytes". Files and bytes smaller than MIN_IMAGE_SIDE on a side are refused; an in-memory PIL image is
    the caller's own and only converted."""
    if isinstance(item, Image.Image):
        return _to_rgb(item)
    name = name or ("uploaded bytes" if isinstance(item, (bytes, bytearray)) else str(item))
    if isinstance(item, (str, Path)):  # regular files only, capped: a FIFO or /dev/zero would never end

        try:
            item = read_bytes(item, "image file", MAX_IMAGE_BYTES)
        except SlimeError as err:
            raise SlimeError(str(err).replace(str(item), name, 1)) from None
    try:
        source = io.BytesIO(item) if isinstance(item, (bytes, bytearray)) else item
        with Image.open(source) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise SlimeError(
                    f"{name}: image is {img.width}x{img.height} pixels, more than the "
                    f"{MAX_IMAGE_PIXELS:,} allowed; downsize it first."
                )
            if min(img.size) < MIN_IMAGE_SIDE:
                raise SlimeError(f"{name}: image is {img.width}x{img.height} pixels; at least {MIN_IMAGE_SIDE} "
                                 f"on each side is needed.")
            return _to_rgb(img)
    except FileNotFoundError:
        raise SlimeError(f"{name}: no such image file.") from None
    except IsADirectoryError:
        raise SlimeError(f"{name}: is a folder, not an image file.") from None
    except UnidentifiedImageError:
        # PIL's own message repeats the path, or names a BytesIO object; say what it means instead.
        raise SlimeError(f"{name}: not a readable image (not a recognised image format).") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the data", str(err)) or "unreadable"
        reason = reason.splitlines()[0][:200]
        raise SlimeError(f"{name}: not a readable image ({err.__class__.__name__}: {reason}).") from None


def content_hash(item) -> str:
    """SHA-1 of an image's bytes (file contents, raw bytes, or a PIL image's pixels)."""
    if isinstance(item, Image.Image):
        data = item.tobytes() + repr((item.mode, item.size)).encode()
    elif isinstance(item, (bytes, bytearray)):
        data = bytes(item)
    else:

        data = read_bytes(item, "image file", MAX_IMAGE_BYTES)  # regular files only, capped (FIFO, /dev/zero)
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
    """Image embeddings on disk, one .npy per (encoder, image content hash, weights identity).

    Keyed by content, not path, so a renamed file is not re-embedded and a changed file is; by the
    encoder's `cache_key` (its name, plus a hash of any registry overrides), so a tiny random test model
    never answers for the real one; and by `identity_of(encoder)` (the weights' package version or file
    stamp, and PREPROCESS_VERSION), so upgraded weights or changed preprocessing never reuse old vectors.
    With `chunk`, missing images are embedded and written `chunk` at a time, so an interrupted run resumes
    where it stopped. Entries are written to a temporary file and renamed into place (whole or absent);
    an unreadable entry (truncated, foreign) is a miss and is rewritten.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.disabled = False  # set when the folder cannot be written: the run goes on without the cache

    @staticmethod
    def key_of(encoder: Encoder) -> str:
        return getattr(encoder, "cache_key", None) or encoder.name

    @staticmethod
    def identity_of(encoder: Encoder) -> str:
        """A short hash of what the encoder's weights are (`encoder.weights_id`: get_encoder sets it, and a stand-in
        for a registered encoder sets the same) and PREPROCESS_VERSION."""
        ident = getattr(encoder, "weights_id", None) or ""
        return hashlib.sha1(f"{ident}|preprocess={PREPROCESS_VERSION}".encode()).hexdigest()[:8]

    def _path(self, encoder_key: str, key: str, identity: str = "") -> Path:
        return self.root / encoder_key / (f"{key}-{identity}.npy" if identity else f"{key}.npy")

    @staticmethod
    def _read(path: Path) -> np.ndarray | None:
        """A cached vector, or None when absent or unreadable (truncated, not .npy, a folder, wrong shape, NaN)."""
        try:
            vec = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if not isinstance(vec, np.ndarray) or vec.ndim != 1 or vec.size == 0 or vec.dtype.kind != "f" \
                or not np.isfinite(vec).all():
            return None
        return vec

    def _write(self, path: Path, vec: np.ndarray) -> None:
        """Write the entry atomically; a folder where it belongs is removed first. A cache that cannot be written
        is left alone for the rest of this process (said once)."""
        if self.disabled:
            return

        def save(tmp: Path) -> None:
            if path.is_dir() and not path.is_symlink():
                import shutil

                shutil.rmtree(path)
            with open(tmp, "wb") as f:
                np.save(f, vec.astype(np.float32), allow_pickle=False)

        if not write_cache_entry(path, save, root=self.root):
            self.disabled = True

    def encode_images(self, encoder: Encoder, images: Sequence, batch_size: int = 16, progress: bool = False,
                      chunk: int | None = None) -> np.ndarray:
        keys = [content_hash(img) for img in images]
        name, identity = self.key_of(encoder), self.identity_of(encoder)
        # Rows take their width from the vectors themselves, so a stand-in encoder need not know its model's dim;
        # a cached row of another width than the rest (or than freshly encoded rows) is a miss, and is rewritten.
        rows: list[np.ndarray | None] = [self._read(self._path(name, key, identity)) for key in keys]
        widths = Counter(r.size for r in rows if r is not None)
        if len(widths) > 1:
            usual = encoder.dim if encoder.dim in widths else widths.most_common(1)[0][0]
            rows = [r if r is not None and r.size == usual else None for r in rows]
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            self._fill(encoder, images, keys, rows, missing, name, identity, batch_size, progress, chunk)
            fresh = rows[missing[0]].size
            stale = [i for i, r in enumerate(rows) if r.size != fresh]
            if stale:
                self._fill(encoder, images, keys, rows, stale, name, identity, batch_size, progress, chunk)
        return self._stack(rows, encoder.dim)

    def _fill(self, encoder, images, keys, rows, missing, name, identity, batch_size, progress, chunk) -> None:
        """Encode the `missing` rows (`chunk` at a time) and write each to the cache."""
        if not self.disabled:
            try:
                (self.root / name).mkdir(parents=True, exist_ok=True)
            except OSError as err:  # SLIME_CACHE is a file, /proc, read-only, ...
                cache_off(self.root, err)
                self.disabled = True
        step = chunk or len(missing)
        bar = None
        if chunk:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(missing), desc=f"embedding images ({encoder.name})", disable=not progress)
        for start in range(0, len(missing), step):
            part = missing[start : start + step]
            fresh = encoder.encode_images([images[i] for i in part], batch_size=batch_size,
                                          progress=progress and not chunk)
            for i, vec in zip(part, fresh):
                rows[i] = np.asarray(vec)
                self._write(self._path(name, keys[i], identity), rows[i])
            if bar is not None:
                bar.update(len(part))
        if bar is not None:
            bar.close()

    @staticmethod
    def _stack(rows: list, dim: int) -> np.ndarray:
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
