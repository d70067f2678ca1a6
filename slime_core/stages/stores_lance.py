"""LanceDB access for the "lance" embedding store (`stores.LanceStore`): embedded LanceDB, the `lancedb` package
(the [scale] extra), no server. This module knows LanceDB and nothing of stores, so `stores` imports it, not the
other way round; `lancedb` itself loads only when a table is opened.

A table is given as its folder, `.../name.lance` (what `lancedb.connect(db).create_table("name", ...)` makes inside
the database folder `db`), and opened read-only as `lancedb.connect(db).open_table("name")`, pinned to a version:
the latest when none is named. Rows [start, start + size) are one query with that offset and limit, which LanceDB
pushes down to the table's fragments: a batch is read without scanning the rows before it.
"""

from __future__ import annotations

from pathlib import Path

from slime_core.infra.errors import MissingModelError, SlimeError


def _lancedb():
    try:
        import lancedb
    except ImportError:
        raise MissingModelError('reading a LanceDB table needs the lancedb package: pip install -e ".[scale]" '
                                "(or pip install lancedb).") from None
    return lancedb


def _reason(err: Exception) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"


class LanceTable:
    """The table at `path` (a `name.lance` folder) at `version` (None: the latest): its resolved `path`, `version`,
    `written` (that version's time, ISO), `rows` and Arrow `schema`. Every refusal is one SlimeError naming it."""

    def __init__(self, path: Path, version: int | None = None):
        path = Path(path)
        if not path.exists():
            raise SlimeError(f"{path}: no such LanceDB table (give the table's folder, e.g. db/items.lance).")
        if not path.is_dir():
            raise SlimeError(f"{path}: is a file, not a LanceDB table (a LanceDB table is a folder, e.g. "
                             f"db/items.lance).")
        lancedb = _lancedb()
        self.path = path.resolve()
        try:
            self.table = lancedb.connect(str(self.path.parent)).open_table(self.path.stem)
            if version is not None:
                self.table.checkout(version)
            self.version = int(self.table.version)
            self.schema, self.rows = self.table.schema, int(self.table.count_rows())
            when = next((v["timestamp"] for v in self.table.list_versions() if v["version"] == self.version), None)
        except Exception as err:  # noqa: BLE001 - not a table, a damaged manifest, a name LanceDB refuses: one line
            raise SlimeError(f"{path}: not a LanceDB table, or a damaged one ({_reason(err)}).") from None
        self.written = when.isoformat() if when is not None else None

    def read(self, columns: list[str], start: int, size: int):
        """Rows [start, start + size) of `columns`, as a pyarrow Table of exactly `size` rows."""
        try:
            table = self.table.search().select(columns).offset(start).limit(size).to_arrow()
        except Exception as err:  # noqa: BLE001 - a data file damaged or removed since the table was opened
            raise SlimeError(f"{self.path}: rows {start:,} to {start + size - 1:,} cannot be read ({_reason(err)}). "
                             f"Parts written so far are kept.") from None
        if table.num_rows != size:
            raise SlimeError(f"{self.path}: rows {start:,} to {start + size - 1:,} gave {table.num_rows:,} rows; "
                             f"the table changed while it was read. Parts written so far are kept.")
        return table

    def scan(self, columns: list[str], batch_size: int = 1024):
        """Record batches of `columns` from the first row on (read lazily: stop early to read less)."""
        if not self.rows:
            return iter(())
        return self.table.search().select(columns).limit(self.rows).to_batches(batch_size=batch_size)
