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

from slime_core.infra.errors import SlimeError
from slime_core.stages.align import check_embeddings
from slime_core.stages.encoders import load_image

EMBEDDING_TYPES = ("npy", "csv", "parquet")
MAX_EMBEDDING_ROWS = 100_000
MAX_EMBEDDING_DIM = 16_384
MIN_IMAGE_SIDE = 32
# Read from a file's header before anything is parsed or allocated (a 2.4 MB CSV of 300,000 columns took minutes
# to parse; a .npy header can claim any shape): no registered encoder comes near 65,536 dims.
MAX_FILE_DIM = 65_536
MAX_UNCOMPRESSED = 1 << 32  # bytes a parquet file may expand to


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
    _check_header(filename, data, ext, max_rows, max_dim or MAX_FILE_DIM)
    arr, names = (_read_npy(filename, data), None) if ext == "npy" else _read_table(filename, data, ext)
    return _checked(filename, arr, max_rows, max_dim), names


def _check_header(filename: str, data: bytes, ext: str, max_rows: int | None, max_dim: int) -> None:
    """Refuse from the header alone (no parsing, no allocation) a file wider than `max_dim` columns (+1 for a name
    column), longer than `max_rows` rows where the header says, or whose .npy header disagrees with its length."""
    if ext == "npy":
        shape, dtype = _npy_header(filename, data)
        if len(shape) in (1, 2) and shape[-1] > max_dim:
            raise SlimeError(f"{filename}: shape {shape} has {shape[-1]} dims; no embedding has more than {max_dim}.")
        return
    if ext == "csv":
        widest = max(line.count(b",") for line in data.split(b"\n")) + 1
        columns, rows = widest, None
    else:
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(io.BytesIO(data)).metadata
        except Exception as err:  # noqa: BLE001 - any failure to read the footer is a bad file
            raise SlimeError(f"{filename}: not a readable .parquet file ({type(err).__name__}: {str(err)[:200]}).") from None
        columns, rows = meta.num_columns, meta.num_rows
        expanded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if expanded > MAX_UNCOMPRESSED:
            raise SlimeError(f"{filename}: expands to {expanded / 2**30:.1f} GiB when read; split it into smaller files.")
    if columns > max_dim + 1:
        raise SlimeError(f"{filename}: {columns} columns; an embedding has at most {max_dim} dims (+1 name column). "
                         f"Refused before parsing.")
    if max_rows and rows is not None and rows > max_rows:
        raise SlimeError(f"{filename}: {rows} rows, more than the {max_rows} accepted; use the CLI for big batches.")


def _npy_header(filename: str, data: bytes) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a .npy header claims, checked against the bytes that follow it."""
    from numpy.lib import format as npformat

    if not data.startswith(b"\x93NUMPY"):  # np.load would call anything else a pickle
        raise SlimeError(f"{filename}: not a readable .npy file (no NumPy header; save it with numpy.save).")
    stream = io.BytesIO(data)
    try:
        version = npformat.read_magic(stream)
        shape, _, dtype = (npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0)(stream)
    except Exception as err:  # noqa: BLE001 - a damaged header
        raise SlimeError(f"{filename}: not a readable .npy file ({type(err).__name__}: {str(err)[:200]}).") from None
    if dtype.hasobject:
        raise SlimeError(f"{filename}: not a plain numeric .npy array (dtype {dtype}); object arrays are refused.")
    count = int(np.prod(shape, dtype=object))
    if count * dtype.itemsize != len(data) - stream.tell():
        raise SlimeError(f"{filename}: the header says shape {shape} of {dtype} ({count * dtype.itemsize} bytes), but "
                         f"{len(data) - stream.tell()} bytes follow it; the file is truncated or damaged.")
    return shape, dtype


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
        if ext == "csv" and len(df.columns) and all(_is_number(c) for c in df.columns):
            df = pd.read_csv(io.BytesIO(data), header=None)  # a headerless CSV: the first row is data
    except Exception as err:  # noqa: BLE001
        raise SlimeError(f"{filename}: not a readable .{ext} file ({type(err).__name__}: {str(err)[:200]}).") from None
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
        return np.stack([np.asarray(v, dtype=np.float64) for v in df[vector_cols[0]]]), names  # float32 after the checks
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
    return check_embeddings(arr, filename)  # finite, non-zero, sanely scaled rows: the one gate (align)


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


def load_embedding_file(path: str | Path, what: str = "embedding file", names: bool = False):
    """An (n, d) float32 array from a .npy, .csv or .parquet file given on the command line, with the same
    checks as an upload (no size limit); every problem is one SlimeError naming the file. `names`: return
    (array, row names or None) - a table's name column (e.g. `image`), so pool rows are matched by name."""
    from slime_core.infra.files import read_bytes

    path = Path(path)
    data = read_bytes(path, what)  # regular files only (a FIFO would block forever, a folder is refused), size capped
    arr, row_names = parse_embeddings(str(path), data, max_rows=None, max_dim=None)
    return (arr, row_names) if names else arr


# ---- uploaded photos and the "your own embeddings" pair of files -----------------------------------------

def check_image_upload(name: str, data: bytes, min_side: int = MIN_IMAGE_SIDE):
    """An RGB PIL image from uploaded bytes, or a SlimeError naming the file (no Python reprs)."""
    if not data:
        raise SlimeError(f"{name}: the file is empty.")
    try:
        image = load_image(bytes(data))
    except SlimeError as err:
        reason = str(err).split(": ", 1)[-1]
        raise SlimeError(f"{name}: {reason}") from None
    if min(image.size) < min_side:
        raise SlimeError(f"{name}: the image is {image.width}x{image.height} pixels; at least {min_side} pixels a "
                         f"side are needed for an embedding that means anything.")
    return image


def check_degenerate(arr: np.ndarray, what: str, min_distinct: int | None = None) -> None:
    """Refuse embeddings that carry no information: constant rows (every row the same), near-zero variance
    across rows, or far fewer distinct rows than rows (`min_distinct`, default half the rows)."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or not arr.size:
        raise SlimeError(f"{what}: expected a 2-D array (rows, dims), got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise SlimeError(f"{what}: contains NaN or inf.")
    if (np.linalg.norm(arr, axis=1) == 0).any():
        raise SlimeError(f"{what}: has all-zero rows.")
    if len(arr) < 2:
        return
    unit = arr / np.linalg.norm(arr, axis=1, keepdims=True)
    distinct = len(np.unique(np.round(unit, 6), axis=0))
    if distinct == 1:
        raise SlimeError(f"{what}: every row is the same vector - a constant embedding carries no information.")
    if unit.var(axis=0).sum() < 1e-6:
        raise SlimeError(f"{what}: the rows barely differ (total variance {unit.var(axis=0).sum():.1e}); "
                         f"this is not an embedding of different images.")
    need = max(2, len(arr) // 2) if min_distinct is None else min_distinct
    if distinct < need:
        raise SlimeError(f"{what}: only {distinct} distinct rows out of {len(arr)}; most rows are duplicates.")


def _named(filename: str, err: SlimeError) -> SlimeError:
    text = str(err)
    return SlimeError(text if filename in text else f"{filename}: {text}")


def read_audit_uploads(pool_file: tuple[str, bytes], audit_file: tuple[str, bytes], pool_names: Sequence[str],
                       max_audit: int = 1000) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(pool embeddings in bundle pool order, embeddings to audit, their names) from two uploaded files.
    Every refusal is one SlimeError naming the file: unreadable, NaN/inf, all-zero rows, degenerate (every row
    the same, rows that barely differ, mostly duplicates), wrong row count or names, mismatched dims."""
    (pool_name, pool_data), (audit_name, audit_data) = pool_file, audit_file
    try:
        pool, row_names = parse_embeddings(pool_name, pool_data)
        pool = order_pool_upload(pool, row_names, pool_names)
        check_degenerate(pool, pool_name)
    except SlimeError as err:
        raise _named(pool_name, err) from None
    try:
        audit, audit_names = parse_embeddings(audit_name, audit_data)
        if audit.shape[1] != pool.shape[1]:
            raise SlimeError(f"{audit.shape[1]} dims but {pool_name} has {pool.shape[1]}; both must come from the "
                             f"same model.")
        if len(audit) > max_audit:
            raise SlimeError(f"{len(audit)} embeddings to audit; the app takes up to {max_audit} (use `slime attack "
                             f"--embedding` for more).")
        check_degenerate(audit, audit_name, min_distinct=1)
    except SlimeError as err:
        raise _named(audit_name, err) from None
    return pool, audit, audit_names or [f"row {i}" for i in range(len(audit))]
