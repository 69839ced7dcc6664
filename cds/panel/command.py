"""`pacing-cds worklist EXPORT`: the command around the Dask job (arguments, progress bar, outputs, summary)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cds import escape_controls
from cds.settings import Settings


def parse_now(text: str | None, settings: Settings) -> datetime:
    """--now as a date or date-time (a date means the end of that day's morning clinic, 09:00 UTC)."""
    if text is None:
        return settings.now or datetime.now(UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if len(text) == 10:
        parsed = parsed.replace(hour=9)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _progress_bar(console: Any) -> Any:
    """A rich bar fed by the scheduler's count of finished tasks (distributed's text bar, redrawn by rich)."""
    from distributed.diagnostics.progressbar import TextProgressBar
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class RichBar(TextProgressBar):
        def __init__(self, future: Any, progress: Progress) -> None:
            self.progress, self.task = progress, progress.add_task("reading, shuffling, evaluating", total=None)
            super().__init__([future], interval="200ms")

        def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:
            self.progress.update(self.task, total=all, completed=all - remaining)

        def _draw_stop(self, **kwargs: Any) -> None:
            pass

    def follow(future: Any) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
                   TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            RichBar(future, progress)

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


def bulk_args(args: Any, settings: Settings) -> BulkArgs | None:
    """The export source from the options, else (when no folder is given) from the PACING_CDS_BULK_* settings;
    None for the folder mode."""
    given = (args.fhir_server, args.group, args.client_id, args.private_key, args.key_id)
    if any(given):
        return BulkArgs(*given)
    if args.export is not None or not settings.bulk_fhir_server:
        return None
    key = str(settings.bulk_private_key) if settings.bulk_private_key else None
    return BulkArgs(settings.bulk_fhir_server, settings.bulk_group, settings.bulk_client_id, key, settings.bulk_key_id)


def bulk_misuse(bulk: BulkArgs, export_dir: str | None, production: bool) -> str | None:
    """Why these options cannot be used together, or None."""
    if export_dir is not None:
        return "give a folder or --fhir-server, not both"
    if not bulk.fhir_server:
        return "--group, --client-id, --private-key and --key-id need --fhir-server"
    if bool(bulk.client_id) != bool(bulk.private_key):
        return "--client-id and --private-key go together (SMART Backend Services)"
    if bulk.key_id and not bulk.client_id:
        return "--key-id needs --client-id"
    parts = urlsplit(bulk.fhir_server)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1") and not production
    if not (parts.scheme == "https" and parts.hostname) and not loopback:
        return f"--fhir-server must be an https URL{'' if production else ' (or http to loopback)'}"
    return None


def fetch_export(bulk: BulkArgs, out: Path, say: Any) -> tuple[Path | None, list[str], str | None]:
    """(the folder the export was written to, notes, why it could not be) from the FHIR server."""
    import httpx

    from cds.panel.bulk import BulkClient, BulkError, run_export
    from cds.panel.manifest import ManifestError
    from cds.panel.smart import TokenError, TokenSource, load_client
    from cds.panel.source import TYPES

    assert bulk.fhir_server is not None
    folder = out / "export"
    try:
        with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=False) as http:
            tokens = None
            if bulk.client_id and bulk.private_key:
                client = load_client(bulk.client_id, Path(bulk.private_key), bulk.key_id)
                tokens = TokenSource(http, bulk.fhir_server, client, TYPES)
                tokens.discover()
            notes = run_export(BulkClient(http, bulk.fhir_server, tokens, say), folder, bulk.group, TYPES)
    except (BulkError, TokenError, ManifestError) as exc:
        return None, [], f"the export from {bulk.fhir_server} failed: {exc}"
    return folder, notes, None


def worklist(settings: Settings, export_dir: str | None, out_dir: str, now_arg: str | None, scheduler: str | None,
             workers: int | None, *, tls_ca_file: str | None = None, tls_cert: str | None = None,
             tls_key: str | None = None, bulk: BulkArgs | None = None) -> int:
    """Evaluate the export, write the outputs, print the summary; 2 on unusable arguments, 1 if the run fails."""
    from distributed import KilledWorker
    from rich.console import Console

    from cds.cli import check_rules
    from cds.panel.job import dask_client, run
    from cds.panel.report import now_text, summary, write_outputs
    from cds.panel.source import discover
    from cds.panel.workers import rule_bundle

    console = Console(stderr=True)
    try:
        now = parse_now(now_arg, settings)
    except ValueError:
        return refuse(f"--now {now_arg!r} is not a date (YYYY-MM-DD) or date-time")
    security, unusable = remote_credentials(scheduler, tls_ca_file, tls_cert, tls_key)
    if unusable:
        return refuse(unusable)
    fetched: list[str] = []
    if bulk is not None:
        misuse = bulk_misuse(bulk, export_dir, settings.env == "production")
        if misuse:
            return refuse(misuse)
        got, fetched, failed = fetch_export(bulk, Path(out_dir), lambda text: console.print(
            escape_controls(text), markup=False, highlight=False))
        if got is None:
            return refuse(failed or "the export failed", 1)
        export_dir = str(got)
    if export_dir is None:
        return refuse("give a folder of Bulk Data NDJSON files, or --fhir-server")
    folder = Path(export_dir)
    if not folder.is_dir():
        return refuse(f"{export_dir} is not a folder of Bulk Data NDJSON files")
    export = discover(folder)
    if not export.parts:
        refused = ", ".join(p.file for p in export.refused)
        return refuse(f"{export_dir} holds no .ndjson or .ndjson.gz files"
                      + (f" that are regular files (not read: {refused})" if refused else ""))
    knowledge = check_rules(settings)
    if knowledge is None:
        return 2
    notes = fetched + export.notes + [f"no {t} file in the export: none recorded for any patient (an empty type has "
                                      f"no file in Bulk Data)" for t in export.missing_types]
    try:
        with dask_client(scheduler, workers or os.cpu_count() or 1, security) as client:
            result = run(client, export, rule_bundle(settings.rules_path), now, _progress_bar(console))
    except OSError as exc:  # the scheduler cannot be reached (distributed raises OSError subclasses)
        return refuse(f"cannot reach the Dask scheduler {scheduler}: {exc}", 1)
    except KilledWorker as exc:  # a task took its worker down more than once (out of memory, most often)
        return refuse(f"the worklist stopped: {exc}", 1)
    meta = {"now": now_text(now), "version": knowledge.version, "export": str(folder),
            "needs_action": list(knowledge.info.needs_action),
            "generated": now_text(datetime.now(UTC).replace(microsecond=0)), "notes": notes + result.notes,
            "seconds": result.seconds, "workers": result.workers, "partitions": result.partitions,
            "not_listed": result.not_listed}
    files = write_outputs(Path(out_dir), result.rows, result.problems, meta)
    summary(console, result.rows, result.problems, meta, files)
    return 0
