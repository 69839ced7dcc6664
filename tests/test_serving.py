"""The HTTP front of `pacing-cds serve`: what the Flask application sees of a request read whole on the event loop."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import orjson
import pytest

from cds.serving import BufferedWsgi, wsgi_environ
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
