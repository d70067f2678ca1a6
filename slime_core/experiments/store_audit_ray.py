"""The "ray" engine of `slime audit`: the same parts as the local engine, made by a pool of Ray actors.

Ray Data maps the batches still to do (their indices) over `workers` actors. Each actor builds the attacker once
from the bundle's folder and receives the fitted map from the driver (one copy, through Ray's object store, so every
actor attacks with exactly the driver's map); for each index it reads that batch from the store, scores it with
`store_audit.score_batch` and writes its part atomically, as the local engine does. The output folder, the resume
after a kill and every row are therefore the local engine's (tests/test_store_audit_ray.py checks it on 2 workers).

On one machine `run_ray` starts a local Ray with `workers` CPUs and stops it after. `--address ray://host:10001` (or
`auto`) joins a running cluster instead: the store and --out must then be on storage every node sees (a shared
file system), and the bundle folder too. A GPU actor would only change `num_gpus` per actor and the device the
attacker's matrix products run on; on this CPU build the work per batch is the same.

Ray is an optional dependency (`pip install -e ".[scale]"`); without it `--engine ray` is one line saying so.
"""

from __future__ import annotations

import numpy as np

from slime_core.experiments import store_audit
from slime_core.infra.errors import MissingModelError, SlimeError

DEFAULT_WORKERS = 2


class _PartMaker:
    """One Ray actor: holds the attacker and the fitted map, and makes the parts it is given."""

    def __init__(self, bundle: str, data: str, job, fit):
        from slime_core.pipeline import Attacker

        self.attacker, self.job, self.fit = Attacker(bundle, data=data), job, fit

    def __call__(self, batch: dict) -> dict:
        rows = []
        for index in batch["index"]:
            index = int(index)
            part = next(self.job.store.batches(self.job.batch_size, lambda j: j == index))
            store_audit.write_part(self.job, index, store_audit.score_batch(self.attacker, self.fit, part, self.job))
            rows.append(len(part.ids))
        return {"index": np.asarray(batch["index"]), "rows": np.asarray(rows, np.int64)}


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is a separate part of the package
    except ImportError:
        raise MissingModelError("--engine ray needs Ray: pip install -e \".[scale]\" (or pip install 'ray[data]').") from None
    return ray


@store_audit.register_engine("ray")
def run_ray(job: store_audit.AuditJob, attacker, fit, progress: bool = True, address: str | None = None,
            workers: int = DEFAULT_WORKERS) -> dict:
    """The audit on Ray Data (a local Ray, or the cluster at `address`); the summary as the local engine gives it."""
    ray = _ray()
    if job.writer is not None:
        raise SlimeError("--engine ray writes no captions (a caption writer holds a loaded LLM, which is not sent to "
                         "workers); use --engine local with --caption, or leave --caption out.")
    if attacker.bundle.path is None:
        raise SlimeError("--engine ray needs the attacker's bundle on disk (--bundle), for the workers to load it.")
    with store_audit.claim_out(job):  # held by this driver while the workers write the parts
        return _run_ray(ray, job, attacker, fit, progress, address, workers)


def _run_ray(ray, job: store_audit.AuditJob, attacker, fit, progress: bool, address: str | None, workers: int) -> dict:
    from tqdm.auto import tqdm

    n = job.store.n_batches(job.batch_size)
    todo = [i for i in range(n) if not store_audit.part_complete(job, i)]
    resumed = sum(job.store.batch_rows(i, job.batch_size) for i in set(range(n)) - set(todo))
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # one bar, ours, in rows
        parts = ray.data.from_items([{"index": i} for i in todo]) if todo else None
        with tqdm(total=job.store.rows, initial=resumed, unit="rows", unit_scale=True, desc="audit (ray)",
                  disable=not progress, smoothing=0.1) as bar:
            if parts is not None:
                made = parts.map_batches(_PartMaker, fn_constructor_args=(str(attacker.bundle.path), str(attacker.data),
                                                                          job, fit),
                                         batch_size=1, concurrency=workers, num_cpus=1)
                for row in made.iter_rows():
                    bar.update(int(row["rows"]))
    finally:
        if started:
            ray.shutdown()
    summary = store_audit.new_summary(job, attacker, fit)
    for i in range(n):  # every part is complete now: counted from disk, one at a time
        table = store_audit.read_part(job, i)
        if table is None:
            raise SlimeError(f"{job.part(i)}: unreadable after the run; run again to remake it.")
        summary.add(table, [tuple(s) for s in store_audit.part_record(table)["skipped"]])
    return store_audit.finish(job, summary, resumed)
