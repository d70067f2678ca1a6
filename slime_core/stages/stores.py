"""Embedding stores read in bounded batches: a .npy file (memory-mapped), a Parquet file (an embedding column of
fixed-size lists or lists of numbers, read row group by row group) or a LanceDB table (its `name.lance` folder, read
one offset/limit query per batch), for `slime audit` on millions of vectors.

`open_store(path, column=..., id_column=...)` checks everything that can be checked without reading the vectors —
the file is a readable regular file, its footer or header parses, the column exists and holds numeric lists of one
width, the id column exists — and returns a `Store`: its row count and width known up front (for the progress bar
and the dimension check), and `batches(batch_size, wanted)` yielding (batch index, ids, float32 (b, d) rows).
Batch i always holds rows [i * batch_size, (i + 1) * batch_size), whatever the file's row groups, so a batch index
names the same rows in every run: the audit's part files and its resume rely on it.

Rows are not judged here (a NaN row is returned as it is): `row_problems` says which rows of a batch cannot be
scored, so the caller skips and counts them rather than refusing the whole store.

More kinds register with `@register_store(kind, suffixes)`: a class taking (path, column, id_column) with the
`Store` attributes and `batches`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from slime_core.infra.errors import SlimeError
from slime_core.infra.files import regular_file
from slime_core.infra.registry import Registry
from slime_core.stages.align import MAX_ROW_NORM, MIN_ROW_NORM
from slime_core.stages.stores_lance import LanceTable

STORES: Registry[type] = Registry("store")  # kind -> reader class, registered with the path suffixes it reads
DEFAULT_COLUMN = "embedding"
LANCE_COLUMN = "vector"  # LanceDB's usual vector column: a LanceDB table without DEFAULT_COLUMN is read from it
MAX_DIM = 65_536  # as uploads.MAX_FILE_DIM: no encoder comes near it; a wider column is a wrong column


def register_store(kind: str, suffixes: tuple[str, ...]):
    """Class decorator: a store reader for paths ending in `suffixes` (lower case, with the dot)."""
    def register(cls):
        cls.kind = kind
        return STORES.add(kind, cls, suffixes=tuple(suffixes))
    return register


def list_stores() -> dict[str, tuple[str, ...]]:
    """kind -> the path suffixes it reads."""
    return {kind: STORES.meta(kind)["suffixes"] for kind in STORES.names()}


def open_store(path, column: str = DEFAULT_COLUMN, id_column: str | None = None) -> "Store":
    """The store at `path`, chosen by its suffix; one SlimeError naming the path for anything that is not one."""
    path = Path(path)
    for kind, cls in STORES:
        if path.suffix.lower() in STORES.meta(kind)["suffixes"]:
            return cls(path, column, id_column)
    known = ", ".join(f"{kind} ({' '.join(s)})" for kind, s in list_stores().items())
    raise SlimeError(f"{path}: not an embedding store this tool reads; give one of: {known}.")


@dataclass
class Batch:
    index: int  # batch number: rows [index * batch_size, ...)
    start: int  # global row number of the first row
    ids: list  # one id per row: the id column's values, else the global row numbers
    X: np.ndarray  # (b, d) float32, rows as stored (NaN, zeros included)
    missing: np.ndarray | None = None  # (b,) bool: no vector of the store's width in this row (null, other length)


class Store:
    """What every reader offers. `rows`, `dim`: known when opened; `id_name`: the id column (None: row numbers)."""

    kind = "store"
    path: Path
    rows: int
    dim: int
    column: str | None
    id_name: str | None
    schema = None  # the Arrow schema of a store with columns

    def n_batches(self, batch_size: int) -> int:
        return -(-self.rows // batch_size)

    def batch_rows(self, index: int, batch_size: int) -> int:
        """How many input rows batch `index` covers (the last one may be short)."""
        return max(0, min(batch_size, self.rows - index * batch_size))

    def batches(self, batch_size: int, wanted: Callable[[int], bool] = lambda i: True) -> Iterator[Batch]:
        raise NotImplementedError

    def id_type(self):
        """The Arrow type of the ids: the id column's, else int64 row numbers."""
        import pyarrow as pa

        return self.schema.field(self.id_name).type if self.id_name else pa.int64()

    def __reduce__(self):
        """Sent to another process (a Ray worker) as its path and columns, and opened again there: never as the
        memory-mapped array or the open file."""
        return open_store, (self.path, self.column or DEFAULT_COLUMN, self.id_name)

    def describe(self) -> dict:
        """What names this store's contents for a run's manifest: a changed file is a different run."""
        info = self.path.stat()
        return {"path": str(self.path.resolve()), "kind": self.kind, "bytes": info.st_size,
                "mtime_ns": info.st_mtime_ns, "rows": self.rows, "dim": self.dim, "column": self.column,
                "id_column": self.id_name}

    def _check_columns(self, first_rows: Callable[[], Iterator]) -> int:
        """The embedding column's width, after checking both columns of `self.schema`; SlimeError naming the store
        otherwise. `first_rows()`: record batches of the column from its first row, for a plain list's width."""
        import pyarrow as pa

        schema, names = self.schema, self.schema.names
        listing = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        if self.id_name is not None and self.id_name not in names:
            raise SlimeError(f"{self.path}: no id column '{self.id_name}' (columns: {listing}).")
        if self.column not in names:
            lists = [n for n in names if _is_list(schema.field(n).type)]
            hint = f"; list columns: {', '.join(lists[:5])} (pick one with --column)" if lists else ""
            raise SlimeError(f"{self.path}: no embedding column '{self.column}' (columns: {listing}){hint}.")
        kind = schema.field(self.column).type
        if not _is_list(kind) or not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
            raise SlimeError(f"{self.path}: column '{self.column}' is {kind}; an embedding column holds lists of "
                             f"numbers (fixed-size list or list of float).")
        dim = kind.list_size if pa.types.is_fixed_size_list(kind) else self._first_length(first_rows)
        if not 1 <= dim <= MAX_DIM:
            raise SlimeError(f"{self.path}: column '{self.column}' holds vectors of {dim} values; expected 1 to {MAX_DIM}.")
        return dim

    def _first_length(self, first_rows: Callable[[], Iterator]) -> int:
        """A plain list column's width, from its first non-null row (read alone; later rows of another length are
        reported by `row_problems` when their batch is read)."""
        import pyarrow.compute as pc

        try:
            for rb in first_rows():
                lengths = pc.list_value_length(rb.column(0)).drop_null()
                if len(lengths):
                    return int(lengths[0].as_py())
        except SlimeError:
            raise
        except Exception as err:  # noqa: BLE001 - a damaged page
            raise SlimeError(f"{self.path}: column '{self.column}' cannot be read ({_describe_error(err)}).") from None
        raise SlimeError(f"{self.path}: column '{self.column}' has no vectors (every row is null).")

    def _batch(self, index: int, start: int, table) -> Batch:
        """Batch `index` from an Arrow table of its rows (the embedding column, and the id column if any)."""
        X, missing = vectors(table.column(self.column), self.dim)
        ids = table.column(self.id_name).to_pylist() if self.id_name else list(range(start, start + table.num_rows))
        return Batch(index, start, ids, X, missing)


def _describe_error(err: Exception) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"


@register_store("npy", (".npy",))
class NpyStore(Store):
    """A (rows, dims) numeric .npy array, memory-mapped: only the batch being read is in memory."""

    def __init__(self, path: Path, column: str | None = None, id_column: str | None = None):
        self.path = regular_file(path, "embedding store")
        if id_column is not None:
            raise SlimeError(f"{path}: a .npy store has no columns, so no --id-column {id_column}; its ids are row "
                             f"numbers (use a Parquet file with an id column to keep your own ids).")
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except Exception as err:  # noqa: BLE001 - a damaged header, a pickle, a truncated body: all one line
            raise SlimeError(f"{path}: not a readable .npy array ({_describe_error(err)}).") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
            raise SlimeError(f"{path}: dtype {getattr(arr, 'dtype', type(arr).__name__)} is not numeric; "
                             f"embeddings are floats or integers.")
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or 0 in arr.shape:
            raise SlimeError(f"{path}: expected a (rows, dims) array with rows and dims >= 1; got shape {arr.shape}.")
        if arr.shape[1] > MAX_DIM:
            raise SlimeError(f"{path}: {arr.shape[1]} dims; no embedding has more than {MAX_DIM}.")
        self.arr, self.rows, self.dim, self.column, self.id_name = arr, arr.shape[0], arr.shape[1], None, None

    def batches(self, batch_size: int, wanted: Callable[[int], bool] = lambda i: True) -> Iterator[Batch]:
        for i in range(self.n_batches(batch_size)):
            if wanted(i):
                start = i * batch_size
                X = np.asarray(self.arr[start:start + batch_size], dtype=np.float32)  # copies only this batch
                yield Batch(i, start, list(range(start, start + len(X))), X)


@register_store("parquet", (".parquet", ".pq"))
class ParquetStore(Store):
    """An embedding column of fixed-size lists (or lists) of numbers; ids from `id_column`, else row numbers.
    Read row group by row group, so memory holds one row group's column plus one batch."""

    def __init__(self, path: Path, column: str = DEFAULT_COLUMN, id_column: str | None = None):
        import pyarrow.parquet as pq

        self.path = regular_file(path, "embedding store")
        try:
            self.file = pq.ParquetFile(self.path)
            schema, meta = self.file.schema_arrow, self.file.metadata
        except Exception as err:  # noqa: BLE001 - a truncated or corrupt footer: pyarrow raises on open
            raise SlimeError(f"{path}: not a readable Parquet file ({_describe_error(err)}); is it truncated?") from None
        self.column, self.id_name, self.rows, self.schema = column, id_column, meta.num_rows, schema
        self.dim = self._check_columns(lambda: self.file.iter_batches(batch_size=1024, columns=[self.column]))
        # global row number where each row group starts: batch boundaries are rows, not row groups
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if self.rows == 0:
            raise SlimeError(f"{path}: no rows.")

    def _chunks(self, wanted_groups: list[int], batch_size: int):
        """(global row number, record batch) over the wanted row groups, in order."""
        columns = [self.column] + ([self.id_name] if self.id_name and self.id_name != self.column else [])
        for g in wanted_groups:
            offset = int(self.group_starts[g])
            for rb in self.file.iter_batches(batch_size=batch_size, row_groups=[g], columns=columns):
                yield offset, rb
                offset += rb.num_rows

    def batches(self, batch_size: int, wanted: Callable[[int], bool] = lambda i: True) -> Iterator[Batch]:
        import pyarrow as pa

        todo = [i for i in range(self.n_batches(batch_size)) if wanted(i)]
        if not todo:
            return
        groups = sorted({int(g) for i in todo for g in self._groups_of(i, batch_size)})
        pending, wanted_set = [], set(todo)
        try:
            for offset, rb in self._chunks(groups, batch_size):
                while rb.num_rows:
                    i = offset // batch_size
                    end = min((i + 1) * batch_size, self.rows)
                    piece, rb = rb.slice(0, end - offset), rb.slice(end - offset)
                    offset += piece.num_rows
                    if i in wanted_set:
                        pending.append(piece)
                        if offset == end:
                            yield self._batch(i, i * batch_size, pa.Table.from_batches(pending))
                            pending = []
        except SlimeError:
            raise
        except Exception as err:  # noqa: BLE001 - a page damaged past the footer: found only when read
            raise SlimeError(f"{self.path}: a row group cannot be read ({_describe_error(err)}); the file is "
                             f"damaged. Parts written so far are kept.") from None

    def _groups_of(self, index: int, batch_size: int) -> np.ndarray:
        """The row groups holding rows of batch `index`."""
        start, end = index * batch_size, min((index + 1) * batch_size, self.rows)
        first = np.searchsorted(self.group_starts, start, side="right") - 1
        last = np.searchsorted(self.group_starts, end - 1, side="right") - 1
        return np.arange(first, last + 1)


@register_store("lance", (".lance",))
class LanceStore(Store):
    """A LanceDB table, given as its folder (`db/name.lance`; the `lancedb` package, the [scale] extra): the vector
    column of fixed-size lists (or lists) of numbers, one offset/limit query per batch, so a resumed run reads only
    the batches still to do. `--column` left at "embedding" reads LanceDB's usual "vector" where the table has no
    "embedding". The table is pinned to the version it had when opened: a Ray worker opens that version again, and
    the manifest names it with its time, so a table written between two runs makes them different runs."""

    def __init__(self, path: Path, column: str = DEFAULT_COLUMN, id_column: str | None = None,
                 version: int | None = None):
        self.lance = LanceTable(path, version)
        self.path, self.schema, self.rows = self.lance.path, self.lance.schema, self.lance.rows
        if column == DEFAULT_COLUMN and column not in self.schema.names and LANCE_COLUMN in self.schema.names:
            column = LANCE_COLUMN
        self.column, self.id_name = column, id_column
        self.dim = self._check_columns(lambda: self.lance.scan([self.column]))
        if self.rows == 0:  # after the columns: a wrong --column is said first, as for Parquet
            raise SlimeError(f"{self.path}: no rows.")

    def batches(self, batch_size: int, wanted: Callable[[int], bool] = lambda i: True) -> Iterator[Batch]:
        columns = [self.column] + ([self.id_name] if self.id_name and self.id_name != self.column else [])
        for i in range(self.n_batches(batch_size)):
            if wanted(i):
                start = i * batch_size
                yield self._batch(i, start, self.lance.read(columns, start, self.batch_rows(i, batch_size)))

    def __reduce__(self):
        return LanceStore, (self.path, self.column, self.id_name, self.lance.version)

    def describe(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "version": self.lance.version, "written": self.lance.written,
                "rows": self.rows, "dim": self.dim, "column": self.column, "id_column": self.id_name}


def _is_list(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def vectors(column, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A list column (chunked or not) as (n, dim) float32, and (n,) bool: rows that hold no vector of `dim` values
    (null, another length), left as NaN (a null inside a vector becomes NaN too)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    ok = pc.fill_null(pc.equal(pc.list_value_length(arr), dim), False).to_numpy(zero_copy_only=False)
    if ok.all():
        values = arr.flatten()  # respects the array's offset: a sliced batch gives its own rows only
    else:
        values = arr.filter(pa.array(ok)).flatten()
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: skipped as not finite
        flat = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
    if ok.all():
        return flat, ~ok
    X = np.full((n, dim), np.nan, dtype=np.float32)
    X[ok] = flat
    return X, ~ok


# Why a row cannot be scored, in the order they are tested; code 0 is a row that can.
SKIP_REASONS = ("null or not {dim} values", "NaN or inf", "all zeros", "norm outside 1e-12..1e12")


def row_problems(X: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """(n,) int8 per row of a batch: 0 where it can be scored, else 1 + its index in SKIP_REASONS. The same rows
    `align.check_embeddings` refuses, found per row (vectorised) so one bad row skips itself, not its batch."""
    code = np.zeros(len(X), np.int8)
    finite = np.isfinite(X).all(axis=1)
    zero = ~X.any(axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)  # float64: a float32 sum would underflow denormal rows
    out = (sq < MIN_ROW_NORM ** 2) | (sq > MAX_ROW_NORM ** 2)
    code[out] = 4
    code[zero] = 3
    code[~finite] = 2
    if missing is not None:
        code[missing] = 1
    return code

