"""FHIR REST client for prefetch fallback: parallel queries, bounded in time, bytes, entries and pages.

Every call has a budget: one deadline that stops the reads themselves (not only the wait for them), a most
number of bytes over all its responses and a most number of Bundle entries. Answers are streamed, so a huge
body is cut off at the cap instead of being held in memory, and a server dripping bytes is left at the deadline.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import httpx

from cds import metrics


class FetchFailure(Exception):
    """A FHIR query that gave no usable answer; the message is safe to show (no token, no data)."""


class StoppedAtDeadline(FetchFailure):
    """A read given up because the call's deadline passed."""


class DeadlineExceeded(Exception):
    """The request's deadline passed while FHIR queries were still running; names the keys still pending."""


def _answered(future: Future[Any]) -> bool:
    """The query ran to its end (its resource, or a failure other than the deadline's)."""
    return future.done() and not future.cancelled() and not isinstance(future.exception(), StoppedAtDeadline)


@dataclass
class Fetched:
    """The answer to one query: the resource (pages merged for a search) and notes on how paging ended."""

    resource: dict[str, Any]
    pages: int = 1
    notes: list[str] = field(default_factory=list)


class Budget:
    """What one call may still spend on FHIR servers; shared by its fetch threads."""

    def __init__(self, deadline: float | None, max_bytes: int, max_entries: int) -> None:
        self.deadline = deadline
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.bytes = self.entries = 0
        self.cancelled = False
        self._lock = threading.Lock()

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> None:
        """FetchFailure once the call is over (deadline passed, or given up by the caller)."""
        left = self.remaining()
        if self.cancelled or (left is not None and left <= 0):
            raise StoppedAtDeadline("stopped at the request deadline")

    def spend_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes += count
            if self.bytes > self.max_bytes:
                raise FetchFailure(f"FHIR answers larger than the limit of {self.max_bytes} bytes")

    def take_entries(self, wanted: int) -> int:
        """How many of `wanted` entries still fit in the call's entry cap."""
        with self._lock:
            granted = max(0, min(wanted, self.max_entries - self.entries))
            self.entries += granted
            return granted


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


class FhirClient:
    """One per application: a pooled HTTP client and a small thread pool shared by all requests."""

    def __init__(self, timeout_s: float, max_pages: int, max_workers: int = 32, max_bytes: int = 16 * 1024 * 1024,
                 max_entries: int = 10000) -> None:
        self.timeout_s = timeout_s
        self.max_pages = max_pages
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            # Compressed answers could expand far past the byte cap inside one chunk: ask for none.
            headers={"Accept": "application/fhir+json, application/json;q=0.9", "Accept-Encoding": "identity"},
            trust_env=False,
        )
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fhir-fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def fetch_all(self, server: str, token: str | None, queries: dict[str, tuple[str, dict[str, Any] | None]],
                  deadline: float | None = None, allowed: Callable[[str], bool] | None = None
                  ) -> dict[str, Fetched | FetchFailure]:
        """Run every query in parallel. A query is (relative or next URL, first page already held or None).
        `deadline` (time.monotonic()) bounds the whole: past it the reads stop and DeadlineExceeded names what
        was pending. `allowed` vets every URL before a connection is opened."""
        budget = Budget(deadline, self.max_bytes, self.max_entries)
        futures = {key: self._pool.submit(self._fetch, server, token, url, first, budget, allowed)
                   for key, (url, first) in queries.items()}
        results: dict[str, Fetched | FetchFailure] = {}
        for key, future in futures.items():
            remaining = budget.remaining()
            try:
                results[key] = future.result(timeout=None if remaining is None else max(0.0, remaining))
            except FetchFailure as failure:
                results[key] = failure
            except FutureTimeout as exc:
                budget.cancelled = True  # the running reads stop at their next chunk
                # Every key without an answer: a read that stopped at the deadline before or as this wait timed
                # out is done, but no less late.
                pending = sorted(k for k, f in futures.items()
                                 if isinstance(results.get(k), StoppedAtDeadline)
                                 or (k not in results and not _answered(f)))
                for waiting in futures.values():
                    waiting.cancel()
                raise DeadlineExceeded(", ".join(pending)) from exc
        late = sorted(k for k, r in results.items() if isinstance(r, StoppedAtDeadline))
        if late:
            raise DeadlineExceeded(", ".join(late))
        return results

    def _fetch(self, server: str, token: str | None, url: str, first: dict[str, Any] | None, budget: Budget,
               allowed: Callable[[str], bool] | None) -> Fetched:
        base = server.rstrip("/") + "/"
        if first is None:
            target = url if url.startswith(base) else base + url.lstrip("/")
            fetched = Fetched(self._get(token, target, budget, allowed))
            self._cap_entries(fetched, fetched.resource, budget)
        else:
            fetched = Fetched(first, pages=1)
        bundle = fetched.resource
        if bundle.get("resourceType") != "Bundle":
            return fetched
        while (link := next_link(bundle)) is not None:
            if fetched.pages >= self.max_pages:
                fetched.notes.append(f"stopped after {self.max_pages} pages")
                break
            if not link.startswith(base) or (allowed is not None and not allowed(link)):
                # The token must not travel to any other host than the request's fhirServer.
                fetched.notes.append("next link points outside fhirServer; not followed")
                break
            if budget.entries >= budget.max_entries:
                fetched.notes.append(f"stopped at {budget.max_entries} entries")
                break
            page = self._get(token, link, budget, allowed)
            if page.get("resourceType") != "Bundle":
                raise FetchFailure(f"page {fetched.pages + 1} of a search is not a Bundle")
            self._cap_entries(fetched, page, budget)
            if page is not fetched.resource:
                fetched.resource.setdefault("entry", []).extend(page.get("entry") or [])
            fetched.pages += 1
            bundle = page
        if fetched.pages > 1 or first is not None:
            fetched.resource["link"] = [lk for lk in fetched.resource.get("link") or []
                                        if isinstance(lk, dict) and lk.get("relation") != "next"]
        return fetched

    @staticmethod
    def _cap_entries(fetched: Fetched, page: dict[str, Any], budget: Budget) -> None:
        entries = page.get("entry")
        if page.get("resourceType") != "Bundle" or not isinstance(entries, list):
            return
        granted = budget.take_entries(len(entries))
        if granted < len(entries):
            page["entry"] = entries[:granted]
            page["link"] = []  # nothing more is read for this call
            fetched.notes.append(f"stopped at {budget.max_entries} entries")

    @metrics.timed_fhir_request
    def _get(self, token: str | None, url: str, budget: Budget,
             allowed: Callable[[str], bool] | None) -> dict[str, Any]:
        if allowed is not None and not allowed(url):
            raise FetchFailure("not an allowed FHIR server")
        budget.check()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        remaining = budget.remaining()
        timeout = self.timeout_s if remaining is None else max(0.05, min(self.timeout_s, remaining))
        try:
            with self._http.stream("GET", url, headers=headers, timeout=timeout) as response:
                if response.status_code != 200:
                    raise FetchFailure(f"FHIR server answered HTTP {response.status_code}")
                content = self._read(response, budget)
        except httpx.TimeoutException as exc:
            if budget.remaining() is not None and budget.remaining() <= 0.05:  # type: ignore[operator]
                raise StoppedAtDeadline("stopped at the request deadline") from exc
            raise FetchFailure(f"no answer within {timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise FetchFailure(f"FHIR server unreachable ({type(exc).__name__})") from exc
        try:
            body = json.loads(content)
        except (ValueError, RecursionError) as exc:
            raise FetchFailure("FHIR server answered with a body that is not JSON") from exc
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise FetchFailure("FHIR server answered with JSON that is not a FHIR resource")
        return body

    @staticmethod
    def _read(response: httpx.Response, budget: Budget) -> bytes:
        """The body, chunk by chunk, within the call's deadline and byte budget."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > budget.max_bytes:
            raise FetchFailure(f"FHIR answers larger than the limit of {budget.max_bytes} bytes")
        chunks = []
        for chunk in response.iter_bytes():
            budget.spend_bytes(len(chunk))
            chunks.append(chunk)
            budget.check()
        return b"".join(chunks)
