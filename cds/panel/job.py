"""The worklist as a Dask job: partitioned reading, a shuffle by patient, evaluation per output partition.

No process holds the export: each read task holds one partition, the shuffle moves lines to the partition of
their patient (hashing), and each evaluation task holds one output partition. The client receives only the
rows (one per patient) and the problems (a bounded number of them, and a count of the rest).

The local cluster admits no one but its own client: every connection (client, scheduler, workers, nannies) is
mutual TLS with credentials made for the run and held in memory, and none of its processes serves HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa

from cds.panel.source import (
    FILE_KINDS,
    NOT_LISTED,
    PROBLEMS_LISTED,
    Export,
    Part,
    Problem,
    ProblemLog,
    read_part,
    resource_type_of,
    task_limit,
)
from cds.panel.workers import OUTPUT_META, RulesPlugin, evaluate_partition

READ_META = {"patient": "str", "file": "str", "line": "int64", "resource": "str"}
OUTPUT_PARTITION_BYTES = 48 * 1024 * 1024  # raw NDJSON per evaluation task: what bounds a worker's memory
# Every HTTP route of the local cluster's scheduler and workers (health, metrics, JSON state, info pages, the
# proxy): none is needed to run the job, and each would answer any local process.
NO_HTTP_ROUTES: dict[str, list[str]] = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}


@dataclass
class Result:
    """What the job gives back: rows, problems, and how it ran."""

    rows: list[dict[str, Any]]
    problems: list[Problem]
    seconds: float
    workers: int
    partitions: tuple[int, int]  # read partitions, shuffle output partitions
    notes: list[str] = field(default_factory=list)
    not_listed: int = 0  # problems counted past the PROBLEMS_LISTED listed


ARROW_TYPES = {"str": pa.string(), "int64": pa.int64()}
PANDAS_STRING = pd.StringDtype("pyarrow", na_value=float("nan"))  # what dtype "str" is: Arrow-backed strings


def read_frame(part: Part, limit: int = PROBLEMS_LISTED) -> pd.DataFrame:
    """The part's lines as a frame of READ_META's columns. Built as an Arrow table first: building the Arrow
    strings directly took half the time of pandas' conversion of the same lists (0.06 s against 0.14 s for a
    32 MB part). A bucket of the store is read as it is (Parquet)."""
    if part.path.endswith(".parquet"):  # a bucket of the store
        from cds.panel.store import read_bucket

        return read_bucket(part.path).to_pandas(types_mapper={pa.string(): PANDAS_STRING}.get)
    columns = read_part(part, limit)
    table = pa.table({name: pa.array(columns[name], ARROW_TYPES[dtype]) for name, dtype in READ_META.items()})
    return table.to_pandas(types_mapper={pa.string(): PANDAS_STRING}.get)


def _empty(meta: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in meta.items()})


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
    with dask.config.set(NO_HTTP_ROUTES), \
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


def run(client: Any, export: Export, bundle: dict[str, bytes], now: datetime, progress: Any = None) -> Result:
    """Evaluate every patient of the export on the client's cluster."""
    started = time.perf_counter()
    plugin = RulesPlugin(bundle)
    client.register_plugin(plugin)
    workers = len(client.scheduler_info(n_workers=-1)["workers"])
    n_out = len(export.parts) if export.grouped else output_partitions(export, max(workers, 1))
    # A type the export has no file for is none recorded (Bulk Data writes no file for an empty type): not unread.
    # A type with a file refused before reading (not a regular file), lost, or not exported is unread from the start.
    refused = unread_types(export.refused, export)
    rows, problems, not_listed = _evaluate(client, export, plugin, now, n_out, refused, progress)
    broken = unread_types(problems, export)
    if broken != refused:
        # A file cut short, unreadable or refused part way lost lines of patients no one can name: every patient is
        # evaluated again with that type as could not be read, so that no dose is changed on what is left of it.
        rows, problems, not_listed = _evaluate(client, export, plugin, now, n_out, broken, None)
    notes = [f"{t} could not be read whole (a file was cut short, too large, unreadable, not a regular file or "
             f"lost): every row says so, and no dose is changed on what is left" for t in broken
             if t not in export.unknown]  # those have their own note
    return Result(rows, problems, time.perf_counter() - started, workers, (len(export.parts), n_out), notes,
                  not_listed)


def unread_types(problems: list[Problem], export: Export | None = None) -> tuple[str, ...]:
    """The resource types of the files that could not be read whole, and those the export left unread (not
    exported, a file lost)."""
    type_of = export.type_of if export is not None else resource_type_of
    found = {t for p in problems if p.kind in FILE_KINDS for t in (type_of(p.file),) if t is not None}
    return tuple(sorted(found | set(export.unread if export is not None else ())))


def _evaluate(client: Any, export: Export, plugin: RulesPlugin, now: datetime, n_out: int, unread: tuple[str, ...],
              progress: Any) -> tuple[list[dict[str, Any]], list[Problem], int]:
    import dask.dataframe as dd

    frame = dd.from_map(read_frame, export.parts, args=(task_limit(len(export.parts)),), meta=_empty(READ_META),
                        enforce_metadata=False)
    # The store's buckets hold whole patients already; an export's files are moved to the partition of each patient.
    shuffled = frame if export.grouped else frame.shuffle("patient", npartitions=n_out)
    evaluated = shuffled.map_partitions(evaluate_partition, now.isoformat(), plugin.digest, ",".join(unread),
                                        task_limit(n_out), meta=_empty(OUTPUT_META), enforce_metadata=False)
    future = client.compute(evaluated)
    if progress is not None:
        progress(future)
    rows, problems, not_listed = collect(future.result())
    return rows, *list_problems(export.refused + problems, not_listed)


def collect(output: pd.DataFrame) -> tuple[list[dict[str, Any]], list[Problem], int]:
    """Rows sorted by patient; problems; the count of the problems the tasks did not list."""
    rows = [orjson.loads(d) for d in output.loc[output["kind"] == "row", "data"]]
    entries = [Problem(**orjson.loads(d)) for d in output.loc[output["kind"] == "problem", "data"]]
    rows.sort(key=lambda r: r["patient"])
    return rows, [p for p in entries if p.kind != NOT_LISTED], sum(p.count for p in entries if p.kind == NOT_LISTED)


def list_problems(problems: list[Problem], not_listed: int) -> tuple[list[Problem], int]:
    """The problems sorted by file and line, every file problem and up to PROBLEMS_LISTED line problems; and the
    count of the rest."""
    log = ProblemLog(PROBLEMS_LISTED)
    for problem in sorted(problems, key=lambda p: (p.file, p.line, p.kind)):
        log.append(problem)
    return log.kept, not_listed + log.unlisted
