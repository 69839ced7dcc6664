"""The HTTP front of `pacing-cds serve`: what the Flask application sees of a request read whole on the event loop."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection

import httpx
import orjson
import pytest

from cds.serving import BufferedWsgi, WorkerLoad, wsgi_environ
from tests.conftest import LiveService
from tests.support import data

Start = Callable[..., LiveService]


def scope(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {"type": "http", "method": "POST", "path": "/cds-services/pacing-review",
                               "query_string": b"", "headers": [], "server": ("127.0.0.1", 8080),
                               "client": ("127.0.0.1", 50000), "scheme": "http", "http_version": "1.1"}
    base.update(extra)
    return base


def test_the_environ_carries_the_request_as_pep_3333_asks() -> None:
    environ = wsgi_environ(scope(path="/charts/é", root_path="", query_string=b"a=1&b=%C3%A9",
                                 headers=[(b"content-type", b"application/json"), (b"x-seen", b"one"),
                                          (b"X-Seen", b"two"), (b"transfer-encoding", b"chunked")]), b'{"a": 1}')
    assert environ["PATH_INFO"] == "/charts/é".encode().decode("latin1")  # bytes as latin-1
    assert environ["QUERY_STRING"] == "a=1&b=%C3%A9"
    assert environ["CONTENT_TYPE"] == "application/json"
    assert environ["HTTP_X_SEEN"] == "one,two"  # repeated headers joined, as HTTP allows
    assert environ["CONTENT_LENGTH"] == "8", "the length of the body as read"
    assert "HTTP_TRANSFER_ENCODING" not in environ, "the body is no longer chunked: the application must read it"
    assert environ["wsgi.input"].read() == b'{"a": 1}'
    assert (environ["REMOTE_ADDR"], environ["SERVER_PORT"], environ["wsgi.url_scheme"]) == ("127.0.0.1", "8080",
                                                                                            "http")


def test_a_root_path_is_the_script_name() -> None:
    environ = wsgi_environ(scope(method="GET", path="/pacing/cds-services", root_path="/pacing"), b"")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/pacing", "/cds-services")
    assert "CONTENT_LENGTH" not in environ


def test_a_served_call_sent_in_chunks_is_answered_whole(live_service: Start) -> None:
    """A body without Content-Length (chunked transfer coding) reaches the application whole."""
    service = live_service(now="2026-11-20T09:00:00Z")
    body = orjson.dumps(data.patient_view("p1", prefetch=data.full_prefetch("p1")))
    chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)]
    wire = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(b"POST /cds-services/pacing-review HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + wire)
        answer = b""
        while piece := sock.recv(65536):
            answer += piece
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), content
    cards = orjson.loads(content)["cards"]
    assert cards and all(card["source"]["label"] for card in cards)


def test_a_served_head_a_query_string_and_a_non_ascii_path_reach_the_application(live_service: Start,
                                                                                  http: httpx.Client) -> None:
    service = live_service()
    missing = http.post(f"{service.url}/cds-services/%C3%A9t%C3%A9", json={})
    assert missing.status_code == 404 and "'été'" in missing.json()["issue"][0]["details"]["text"], missing.text
    got = http.get(f"{service.url}/cds-services", params={"x": "é & ü"})
    assert got.status_code == 200 and got.json()["services"]
    head = http.head(f"{service.url}/cds-services")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(got.content)


def test_an_application_that_fails_outside_flask_gets_a_500_outcome_and_no_data_in_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    """The last guard of the hand-over (Flask answers its own errors; this fault cannot be produced through it)."""

    def raises(environ: dict[str, object], start_response: object) -> list[bytes]:
        raise ValueError("Patient/secret-id had 7 sessions")

    def never_starts(environ: dict[str, object], start_response: object) -> list[bytes]:
        return [b"{}"]

    for app in (raises, never_starts):
        front = BufferedWsgi(app, 1, 1000, 5.0)
        status, headers, content = front._answer(wsgi_environ(scope(), b"{}"))
        assert status == 500 and (b"content-type", b"application/json") in headers
        assert orjson.loads(content)["resourceType"] == "OperationOutcome"
        front.pool.shutdown()
    assert "secret-id" not in caplog.text and "failed in the application: ValueError" in caplog.text


def _other_worker(load: WorkerLoad, requests: int, answer: Connection) -> None:
    """A second worker process: it takes its slot, holds `requests` and says whether it is the busier."""
    load.join(2)
    load.add(requests)
    answer.send(load.busier())


def test_workers_see_each_others_requests_in_hand() -> None:
    """The counts are shared by processes forked after the WorkerLoad was made, as gunicorn forks its workers."""
    load = WorkerLoad()
    load.join(1)
    mine, theirs = multiprocessing.get_context("fork").Pipe()
    other = multiprocessing.get_context("fork").Process(target=_other_worker, args=(load, 3, theirs))
    other.start()
    try:
        assert mine.recv() is True  # 3 in hand against this worker's 0
        other.join(30)
        assert load.busier() is False
        load.add(5)
        assert load.busier() is True  # 5 against 3
        load.leave(2)  # the arbiter, once that worker has exited: it no longer counts
        assert load.busier() is False
    finally:
        other.join(30)


def _answered(front: BufferedWsgi) -> list[tuple[bytes, bytes]]:
    """The headers the front sends for one request (through its ASGI interface)."""
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(front(scope(method="GET", path="/health"), receive, send))
    return list(sent[0]["headers"])  # type: ignore[call-overload]


def test_a_worker_holding_more_requests_than_another_asks_the_client_to_reconnect() -> None:
    """Keep-alive connections stay with the worker that accepted them, and one worker may hold most of them while
    the other waits: the busier worker answers with Connection: close, and the client's next connection may go to
    the other."""

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    load = WorkerLoad()
    load.join(1)
    load.join(2)  # the other worker's slot, as it would be from its own process
    load.slot = 1
    front = BufferedWsgi(app, 1, 1000, 5.0, load)
    try:
        assert (b"connection", b"close") not in _answered(front)  # both idle
        load.add(2)  # two more requests in hand here, none in the other worker
        assert (b"connection", b"close") in _answered(front)
        load.slot = 2
        load.add(2)  # and as many there
        load.slot = 1
        assert (b"connection", b"close") not in _answered(front)
    finally:
        front.pool.shutdown()
