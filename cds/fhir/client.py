"""FHIR REST client for prefetch fallback: parallel queries, per-request timeout, bounded paging."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import httpx

from cds import metrics


class FetchFailure(Exception):
    """A FHIR query that gave no usable answer; the message is safe to show (no token, no data)."""


class DeadlineExceeded(Exception):
    """The request's deadline passed while FHIR queries were still running; names the keys still pending."""


@dataclass
class Fetched:
    """The answer to one query: the resource (pages merged for a search) and notes on how paging ended."""

    resource: dict[str, Any]
    pages: int = 1
    notes: list[str] = field(default_factory=list)


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


class FhirClient:
    """One per application: a pooled HTTP client and a small thread pool shared by all requests."""

    def __init__(self, timeout_s: float, max_pages: int, max_workers: int = 32) -> None:
        self.timeout_s = timeout_s
        self.max_pages = max_pages
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            headers={"Accept": "application/fhir+json, application/json;q=0.9"},
            trust_env=False,
        )
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fhir-fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def fetch_all(self, server: str, token: str | None, queries: dict[str, tuple[str, dict[str, Any] | None]],
                  deadline: float | None = None) -> dict[str, Fetched | FetchFailure]:
        """Run every query in parallel. A query is (relative or next URL, first page already held or None).
        `deadline` (time.monotonic()) bounds the whole: past it, DeadlineExceeded names what is pending."""
        futures = {key: self._pool.submit(self._fetch, server, token, url, first, deadline)
                   for key, (url, first) in queries.items()}
        results: dict[str, Fetched | FetchFailure] = {}
        for key, future in futures.items():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                results[key] = future.result(timeout=remaining)
            except FetchFailure as failure:
                results[key] = failure
            except FutureTimeout as exc:
                pending = sorted(k for k, f in futures.items() if not f.done())
                for waiting in futures.values():
                    waiting.cancel()
                raise DeadlineExceeded(", ".join(pending)) from exc
        return results

    def _fetch(self, server: str, token: str | None, url: str, first: dict[str, Any] | None,
               deadline: float | None = None) -> Fetched:
        base = server.rstrip("/") + "/"
        if first is None:
            resource = self._get(base, token, url if url.startswith(base) else base + url.lstrip("/"), deadline)
            fetched = Fetched(resource)
        else:
            fetched = Fetched(first, pages=1)
        bundle = fetched.resource
        if bundle.get("resourceType") != "Bundle":
            return fetched
        while (link := next_link(bundle)) is not None:
            if fetched.pages >= self.max_pages:
                fetched.notes.append(f"stopped after {self.max_pages} pages")
                break
            if not link.startswith(base):
                # The token must not travel to any other host than the request's fhirServer.
                fetched.notes.append("next link points outside fhirServer; not followed")
                break
            if deadline is not None and time.monotonic() >= deadline:
                fetched.notes.append("stopped paging at the request deadline")
                break
            page = self._get(base, token, link, deadline)
            if page.get("resourceType") != "Bundle":
                raise FetchFailure(f"page {fetched.pages + 1} is a {page.get('resourceType')}, not a Bundle")
            fetched.resource.setdefault("entry", []).extend(page.get("entry") or [])
            fetched.pages += 1
            bundle = page
        if fetched.pages > 1 or first is not None:
            fetched.resource["link"] = [lk for lk in fetched.resource.get("link") or []
                                        if isinstance(lk, dict) and lk.get("relation") != "next"]
        return fetched

    @metrics.timed_fhir_request
    def _get(self, base: str, token: str | None, url: str, deadline: float | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = self.timeout_s if deadline is None else max(0.05, min(self.timeout_s, deadline - time.monotonic()))
        try:
            response = self._http.get(url, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise FetchFailure(f"no answer within {timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise FetchFailure(f"FHIR server unreachable ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise FetchFailure(f"FHIR server answered HTTP {response.status_code}")
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise FetchFailure("FHIR server answered with a body that is not JSON") from exc
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise FetchFailure("FHIR server answered with JSON that is not a FHIR resource")
        return body
