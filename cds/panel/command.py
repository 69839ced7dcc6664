"""`pacing-cds worklist EXPORT`: the command around the Dask job (arguments, progress bar, outputs, summary)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cds.clock import parse_now
from cds.logs import escape_controls
from cds.panel import manifest as manifest_file
from cds.panel.source import FILE_KINDS, SPILL_PREFIX, Export, open_regular
from cds.settings import Settings


def progress_bar(console: Any) -> Any:
    """A rich bar fed by the scheduler's count of finished tasks (distributed's text bar, redrawn by rich)."""
    from distributed.diagnostics.progressbar import TextProgressBar
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class RichBar(TextProgressBar):
        def __init__(self, futures: list[Any], what: str, progress: Progress) -> None:
            self.progress, self.task = progress, progress.add_task(what, total=None)
            super().__init__(futures, interval="200ms")

        def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:
            self.progress.update(self.task, total=all, completed=all - remaining)

        def _draw_stop(self, **kwargs: Any) -> None:
            pass

    def follow(futures: list[Any], what: str) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
                   TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            RichBar(futures, what, progress)

    return follow


def tls_misuse(scheduler: str | None, ca_file: str | None, cert: str | None, key: str | None) -> str | None:
    """Why the --tls-* options cannot be used as given, or None."""
    if not (ca_file or cert or key):
        return None
    if not scheduler:
        return "--tls-ca-file, --tls-cert and --tls-key need --scheduler (the local cluster makes its own credentials)"
    if not (ca_file and cert):
        return "--tls-ca-file and --tls-cert go together (and --tls-key, unless the key is in the certificate file)"
    if not scheduler.startswith("tls://"):
        return f"--tls-* options need a tls:// scheduler address, not {scheduler}"
    return None


def remote_credentials(scheduler: str | None, ca_file: str | None, cert: str | None,
                       key: str | None) -> tuple[Any, str | None]:
    """(the client's credentials for `scheduler` (None for the local cluster), why they cannot be used or None)."""
    from cds.panel.job import has_tls_context, remote_security

    misuse = tls_misuse(scheduler, ca_file, cert, key)
    if misuse or not scheduler:
        return None, misuse
    security = remote_security(ca_file, cert, key)
    try:
        usable = has_tls_context(security)
    except (OSError, ValueError) as exc:  # a file missing or unreadable, not PEM, a key that does not match
        return None, f"cannot load the TLS credentials: {exc}"
    if scheduler.startswith("tls://") and not usable:
        return None, (f"--scheduler {scheduler} needs TLS credentials: --tls-ca-file and --tls-cert (and --tls-key), "
                      f"or Dask's distributed.comm.tls configuration")
    return security, None


def refuse(message: str, code: int = 2) -> int:
    """Print why the command stops (control characters escaped: paths and errors may hold any text)."""
    print(f"pacing-cds: {escape_controls(message)}", file=sys.stderr)
    return code


@dataclass(frozen=True)
class BulkArgs:
    """Where the export comes from when the worklist asks a FHIR server for it."""

    fhir_server: str | None
    group: str | None = None
    client_id: str | None = None
    private_key: str | None = None
    key_id: str | None = None
    since: str | None = None  # "auto", an instant, or None for a full export


def bulk_args(args: Any, settings: Settings) -> BulkArgs | None:
    """The export source from the options, else (when no folder is given) from the PACING_CDS_BULK_* settings;
    None for the folder mode."""
    given = (args.fhir_server, args.group, args.client_id, args.private_key, args.key_id, args.since)
    if any(given):
        return BulkArgs(*given)
    if args.export is not None or not settings.bulk_fhir_server:
        return None
    key = str(settings.bulk_private_key) if settings.bulk_private_key else None
    return BulkArgs(settings.bulk_fhir_server, settings.bulk_group, settings.bulk_client_id, key, settings.bulk_key_id,
                    settings.bulk_since)


# A FHIR instant: to the second at least, with its offset (a time without one names no instant).
INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def bulk_misuse(bulk: BulkArgs, export_dir: str | None, production: bool) -> str | None:
    """Why these options cannot be used together, or None."""
    if export_dir is not None:
        return "give a folder or --fhir-server, not both"
    if not bulk.fhir_server:
        return "--group, --client-id, --private-key, --key-id and --since need --fhir-server"
    if bulk.since and bulk.since != "auto" and not INSTANT.fullmatch(bulk.since):
        return f"--since is auto or an instant with its offset (2026-12-01T02:00:00Z), not {bulk.since[:40]!r}"
    if bool(bulk.client_id) != bool(bulk.private_key):
        return "--client-id and --private-key go together (SMART Backend Services)"
    if bulk.key_id and not bulk.client_id:
        return "--key-id needs --client-id"
    parts = urlsplit(bulk.fhir_server)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1") and not production
    if not (parts.scheme == "https" and parts.hostname) and not loopback:
        return f"--fhir-server must be an https URL{'' if production else ' (or http to loopback)'}"
    return None


LOCK = ".worklist.lock"


def hold(out: Path) -> Any:
    """The output folder held for this run (an open lock file; released when the process ends), with what a run
    killed there left behind (its spill folders) removed; None when another run holds it."""
    import fcntl

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = open(out / LOCK, "a")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    for stale in out.glob(f"{SPILL_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    return handle


def fetch_panel(bulk: BulkArgs, out: Path, say: Any) -> tuple[Export | None, str | None]:
    """(the panel as the store holds it after this run's export, with its notes; why it could not be) from the FHIR
    server: a full export rebuilds the store in OUT/store, an incremental one (--since) is merged into it."""
    import httpx
    import pyarrow as pa

    from cds.panel import store
    from cds.panel.bulk import BulkClient, BulkError, run_export
    from cds.panel.manifest import ManifestError
    from cds.panel.smart import TokenError, TokenSource, load_client
    from cds.panel.source import TYPES, discover

    assert bulk.fhir_server is not None
    folder, at = out / "export", out / "store"
    notes: list[str] = []
    try:
        state = store.load(at)
    except store.StoreError as exc:
        state = None
        notes.append(f"the store in {out} could not be used ({exc}): a full export rebuilds it")
    held = state if state is not None and state.serves(bulk.fhir_server, bulk.group) \
        and state.transaction_time else None
    since = None
    if bulk.since == "auto" and held is None:
        notes.append("no store of a complete earlier run of this server and Group in --out: a full export")
    elif bulk.since == "auto" and held is not None:
        since = held.transaction_time
    elif bulk.since:
        if held is None:
            return None, (f"--since {bulk.since} merges into the store of an earlier full run of this server and "
                              f"Group in {out}, and there is none: run once without --since")
        since = bulk.since
    try:
        with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=False) as http:
            tokens = None
            if bulk.client_id and bulk.private_key:
                client = load_client(bulk.client_id, Path(bulk.private_key), bulk.key_id)
                tokens = TokenSource(http, bulk.fhir_server, client, TYPES)
                tokens.discover()
            notes += run_export(BulkClient(http, bulk.fhir_server, tokens, say), folder, bulk.group, TYPES, since)
    except (BulkError, TokenError, ManifestError) as exc:
        return None, f"the export from {bulk.fhir_server} failed: {exc}"
    export = discover(folder)
    written = manifest_file.read(folder, open_regular)
    transaction_time = written.transaction_time if written is not None else None
    try:
        if since is None or held is None:
            problems = store.rebuild(at, export, bulk.fhir_server, bulk.group, list(TYPES), transaction_time)
            notes.append(f"full export (transactionTime {transaction_time}): the panel's store rebuilt from it")
        else:
            problems, resources, patients = store.merge(at, export, held, transaction_time)
            notes.append(f"incremental export of what changed since {since} (transactionTime {transaction_time}): "
                         f"{resources} resources of {patients} patients merged into the panel's store")
        state = store.load(at)
        assert state is not None
        panel = store.as_export(at, state, export.refused + problems, export.file_types, notes)
    except (OSError, store.StoreError, pa.ArrowException) as exc:
        return None, f"the panel's store in {at} could not be written or read ({error_words(exc)}): {REBUILD}"
    if any(p.kind in FILE_KINDS for p in problems + export.refused):
        notes.append(f"part of the export was lost: the next --since auto run asks again from "
                     f"{since or 'the start (a full export)'}")
    return panel, None


REBUILD = "run without --since to rebuild it from a full export"


def error_words(exc: BaseException) -> str:
    """An error in a few words: an OSError's own words, else the first line of the message, shortened."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return (text.splitlines() or [type(exc).__name__])[0][:160]


def worklist(settings: Settings, export_dir: str | None, out_dir: str, now_arg: str | None, scheduler: str | None,
             workers: int | None, *, tls_ca_file: str | None = None, tls_cert: str | None = None,
             tls_key: str | None = None, bulk: BulkArgs | None = None) -> int:
    """Evaluate the export, write the outputs, print the summary; 2 on unusable arguments, 1 if the run fails."""
    import pyarrow as pa
    from distributed import KilledWorker
    from rich.console import Console

    from cds.panel.job import dask_client, run
    from cds.panel.report import now_text, summary, write_outputs
    from cds.panel.source import discover
    from cds.panel.store import NotSorted
    from cds.panel.workers import rule_bundle
    from cds.startup import check_rules

    console = Console(stderr=True)
    try:
        now = parse_now(now_arg, settings)
    except ValueError:
        return refuse(f"--now {now_arg!r} is not a date (YYYY-MM-DD) or date-time")
    security, unusable = remote_credentials(scheduler, tls_ca_file, tls_cert, tls_key)
    if unusable:
        return refuse(unusable)
    if bulk is not None:
        misuse = bulk_misuse(bulk, export_dir, settings.env == "production")
        if misuse:
            return refuse(misuse)
        try:
            lock = hold(Path(out_dir))
        except OSError as exc:
            return refuse(f"cannot use the output folder {out_dir}: {exc.strerror or exc}", 1)
        if lock is None:
            return refuse(f"another pacing-cds worklist run is using {out_dir} (its store and export): this one "
                          f"stops", 1)
        got, failed = fetch_panel(bulk, Path(out_dir), lambda text: console.print(
            escape_controls(text), markup=False, highlight=False))
        if got is None:
            return refuse(failed or "the export failed", 1)
        export, folder = got, Path(out_dir) / "store"
    elif export_dir is None:
        return refuse("give a folder of Bulk Data NDJSON files, or --fhir-server")
    else:
        folder = Path(export_dir)
        if not folder.is_dir():
            return refuse(f"{export_dir} is not a folder of Bulk Data NDJSON files")
        export = discover(folder)
    if not export.parts and bulk is not None:
        return refuse(f"the export from {bulk.fhir_server} holds no resources the worklist reads", 1)
    if not export.parts:
        refused = ", ".join(p.file for p in export.refused)
        return refuse(f"{export_dir} holds no .ndjson or .ndjson.gz files"
                      + (f" that are regular files (not read: {refused})" if refused else ""))
    knowledge = check_rules(settings)
    if knowledge is None:
        return 2
    notes = export.notes + [f"no {t} file in the export: none recorded for any patient (an empty type has "
                                      f"no file in Bulk Data)" for t in export.missing_types]
    out = Path(out_dir)
    made = not out.exists()
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)  # the spill folder goes in it
    except OSError as exc:
        return refuse(f"cannot make the output folder {out_dir}: {exc.strerror or exc}", 1)
    try:
        with dask_client(scheduler, workers or os.cpu_count() or 1, security) as client:
            result = run(client, export, rule_bundle(settings.rules_path), now, progress_bar(console), out)
    except (pa.ArrowException, NotSorted) as exc:  # a bucket of the store damaged since this run read it
        return refuse(f"the panel's store could not be read ({error_words(exc)}): {REBUILD}", 1)
    except (OSError, KilledWorker) as exc:
        if made:  # a run that wrote nothing leaves no folder behind
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(exc, KilledWorker):  # a task took its worker down more than once (out of memory, most often)
            return refuse(f"the worklist stopped: {exc}", 1)
        # the scheduler cannot be reached (distributed raises OSError subclasses)
        return refuse(f"cannot reach the Dask scheduler {scheduler}: {exc}", 1)
    meta = {"now": now_text(now), "version": knowledge.version, "export": str(folder),
            "needs_action": list(knowledge.info.needs_action),
            "generated": now_text(datetime.now(UTC).replace(microsecond=0)), "notes": notes + result.notes,
            "seconds": result.seconds, "workers": result.workers, "partitions": result.partitions,
            "not_listed": result.not_listed}
    files = write_outputs(Path(out_dir), result.rows, result.problems, meta)
    summary(console, result.rows, result.problems, meta, files)
    return 0
