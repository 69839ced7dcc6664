"""A Bulk Data `$export` client (HL7 Bulk Data Access IG): kick-off, status polling, download, cancel.

The export of a Group (a clinician's panel), else of every Patient, is asked for with `Prefer: respond-async` and
`_type` = the resource types the service reads. The status URL is polled honouring `Retry-After` (and showing
`X-Progress`), with a capped backoff when the server gives none. The files are streamed to disk, a few at a time,
each under a `.part` name until it is whole, beside the status response saved as `manifest.json`, which is what
the folder mode of the worklist reads. The job's status URL is kept in `bulk-state.json` as soon as it is known, so
that a run killed at any point continues the same job when run again (a file already whole is not fetched again);
when the server no longer has the job, a new one starts. On failure or Ctrl-C the job is deleted.

The access token goes only to the FHIR server's own origin: a file on another origin is fetched without it, and
the run's notes say so. No token appears in a log, a note or an error.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from cds.panel import manifest as manifest_file
from cds.panel.smart import TokenError, TokenSource, same_origin
from cds.panel.store import write_private

STATE = "bulk-state.json"
POLL_FIRST_S, POLL_MAX_S = 1.0, 120.0  # backoff when the server gives no Retry-After: doubling, capped
RETRY_AFTER_MAX_S = 600.0  # a Retry-After past this is taken as this
TRANSIENT = {429, 500, 502, 503, 504}
MAX_TRANSIENT = 10  # answers in a row that say "later" without being 202 before the export is taken as failed
DOWNLOADS = 4  # files fetched at once
CHUNK = 1024 * 1024
MAX_STATUS_BYTES = manifest_file.MAX_BYTES


class BulkError(Exception):
    """The export could not be completed; the message says why (never a token)."""


@dataclass
class Job:
    """One export as the client follows it."""

    status_url: str
    started: float


def kick_off_url(base: str, group: str | None, types: Iterable[str], since: str | None = None) -> str:
    """The $export URL: of the Group, else of every Patient, with _type (and _since)."""
    params = {"_type": ",".join(types), **({"_since": since} if since else {})}
    where = f"Group/{group}" if group else "Patient"
    return f"{base.rstrip('/')}/{where}/$export?{urlencode(params, safe=',')}"


class BulkClient:
    """Runs one export into a folder; `tokens` is None for a server that needs no authorisation."""

    def __init__(self, http: httpx.Client, base: str, tokens: TokenSource | None,
                 say: Callable[[str], None] = lambda _text: None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.http, self.base, self.tokens, self.say, self.sleep = http, base.rstrip("/"), tokens, say, sleep

    # ------------------------------------------------------------ HTTP with the token where it may go

    def _headers(self, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.tokens is not None and same_origin(url, self.base):
            headers["Authorization"] = f"Bearer {self.tokens.token()}"
        return headers

    def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """One request; after a 401 the token is renewed and the request sent once more."""
        try:
            response = self.http.request(method, url, headers=self._headers(url, headers))
            if response.status_code == 401 and self.tokens is not None and same_origin(url, self.base):
                self.tokens.invalidate()
                response = self.http.request(method, url, headers=self._headers(url, headers))
        except httpx.HTTPError as exc:
            raise BulkError(f"{method} {_short(url)}: {type(exc).__name__}") from exc
        except TokenError as exc:
            raise BulkError(f"no access token: {exc}") from exc
        return response

    # ------------------------------------------------------------ the job

    def start(self, group: str | None, types: Iterable[str], since: str | None = None) -> Job:
        """Kick-off: 202 and a Content-Location to poll."""
        url = kick_off_url(self.base, group, types, since)
        response = self.request("GET", url, {"Accept": "application/fhir+json", "Prefer": "respond-async"})
        if response.status_code != 202:
            raise BulkError(f"the export was not started: {response.status_code}{_outcome_text(response)}")
        location = response.headers.get("Content-Location")
        if not location:
            raise BulkError("the export started without a Content-Location to poll")
        return Job(str(httpx.URL(url).join(location)), time.time())

    def wait(self, job: Job, deadline_s: float = 24 * 3600) -> dict[str, Any]:
        """Poll until the status response; the server's Retry-After, else a doubling wait capped at POLL_MAX_S."""
        backoff = POLL_FIRST_S
        ends = time.monotonic() + deadline_s
        refusals = 0
        while time.monotonic() < ends:
            response = self.request("GET", job.status_url, {"Accept": "application/json"})
            if response.status_code == 200:
                return _status_document(response)
            refusals = refusals + 1 if response.status_code in TRANSIENT else 0
            if refusals > MAX_TRANSIENT:
                raise BulkError(f"the export's status answered {response.status_code} {refusals} times in a row")
            if response.status_code == 202 or response.status_code in TRANSIENT:
                progress = response.headers.get("X-Progress")
                if progress:
                    self.say(f"export in progress: {progress[:100]}")
                wait = _retry_after(response.headers.get("Retry-After"))
                self.sleep(wait if wait is not None else backoff)
                backoff = min(backoff * 2, POLL_MAX_S)
                continue
            if response.status_code in (404, 410):
                raise JobGone(f"the server no longer has the export ({response.status_code})")
            raise BulkError(f"the export failed: {response.status_code}{_outcome_text(response)}")
        raise BulkError(f"the export did not finish within {deadline_s:g} s")

    def cancel(self, job: Job) -> str | None:
        """DELETE the job (done, failed or Ctrl-C), best effort: None when deleted, else why not."""
        try:
            response = self.request("DELETE", job.status_url)
        except BulkError as exc:
            return str(exc)
        return None if response.status_code in (200, 202, 204, 404) else f"answered {response.status_code}"

    def download(self, status: dict[str, Any], folder: Path) -> list[str]:
        """Every output and error file into `folder`, then the status as manifest.json; the notes to report."""
        manifest_file.parse(orjson.dumps(status))  # the shape and the file names, before anything is fetched
        urls = {entry["url"]: manifest_file.file_name(entry["url"], key)
                for key in ("output", "error") for entry in status.get(key) or []}
        if len(set(urls.values())) < len(urls):
            raise BulkError("two files of the export have the same name")
        elsewhere = [u for u in urls if not same_origin(u, self.base)]
        done, lock = [0, 0], threading.Lock()

        def fetch(item: tuple[str, str]) -> None:
            self._fetch(item[0], folder / item[1])
            with lock:
                done[0] += 1
                done[1] += (folder / item[1]).stat().st_size
                self.say(f"downloaded {done[0]} of {len(urls)} files ({done[1] / 1e6:,.1f} MB)")

        with ThreadPoolExecutor(DOWNLOADS, thread_name_prefix="bulk") as pool:
            list(pool.map(fetch, urls.items()))
        write_private(folder / manifest_file.NAME, orjson.dumps(status, option=orjson.OPT_INDENT_2))
        return [f"{len(elsewhere)} file(s) on another origin than the FHIR server were fetched without the access "
                "token"] if elsewhere else []

    def _fetch(self, url: str, path: Path) -> None:
        """One file, streamed to `path.part` and renamed once whole; a file already whole is kept. A 401 renews the
        token once; a 429 or 5xx is tried again after the server's Retry-After (else a doubling wait), up to
        MAX_TRANSIENT times."""
        if path.exists():
            return
        renewed, backoff = False, POLL_FIRST_S
        for _ in range(MAX_TRANSIENT + 1):
            try:
                later = self._stream(url, path)
            except _Retry:
                if renewed:
                    raise BulkError(f"file {path.name} answered 401 with a new token") from None
                renewed = True
                continue
            except httpx.HTTPError as exc:
                raise BulkError(f"file {path.name}: {type(exc).__name__}") from exc
            except TokenError as exc:
                raise BulkError(f"no access token: {exc}") from exc
            if later is None:
                return
            self.sleep(later if later > 0 else backoff)
            backoff = min(backoff * 2, POLL_MAX_S)
        raise BulkError(f"file {path.name} was refused {MAX_TRANSIENT + 1} times in a row (the server is busy)")

    def _stream(self, url: str, path: Path) -> float | None:
        """Fetch the file once: None when it is whole on disk, else the wait before trying again (0: no
        Retry-After)."""
        partial = path.with_name(path.name + ".part")
        headers = self._headers(url, {"Accept": "application/fhir+ndjson"})
        with self.http.stream("GET", url, headers=headers) as response:
            if response.status_code == 401 and self.tokens is not None and same_origin(url, self.base):
                self.tokens.invalidate()
                raise _Retry
            if response.status_code in TRANSIENT:
                return _retry_after(response.headers.get("Retry-After")) or 0.0
            if response.status_code != 200:
                raise BulkError(f"file {path.name} answered {response.status_code}")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
        os.replace(partial, path)
        return None


class JobGone(BulkError):
    """The server no longer has the job (404 or 410): a new one is started."""


class _Retry(Exception):
    """A file download met a 401: the token was renewed, the file is fetched once more."""


def run_export(client: BulkClient, folder: Path, group: str | None, types: Iterable[str],
               since: str | None = None) -> list[str]:
    """The export into `folder`, continuing the job of `bulk-state.json` when the server still has it; the notes."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    types = tuple(types)
    state = folder / STATE
    job = _saved_job(state)
    notes: list[str] = []
    try:
        if job is not None:
            try:
                status = client.wait(job)
                notes.append("continued the export started earlier")
            except JobGone:
                notes.append("the export started earlier is gone from the server: a new one was started")
                job = None
        if job is None:
            _clear(folder)  # an earlier export's files are not this one's
            job = client.start(group, types, since)
            write_private(state, orjson.dumps({"status_url": job.status_url, "started": job.started}))
            status = client.wait(job)
        notes.extend(client.download(status, folder))
    except KeyboardInterrupt:
        if job is not None:
            client.cancel(job)
        state.unlink(missing_ok=True)
        raise
    except (BulkError, manifest_file.ManifestError) as exc:
        kept = client.cancel(job) if job is not None else None
        state.unlink(missing_ok=True)
        raise BulkError(f"{exc}" + (f"; the job could not be deleted on the server ({kept})" if kept else "")) \
            from exc
    kept = client.cancel(job)  # done: the server may delete its files
    state.unlink(missing_ok=True)
    if kept:
        notes.append(f"the finished job could not be deleted on the server ({kept}): it keeps its files until it "
                     f"expires them")
    return notes


def _clear(folder: Path) -> None:
    """Remove an earlier export's files (NDJSON, partial downloads, its manifest) from the folder."""
    for path in folder.iterdir():
        if path.name == manifest_file.NAME or path.name.endswith((".ndjson", ".ndjson.gz", ".part")):
            path.unlink(missing_ok=True)


def _saved_job(state: Path) -> Job | None:
    try:
        saved = orjson.loads(state.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    url = saved.get("status_url") if isinstance(saved, dict) else None
    return Job(url, float(saved.get("started") or 0)) if isinstance(url, str) else None


def _status_document(response: httpx.Response) -> dict[str, Any]:
    if len(response.content) > MAX_STATUS_BYTES:
        raise BulkError("the status response is larger than a manifest may be")
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise BulkError("the status response is not JSON") from exc
    if not isinstance(document, dict):
        raise BulkError("the status response is not a JSON object")
    return document


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is taken as the cap), within [0.1, RETRY_AFTER_MAX_S]."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return RETRY_AFTER_MAX_S if value.strip() else None
    return min(max(seconds, 0.1), RETRY_AFTER_MAX_S) if seconds == seconds else None


def _outcome_text(response: httpx.Response) -> str:
    """The first issue's text of an OperationOutcome answer, shortened; nothing else of the body."""
    try:
        body = response.json()
        issue = (body.get("issue") or [{}])[0]
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
    return f" ({str(text)[:200]})" if text else ""


def _short(url: str) -> str:
    """A URL for a message: without its query (which may name what was asked for) and at most 120 characters."""
    return url.split("?", 1)[0][:120]
