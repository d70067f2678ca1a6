"""`slime audit`: every embedding of a store (millions of rows) attacked in bounded batches, written as Parquet.

The job (`AuditJob`) is the store (`stages.stores`), the attack's settings and the output folder. Each input batch
i (rows [i * batch_size, ...)) becomes one part file, `part-<i>.parquet`, written to a temporary file and renamed into
place: a part is there whole or not at all, so a run killed at any moment and started again skips the complete
parts (each checked: it opens, covers the batch's rows) and goes on — no row lost, none written twice. The folder
reads as one table (`pyarrow.parquet.read_table(out)`, `pandas.read_parquet(out)`): the manifest `_audit.json`, the
summary `_summary.html` and temporary `.part-*` files start with `_` or `.`, which Parquet readers skip.

A part's rows: `id` (the store's id column, else the row number), `tags` and `tag_scores` (the top k, best first),
one `attr_<name>` score per sensitive attribute (`stages.attributes`), and `caption` when a writer is given. Rows
that cannot be scored (NaN/inf, all zeros, no vector: `stores.row_problems`) are left out and listed, with their
reason, in the part's metadata, from which the summary counts them — never scored silently.

The manifest names the run (input file with its size and modification time, victim and its pool file, N, k,
method, seed, batch size, attributes, writer): an --out that holds another run's parts is refused in one line.

Engines are a registry (`register_engine`): "local" runs here batch after batch; "ray" (store_audit_ray) registers
beside it and reuses `score_batch` per batch, `write_part`, and `new_summary` folded over the written parts.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from slime_core.attack_captions import write_captions
from slime_core.experiments.store_summary import RunningSummary, calibrate
from slime_core.infra.errors import SlimeError, mask_output
from slime_core.infra.files import check_writable_folder
from slime_core.infra.registry import Registry
from slime_core.stages.attributes import Attributes, attribute_scores
from slime_core.stages.stores import SKIP_REASONS, Batch, Store, row_problems

MANIFEST = "_audit.json"
LOCK = ".lock"  # held (flock) by the run writing into --out
SUMMARY = "_summary.html"
MANIFEST_VERSION = 1
META_KEY = b"slime_audit"  # a part's own record: the batch it covers, its input rows and its skipped rows
ATTACK_ROWS = 1024  # rows attacked at once inside a batch (see score_rows)

# engine(job, attacker, fit, progress) -> summary dict: what runs a whole audit, by --engine name
ENGINES: Registry[Callable] = Registry("--engine")


def register_engine(name: str):
    """Decorator: `engine(job, attacker, fit, progress) -> summary dict` runs a whole audit under `name`."""
    return ENGINES.register(name)


def list_engines() -> list[str]:
    return ENGINES.names()


def engine(name: str) -> Callable:
    return ENGINES.get(name)


@dataclass
class AuditJob:
    store: Store
    out: Path
    victim: str
    n_align: int
    k: int
    attributes: Attributes
    method: str = "ridge"
    seed: int = 0
    batch_size: int = 4096
    victim_pool: Path | None = None  # the user's pool file, when the victim's pool comes from one
    writer: object | None = None  # a caption writer (stages.write), or None: no caption column
    attacker_name: str = ""
    bundle_digest: str = ""  # `bundle_digest(bundle)`: a retrained bundle under the same name is another run

    def manifest(self) -> dict:
        """What makes two runs the same run: equal manifests may share an --out."""
        pool = None
        if self.victim_pool is not None:
            info = Path(self.victim_pool).stat()
            pool = {"path": str(Path(self.victim_pool).resolve()), "bytes": info.st_size, "mtime_ns": info.st_mtime_ns}
        words = [[a.name, list(a.words)] for a in self.attributes.items]
        return {"version": MANIFEST_VERSION, "input": self.store.describe(), "victim": self.victim,
                "victim_pool": pool, "attacker": self.attacker_name, "n_align": self.n_align, "k": self.k,
                "method": self.method, "seed": self.seed, "batch_size": self.batch_size,
                "attributes": self.attributes.names,
                "attributes_digest": hashlib.sha256(json.dumps(words).encode()).hexdigest()[:16],
                "bundle": self.bundle_digest, "caption": None if self.writer is None else
                f"{type(self.writer).__name__}:{getattr(self.writer, 'model', '?')}:{getattr(self.writer, 'mode', '?')}"}

    def part(self, index: int) -> Path:
        return self.out / f"part-{index:06d}.parquet"


def check_out(out) -> Path:
    """--out: a folder (made if missing) that can be written; a file there is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SlimeError(f"--out {out} is a file; give a folder for the part files (e.g. results.parquet/).")
    return check_writable_folder(out, "--out")


def check_dim(store: Store, fit, victim: str) -> None:
    """The store's vectors must be the victim's: the fitted map takes `fit.input_dim` values."""
    if store.dim != fit.input_dim:
        raise SlimeError(f"{store.path}: embeddings of {store.dim} dims; '{victim}' embeddings have {fit.input_dim}. "
                         f"Pick the victim (or --victim-pool) that made them.")


def new_summary(job: AuditJob, attacker, fit) -> RunningSummary:
    """The empty summary every engine folds its parts into: thresholds calibrated for this map, the tag prior."""
    return RunningSummary(job.attributes.names, calibrate(attacker, fit, job.victim, job.attributes, job.n_align,
                                                          job.seed), attacker.frequent_tags(job.k))


@contextmanager
def claim_out(job: AuditJob):
    """Hold --out for this run: a second run on the same folder is refused while this one lives (it would delete
    this run's temporary parts and race it for the same part files). Inside, the job's manifest is written into
    --out, or the one there checked: another run's results are refused, and so is a folder of other files.
    Left-over temporary parts of a killed run are removed."""
    out, manifest = job.out, job.manifest()
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / LOCK, f"--out {out}"):
        path = out / MANIFEST
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise SlimeError(f"--out {out}: its {MANIFEST} cannot be read ({type(err).__name__}); "
                                 f"give a new --out.") from None
            diff = first_difference(old, manifest)
            if diff is not None:
                key, there, now = diff
                raise SlimeError(f"--out {out} holds the results of a different run ({key}: {json.dumps(there)[:80]} "
                                 f"there, {json.dumps(now)[:80]} now); give a new --out.")
        else:
            if any(not p.name.startswith(".") for p in out.iterdir()):
                raise SlimeError(f"--out {out} is a folder of other files (no {MANIFEST}); give a new or empty --out.")
            _atomic(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8"))
        for tmp in out.glob(".part-*.tmp"):
            tmp.unlink(missing_ok=True)
        yield


@contextmanager
def exclusive(path: Path, what: str):
    """An advisory lock on `path` (flock) for the block: the operating system drops it when the process ends, so
    a killed run never leaves a stale lock behind. Where there is no flock (Windows, a file system without locks
    such as some network mounts), runs are not guarded."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:  # held by another process (or another open of it in this one)
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise SlimeError(f"{what} is in use by another slime audit ({holder}); wait for it to finish or give "
                             f"another --out.") from None
        except OSError:  # no locks on this file system
            locked = False
        if not locked:
            yield
            return
        try:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def first_difference(old: dict, new: dict, prefix: str = ""):
    """(dotted key, old value, new value) of the first key where two manifests differ, or None."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = first_difference(a, b, f"{prefix}{key}.")
            if inner is not None:
                return inner
        elif a != b:
            return f"{prefix}{key}", a, b
    return None


def bundle_digest(bundle) -> str:
    """A short digest of the attacker bundle's manifest (its training settings and data) and folder."""
    text = json.dumps([str(getattr(bundle, "path", "")), bundle.manifest], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` beside `path`, then rename: a reader (or a resumed run) sees the whole file or none."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def part_schema(job: AuditJob):
    import pyarrow as pa

    fields = [pa.field("id", job.store.id_type()), pa.field("tags", pa.list_(pa.string())),
              pa.field("tag_scores", pa.list_(pa.float32()))]
    fields += [pa.field(f"attr_{a}", pa.float32()) for a in job.attributes.names]
    if job.writer is not None:
        fields.append(pa.field("caption", pa.string()))
    return pa.schema(fields)


def score_batch(attacker, fit, batch: Batch, job: AuditJob):
    """One input batch -> its part table (rows that can be scored) with the skipped rows in its metadata."""
    import pyarrow as pa

    codes = row_problems(batch.X, batch.missing)
    good = np.flatnonzero(codes == 0)
    skipped = [(batch.ids[i], SKIP_REASONS[codes[i] - 1].format(dim=job.store.dim)) for i in np.flatnonzero(codes)]
    schema = part_schema(job)
    if not len(good):
        table = schema.empty_table()
    else:
        scored, scores, captions = score_rows(attacker, fit, batch.X[good], job)
        flat = [t for row in scored for t in row]
        offsets = pa.array(np.cumsum([0] + [len(row) for row in scored]), pa.int32())
        columns = {"id": pa.array([batch.ids[i] for i in good], schema.field("id").type),
                   "tags": pa.ListArray.from_arrays(offsets, pa.array([t for t, _ in flat], pa.string())),
                   "tag_scores": pa.ListArray.from_arrays(offsets, pa.array(np.array([s for _, s in flat], np.float32)))}
        columns |= {f"attr_{a}": pa.array(scores[:, j]) for j, a in enumerate(job.attributes.names)}
        if job.writer is not None:
            columns["caption"] = pa.array([mask_output(c) for c in captions], pa.string())
        table = pa.table(columns, schema=schema)
    record = {"batch": batch.index, "rows_in": len(batch.ids), "skipped": [[_jsonable(i), r] for i, r in skipped]}
    return table.replace_schema_metadata({META_KEY: json.dumps(record).encode()})


def score_rows(attacker, fit, X: np.ndarray, job: AuditJob):
    """Rows that can be scored -> (scored tags per row, (n, n_attr) attribute scores, captions or None), through
    `Attacker.attack_batch` ATTACK_ROWS at a time: its temporaries grow with rows x public pool (the neighbour
    votes' (n, 6,909) similarities and their partition), and a quarter of a 4,096-row batch keeps them ~100 MB."""
    scored, scores, captions = [], [], [] if job.writer is not None else None
    for start in range(0, len(X), ATTACK_ROWS):
        result = attacker.attack_batch(fit, X[start:start + ATTACK_ROWS], job.k)
        scored += result.scored_tags
        scores.append(attribute_scores(attacker, result.aligned, job.attributes, result.projected))
        if captions is not None:
            captions += write_captions(attacker, job.writer, result.tags, result.aligned, job.k, "captions", False)
    return scored, np.concatenate(scores), captions


def _jsonable(value):
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def part_complete(job: AuditJob, index: int) -> bool:
    """Whether part `index` is there whole: it opens, it is this batch's, and it accounts for each of its input rows
    (written or skipped). Read from the footer only; a part that fails is rewritten."""
    import pyarrow.parquet as pq

    path = job.part(index)
    if not path.is_file():
        return False
    try:
        pf = pq.ParquetFile(path)
        record = json.loads((pf.schema_arrow.metadata or {})[META_KEY])
        rows = pf.metadata.num_rows
        schema_ok = pf.schema_arrow.remove_metadata().equals(part_schema(job))
    except Exception:  # noqa: BLE001 - a damaged part is rewritten, whatever broke it
        return False
    return (schema_ok and record.get("batch") == index and record.get("rows_in") == job.store.batch_rows(
        index, job.batch_size) and rows + len(record.get("skipped", [])) == record["rows_in"])


def read_part(job: AuditJob, index: int):
    """A complete part's table (`part_complete`), or None where its pages turn out unreadable."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(job.part(index))
    except Exception:  # noqa: BLE001 - damaged past its footer: recomputed by the caller
        return None


def part_record(table) -> dict:
    return json.loads(table.schema.metadata[META_KEY])


def write_part(job: AuditJob, index: int, table) -> None:
    import pyarrow.parquet as pq

    _atomic(job.part(index), lambda tmp: pq.write_table(table, tmp))


@register_engine("local")
def run_local(job: AuditJob, attacker, fit, progress: bool = True) -> dict:
    """The audit in this process, batch after batch; parts already complete are read back, not recomputed."""
    with claim_out(job):
        return _run_local(job, attacker, fit, progress)


def _run_local(job: AuditJob, attacker, fit, progress: bool) -> dict:
    from tqdm.auto import tqdm

    n = job.store.n_batches(job.batch_size)
    done = {i for i in range(n) if part_complete(job, i)}
    summary = new_summary(job, attacker, fit)
    resumed = sum(job.store.batch_rows(i, job.batch_size) for i in done)
    fresh = job.store.batches(job.batch_size, wanted=lambda i: i not in done)
    with tqdm(total=job.store.rows, initial=resumed, unit="rows", unit_scale=True, desc="audit",
              disable=not progress, smoothing=0.1) as bar:
        for i in range(n):
            table = read_part(job, i) if i in done else None  # one part in memory at a time
            if table is None:
                batch = next(fresh) if i not in done else next(job.store.batches(job.batch_size, lambda j: j == i))
                assert batch.index == i  # the store yields the batches asked for, in order
                table = score_batch(attacker, fit, batch, job)
                write_part(job, i, table)
                bar.update(len(batch.ids) if i not in done else 0)
            summary.add(table, [tuple(s) for s in part_record(table)["skipped"]])
    return finish(job, summary, resumed)


def finish(job: AuditJob, summary: RunningSummary, resumed: int) -> dict:
    """The summary's dict: the run's settings and what `RunningSummary` counted."""
    return {"settings": {**job.manifest(), "out": str(job.out), "parts": job.store.n_batches(job.batch_size)},
            "rows": job.store.rows, "rows_resumed": int(resumed), **summary.result()}
