"""Embedding files from users: parsing and checking uploads (app) and `--embedding` / `--victim-pool` files (CLI).

Every refusal is one `SlimeError` naming the file and what is wrong: missing or empty files, pickled or
object-dtype .npy (never unpickled: `allow_pickle=False`), arrays that are not (rows, dims), NaN/inf or
all-zero vectors. Nothing here imports streamlit.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from slime_core.errors import SlimeError

EMBEDDING_TYPES = ("npy", "csv", "parquet")
MAX_EMBEDDING_ROWS = 100_000
MAX_EMBEDDING_DIM = 16_384


def parse_embeddings(filename: str, data: bytes, max_rows: int | None = MAX_EMBEDDING_ROWS,
                     max_dim: int | None = MAX_EMBEDDING_DIM) -> tuple[np.ndarray, list[str] | None]:
    """An (n, d) float32 array, and row names when the file has them, from .npy, .csv or .parquet bytes.

    .csv / .parquet: numeric columns are the vector; one non-numeric column (e.g. `image`) names the rows.
    A parquet column holding whole vectors (lists) also works."""
    ext = Path(filename).suffix.lower().lstrip(".")
    if ext not in EMBEDDING_TYPES:
        raise SlimeError(f"{filename}: unsupported file type '.{ext}'; upload .npy, .csv or .parquet.")
    if not data:
        raise SlimeError(f"{filename}: the file is empty.")
    arr, names = (_read_npy(filename, data), None) if ext == "npy" else _read_table(filename, data, ext)
    return _checked(filename, arr, max_rows, max_dim), names


def _read_npy(filename: str, data: bytes) -> np.ndarray:
    if not data.startswith(b"\x93NUMPY"):  # np.load would call anything else a pickle
        raise SlimeError(f"{filename}: not a readable .npy file (no NumPy header; save it with numpy.save).")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        raise SlimeError(f"{filename}: not a plain numeric .npy array ({err}); object arrays are refused.") from None
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad upload
        raise SlimeError(f"{filename}: not a readable .npy file ({type(err).__name__}).") from None


def _read_table(filename: str, data: bytes, ext: str) -> tuple[np.ndarray, list[str] | None]:
    """A .csv / .parquet table: numeric columns (or one column of whole vectors), at most one name column."""
    import pandas as pd

    try:
        df = pd.read_csv(io.BytesIO(data)) if ext == "csv" else pd.read_parquet(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001
        raise SlimeError(f"{filename}: not a readable .{ext} file ({type(err).__name__}: {str(err)[:200]}).") from None
    if ext == "csv" and len(df.columns) and all(_is_number(c) for c in df.columns):
        df = pd.read_csv(io.BytesIO(data), header=None)  # a headerless CSV: the first row is data
    if df.empty:
        raise SlimeError(f"{filename}: no rows.")
    vector_cols = [c for c in df.columns if df[c].dtype == object and len(df) and
                   isinstance(df[c].iloc[0], (list, np.ndarray))]
    text_cols = [c for c in df.columns if c not in vector_cols and not pd.api.types.is_numeric_dtype(df[c])]
    if len(text_cols) > 1:
        raise SlimeError(f"{filename}: columns {text_cols[:5]} are not numeric; keep one name column at most.")
    names = [str(x) for x in df[text_cols[0]].tolist()] if text_cols else None
    if not vector_cols:
        return df.drop(columns=text_cols).to_numpy(), names
    try:
        return np.stack([np.asarray(v, dtype=np.float32) for v in df[vector_cols[0]]]), names
    except (ValueError, TypeError) as err:
        raise SlimeError(f"{filename}: column '{vector_cols[0]}' holds vectors of different lengths ({err}).") from None


def _checked(filename: str, arr: np.ndarray, max_rows: int | None, max_dim: int | None) -> np.ndarray:
    """A numeric (rows, dims) float32 array within the limits, every row finite and non-zero."""
    if arr.dtype.kind not in "fiu":
        raise SlimeError(f"{filename}: dtype {arr.dtype} is not numeric.")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise SlimeError(f"{filename}: expected one vector or a 2-D array (rows, dims); got shape {arr.shape}. "
                         f"Reshape it to (rows, dims) first; nothing is flattened or dropped silently.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SlimeError(f"{filename}: empty array of shape {arr.shape}.")
    if (max_rows and arr.shape[0] > max_rows) or (max_dim and arr.shape[1] > max_dim):
        raise SlimeError(f"{filename}: shape {arr.shape} is larger than the app accepts "
                         f"({max_rows} rows, {max_dim} dims); use the CLI for big batches.")
    bad = ~np.isfinite(arr.astype(np.float64)).all(axis=1)
    if bad.any():
        raise SlimeError(f"{filename}: {int(bad.sum())} row(s) contain NaN or inf (first: row {int(np.argmax(bad))}).")
    zero = np.linalg.norm(arr.astype(np.float64), axis=1) == 0
    if zero.any():
        raise SlimeError(f"{filename}: {int(zero.sum())} row(s) are all zeros (first: row {int(np.argmax(zero))}).")
    return arr.astype(np.float32)


def _is_number(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def check_victim_embedding(arr: np.ndarray, dim: int, victim: str) -> np.ndarray:
    if arr.shape[1] != dim:
        raise SlimeError(f"the uploaded embedding has {arr.shape[1]} dims; '{victim}' embeddings have {dim}. "
                         f"Pick the encoder that made it.")
    return arr


def order_pool_upload(arr: np.ndarray, names: list[str] | None, pool_names: Sequence[str]) -> np.ndarray:
    """Rows of a team's pool embeddings in the bundle's pool order, checking the count and the names."""
    pool_names = list(pool_names)
    if len(arr) != len(pool_names):
        raise SlimeError(f"the pool embeddings have {len(arr)} rows; the public pool has {len(pool_names)} images. "
                         f"Embed every image in the downloaded list, one row each.")
    if names is None:
        return arr
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SlimeError(f"the name column repeats '{dup}'; each pool image must appear once.")
    unknown = [n for n in names if n not in set(pool_names)]
    if unknown:
        raise SlimeError(f"{len(unknown)} row name(s) are not pool images (first: '{unknown[0]}'); "
                         f"use the file names from the downloaded list.")
    pos = {n: i for i, n in enumerate(names)}
    return arr[[pos[n] for n in pool_names]]


def content_key(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:10]


def load_embedding_file(path: str | Path, what: str = "embedding file") -> np.ndarray:
    """An (n, d) float32 array from a .npy, .csv or .parquet file given on the command line, with the same
    checks as an upload (no size limit); every problem is one SlimeError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SlimeError(f"{path}: no such {what}.") from None
    except IsADirectoryError:
        raise SlimeError(f"{path}: is a folder, not an {what} (.npy, .csv or .parquet).") from None
    except OSError as err:
        raise SlimeError(f"{path}: cannot read the {what} ({type(err).__name__}: {err.strerror or err}).") from None
    arr, _ = parse_embeddings(str(path), data, max_rows=None, max_dim=None)
    return arr
