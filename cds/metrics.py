"""Prometheus metrics: every definition here, and one-line hooks that the request path calls.

Under `pacing-cds serve` each gunicorn worker writes its values to files in a folder the server creates at start
(prometheus-client multiprocess mode, PROMETHEUS_MULTIPROC_DIR), and a scrape adds up every worker. Anywhere else
(the app in-process) the values live in this process. The metric objects are built on first use, not at import.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

P = ParamSpec("P")
T = TypeVar("T")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: a call answers within the request deadline (4 s by default); FHIR reads are usually tens of ms.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)

# Why a JWT was refused, from the Authenticator's message, in a few stable words (labels must not grow unbounded).
_REFUSALS = (
    ("no Bearer token", "missing"), ("malformed", "malformed"), ("algorithm", "algorithm"),
    ("typ is not", "typ"), ("no kid", "kid"), ("unknown kid", "unknown_kid"), ("jku", "jku"),
    ("issuer", "issuer"), ("does not fit", "algorithm"), ("InvalidSignature", "signature"),
    ("InvalidAudience", "audience"), ("InvalidIssuer", "issuer"), ("MissingRequiredClaim", "claims"),
    ("expired", "expired"), ("issued in the future", "not_yet_valid"), ("not yet valid", "not_yet_valid"),
    ("lifetime", "lifetime"), ("is not a number", "claims"), ("tenant", "tenant"), ("jti replayed", "replayed"),
    ("jti", "claims"),
)


# Label values known before the first call: each series is declared at zero when the app is made (see `declare`).
FHIR_OUTCOMES = ("ok", "timeout", "unreachable", "http_error", "invalid")
PREFETCH_SOURCES = ("prefetch", "fetched", "null")
FEEDBACK_OUTCOMES = ("accepted", "overridden")
CARD_MODES = ("shown", "silent")


class _Metrics:
    """The metric objects of this process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls = Counter("pacing_cds_calls", "CDS service calls answered", ["service", "status"], registry=r)
        self.call_seconds = Histogram("pacing_cds_call_duration_seconds", "time to answer a CDS service call",
                                      ["service"], buckets=LATENCY_BUCKETS, registry=r)
        self.cards = Counter("pacing_cds_cards", "cards evaluated: returned (mode shown) or audited only (mode silent)",
                             ["topic", "indicator", "mode"], registry=r)
        self.fhir = Counter("pacing_cds_fhir_requests", "requests to FHIR servers, by outcome", ["outcome"],
                            registry=r)
        self.fhir_seconds = Histogram("pacing_cds_fhir_request_duration_seconds", "time of a FHIR request",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.prefetch = Counter("pacing_cds_prefetch_keys", "prefetch keys resolved, by where the data came from",
                                ["source"], registry=r)
        self.jwt_refusals = Counter("pacing_cds_jwt_refusals", "client JWTs refused (401), by reason", ["reason"],
                                    registry=r)
        self.replay_errors = Counter("pacing_cds_replay_cache_errors", "calls refused (503): replay cache down",
                                     registry=r)
        self.feedback = Counter("pacing_cds_feedback_items", "feedback items received and stored, by outcome",
                                ["outcome"], registry=r)
        self.audit_failures = Counter("pacing_cds_audit_write_failures", "audit records that could not be written",
                                      registry=r)


_lock = threading.Lock()
_metrics: _Metrics | None = None


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


def multiprocess_dir() -> str | None:
    """The folder of the workers' metric files when the server set one up, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> tuple[bytes, str]:
    """The text of a scrape: every worker's values added up under gunicorn, this process's otherwise."""
    folder = multiprocess_dir()
    if folder is None:
        return generate_latest(_get().registry), CONTENT_TYPE_LATEST
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve_port(host: str, port: int) -> None:
    """In the gunicorn master: answer scrapes on their own port (every path), from the workers' files."""
    from prometheus_client import multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir())
    start_http_server(port, addr=host, registry=registry)


def worker_exit(pid: int) -> None:
    """gunicorn child_exit: a dead worker's live gauges go (its counters stay in the sum)."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def declare(services: Iterable[str], card_kinds: Iterable[tuple[str, str]]) -> None:
    """Every series whose labels are known before the first call, at zero (each service's 200s and latency, each
    card topic and indicator in both modes, each FHIR outcome, prefetch source, refusal reason and feedback
    outcome): a scraper sees every metric, and a rate, from the first scrape rather than from the first event."""
    m = _get()
    for service in services:
        m.calls.labels(service, "200")
        m.call_seconds.labels(service)
    for topic, indicator in card_kinds:
        for mode in CARD_MODES:
            m.cards.labels(topic, indicator, mode)
    for outcome in FHIR_OUTCOMES:
        m.fhir.labels(outcome)
    for source in PREFETCH_SOURCES:
        m.prefetch.labels(source)
    for reason in dict.fromkeys([*(reason for _, reason in _REFUSALS), "other"]):
        m.jwt_refusals.labels(reason)
    for outcome in FEEDBACK_OUTCOMES:
        m.feedback.labels(outcome)


# ------------------------------------------------------------------ hooks called where things happen


def service_call(service: str, status: int, seconds: float) -> None:
    """One answered call, whatever its status."""
    m = _get()
    m.calls.labels(service, str(status)).inc()
    m.call_seconds.labels(service).observe(seconds)


def cards(issued: Iterable[tuple[str, str, str]]) -> None:
    """The cards of one answer, as (topic, indicator, mode): shown, or silent (audited, not returned)."""
    m = _get()
    for topic, indicator, mode in issued:
        m.cards.labels(topic, indicator, mode).inc()


def fhir_request(outcome: str, seconds: float) -> None:
    """One HTTP request to a FHIR server: ok, timeout, unreachable, http_error or invalid."""
    m = _get()
    m.fhir.labels(outcome).inc()
    m.fhir_seconds.observe(seconds)


def prefetch_sources(sources: Iterable[str]) -> None:
    """Where each prefetch key's data came from: prefetch, fetched (fhirServer) or null (no data)."""
    m = _get()
    kinds: dict[str, int] = {}
    for source in sources:
        kind = "fetched" if "fhirServer" in source else "prefetch" if source == "prefetch" else "null"
        kinds[kind] = kinds.get(kind, 0) + 1
    for kind, count in kinds.items():  # one increment per kind: each costs a lock and a write to the shared file
        m.prefetch.labels(kind).inc(count)


def jwt_refused(message: str) -> None:
    _get().jwt_refusals.labels(refusal_reason(message)).inc()


def refusal_reason(message: str) -> str:
    """A short stable reason for an Authenticator message (never the message itself: it may name a kid)."""
    for needle, reason in _REFUSALS:
        if needle in message:
            return reason
    return "other"


def replay_cache_error() -> None:
    _get().replay_errors.inc()


def feedback_stored(outcomes: Iterable[str]) -> None:
    m = _get()
    for outcome in outcomes:
        m.feedback.labels(outcome).inc()


def audit_write_failed() -> None:
    _get().audit_failures.inc()


def timed_fhir_request(get: Callable[P, T]) -> Callable[P, T]:
    """Decorates the FHIR client's one-request method: counts each request by outcome and times it."""

    @functools.wraps(get)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        outcome = "invalid"
        try:
            result = get(*args, **kwargs)
            outcome = "ok"
            return result
        except Exception as exc:
            outcome = _fhir_failure(exc)
            raise
        finally:
            fhir_request(outcome, time.perf_counter() - started)

    return wrapper


def _fhir_failure(exc: BaseException) -> str:
    import httpx

    cause = exc.__cause__
    if isinstance(cause, httpx.TimeoutException):
        return "timeout"
    if isinstance(cause, httpx.HTTPError):
        return "unreachable"
    return "http_error" if "answered HTTP" in str(exc) else "invalid"
