"""The worklist as a Dask job: partitioned reading, lines sent to the bucket of their patient, evaluation per bucket.

No process holds the export: each read task holds one part of a file and writes its lines to one Arrow file per
bucket of their patients (hashing), and each evaluation task reads one bucket's files and evaluates its patients.
The panel's store (cds/panel/store.py) is already bucketed by patient: its buckets are evaluated as they are. The
client receives only the rows (one per patient) and the problems (a bounded number of them, and a count of the
rest). The read tasks' problems are known before any patient is evaluated, so a type whose file could not be read
whole is named as could not be read in every row from the start.

The local cluster admits no one but its own client: every connection (client, scheduler, workers, nannies) is
mutual TLS with credentials made for the run and held in memory, and none of its processes serves HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from cds.panel.source import (
    FILE_KINDS,
    NOT_LISTED,
    PROBLEMS_LISTED,
    SPILL_PREFIX,
    Export,
    Problem,
    ProblemLog,
    resource_type_of,
    task_limit,
)
from cds.panel.workers import RulesPlugin, evaluate_bucket, spill_part

OUTPUT_PARTITION_BYTES = 48 * 1024 * 1024  # raw NDJSON per evaluation task: what bounds a worker's memory
# Every HTTP route of the local cluster's scheduler and workers (health, metrics, JSON state, info pages, the
# proxy): none is needed to run the job, and each would answer any local process.
NO_HTTP_ROUTES: dict[str, list[str]] = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
# The local cluster's configuration: no HTTP, and no statistical profiler in the workers (it samples every thread
# every 10 ms for a dashboard the local cluster does not serve).
LOCAL_CLUSTER: dict[str, object] = {**NO_HTTP_ROUTES, "distributed.worker.profile.enabled": False}


@dataclass
class Result:
    """What the job gives back: rows, problems, and how it ran."""

    rows: list[dict[str, Any]]
    problems: list[Problem]
    seconds: float
    workers: int
    partitions: tuple[int, int]  # read partitions, patient buckets
    notes: list[str] = field(default_factory=list)
    not_listed: int = 0  # problems counted past the PROBLEMS_LISTED listed


def output_partitions(export: Export, workers: int) -> int:
    """Enough output partitions to keep each evaluation task small, and at least two per worker."""
    return max(2 * workers, math.ceil(export.raw_bytes / OUTPUT_PARTITION_BYTES))


def remote_security(ca_file: str | None, cert: str | None, key: str | None) -> Any:
    """The client's TLS credentials for a remote scheduler: the files named (a CA and a certificate, its key in it
    or apart), else Dask's own configuration (distributed.comm.tls.ca-file, .client.cert, .client.key), which is
    also what a plain tcp:// scheduler is reached with."""
    from distributed.security import Security

    if ca_file or cert or key:
        return Security(require_encryption=True, tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key)
    return Security()


def has_tls_context(security: Any) -> bool:
    """Whether the credentials give a TLS context (loading the files named: OSError or ValueError if they cannot
    be), which a tls:// address needs."""
    return security.get_connection_args("client").get("ssl_context") is not None


@contextmanager
def dask_client(scheduler: str | None, workers: int, security: Any = None) -> Iterator[Any]:
    """A client of the cluster at `scheduler` (with `security`, else Dask's configured credentials), or of a
    LocalCluster of `workers` single-threaded processes that admits no one but this client and serves no HTTP."""
    from distributed import Client

    if scheduler:
        with Client(scheduler, timeout="15s", security=security) as client:
            yield client
        return
    scheduler_log = logging.getLogger("distributed.scheduler")
    scheduler_log.addFilter(_quiet_cancellation)
    try:
        with _local_cluster(workers) as client:
            yield client
    finally:
        scheduler_log.removeFilter(_quiet_cancellation)


@contextmanager
def _local_cluster(workers: int) -> Iterator[Any]:
    """A LocalCluster on 127.0.0.1 whose every connection is mutual TLS with credentials made for it (held in
    memory; distributed loads them through a private temporary folder it removes at once), and a client of it.
    dashboard_address=None alone does not stop the scheduler's HTTP server (it still serves health, metrics and
    JSON state on 8787): the routes are removed, the server bound to a free port rather than 8787 and then closed,
    and so are the workers'."""
    import dask
    from distributed import Client, LocalCluster
    from distributed.security import Security

    credentials = Security.temporary()
    with dask.config.set(LOCAL_CLUSTER), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                         security=credentials, dashboard_address=None, worker_dashboard_address=None,
                         scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                         silence_logs=logging.ERROR) as cluster, \
            Client(cluster, security=credentials) as client:
        client.run_on_scheduler(_close_scheduler_http)
        client.run(_close_worker_http)
        yield client


def _close_scheduler_http(dask_scheduler: Any) -> None:
    """Stop the scheduler's HTTP server listening (run in the scheduler, on its event loop)."""
    dask_scheduler.http_server.stop()


def _close_worker_http(dask_worker: Any) -> None:
    """Stop a worker's HTTP server listening (run in the worker, on its event loop)."""
    dask_worker.http_server.stop()


def _quiet_cancellation(record: logging.LogRecord) -> bool:
    """Drop the in-process scheduler's traceback of a task cancelled as the local cluster stops: the progress
    bar's feed sleeps between updates, and a cluster closing within that sleep cancels it, which distributed
    logs as an error. Every other record passes."""
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def run(client: Any, export: Export, bundle: dict[str, bytes], now: datetime, progress: Any = None,
        spill: Path | None = None) -> Result:
    """Evaluate every patient of the export on the client's cluster: the worklist rows."""
    plugin = RulesPlugin(bundle)
    return run_buckets(client, export, [plugin], evaluate_bucket, {"digest": plugin.digest}, now, progress, spill)


def run_buckets(client: Any, export: Export, plugins: list[RulesPlugin], task: Callable[..., dict[str, list[str]]],
                options: dict[str, str], now: datetime, progress: Any = None, spill: Path | None = None) -> Result:
    """Every patient of the export through `task` (a bucket's evaluation in cds/panel/workers.py, given the bucket's
    paths, now_iso, unread, limit and `options`), with the rule engines of `plugins` built on every worker. An
    export's lines are carried to their buckets through a folder made in `spill` (the system's temporary folder by
    default; a folder every worker can read), removed at the end."""
    started = time.perf_counter()
    for plugin in plugins:
        client.register_plugin(plugin)
    workers = len(client.scheduler_info(n_workers=-1)["workers"])
    read: list[Problem] = []
    folder: Path | None = None
    try:
        if export.grouped:
            buckets = [[part.path] for part in export.parts]
        else:
            folder = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX, dir=spill))
            read, buckets = _spill(client, export, folder, output_partitions(export, max(workers, 1)), progress)
        # A type the export has no file for is none recorded (Bulk Data writes no file for an empty type): not
        # unread. A type whose file was refused before reading, lost, not exported, or cut short, unreadable or
        # refused part way (lines of patients no one can name are gone) is could not be read in every row, so
        # that no dose is changed on what is left of it.
        unread = unread_types(export.refused + read, export)
        rows, problems = _evaluate(client, buckets, task, options, now, unread, progress)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    entries = export.refused + read + problems
    listed, not_listed = list_problems([p for p in entries if p.kind != NOT_LISTED],
                                       sum(p.count for p in entries if p.kind == NOT_LISTED))
    notes = [f"{t} could not be read whole (a file was cut short, too large, unreadable, not a regular file or "
             f"lost): every row says so, and no dose is changed on what is left" for t in unread
             if t not in export.unknown]  # those have their own note
    return Result(rows, listed, time.perf_counter() - started, workers, (len(export.parts), len(buckets)), notes,
                  not_listed)


def _spill(client: Any, export: Export, folder: Path, buckets: int,
           progress: Any) -> tuple[list[Problem], list[list[str]]]:
    """Every part's lines written to the buckets of their patients: (the read problems, each bucket's files)."""
    futures = client.map(spill_part, export.parts, range(len(export.parts)), folder=str(folder), buckets=buckets,
                         limit=task_limit(len(export.parts)), pure=False)
    if progress is not None:
        progress(futures, "reading")
    files: list[list[str]] = [[] for _ in range(buckets)]
    problems: list[Problem] = []
    for found, written in client.gather(futures):
        problems.extend(Problem(**entry) for entry in found)
        for bucket, path in written.items():
            files[bucket].append(path)
    return problems, [paths for paths in files if paths]


def unread_types(problems: list[Problem], export: Export | None = None) -> tuple[str, ...]:
    """The resource types of the files that could not be read whole, and those the export left unread (not
    exported, a file lost)."""
    type_of = export.type_of if export is not None else resource_type_of
    found = {t for p in problems if p.kind in FILE_KINDS for t in (type_of(p.file),) if t is not None}
    return tuple(sorted(found | set(export.unread if export is not None else ())))


def _evaluate(client: Any, buckets: list[list[str]], task: Callable[..., dict[str, list[str]]], options: dict[str, str],
              now: datetime, unread: tuple[str, ...], progress: Any) -> tuple[list[dict[str, Any]], list[Problem]]:
    futures = client.map(task, buckets, now_iso=now.isoformat(), unread=",".join(unread),
                         limit=task_limit(len(buckets)), pure=False, **options)
    if progress is not None:
        progress(futures, "evaluating")
    return collect(client.gather(futures))


def collect(outputs: list[dict[str, list[str]]]) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Rows sorted by patient; problems (NOT_LISTED entries among them, standing for those a task only counted)."""
    rows: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for output in outputs:
        for kind, data in zip(output["kind"], output["data"]):
            if kind == "row":
                rows.append(orjson.loads(data))
            else:
                problems.append(Problem(**orjson.loads(data)))
    rows.sort(key=lambda r: r["patient"])
    return rows, problems


def list_problems(problems: list[Problem], not_listed: int) -> tuple[list[Problem], int]:
    """The problems sorted by file and line, every file problem and up to PROBLEMS_LISTED line problems; and the
    count of the rest."""
    log = ProblemLog(PROBLEMS_LISTED)
    for problem in sorted(problems, key=lambda p: (p.file, p.line, p.kind)):
        log.append(problem)
    return log.kept, not_listed + log.unlisted
