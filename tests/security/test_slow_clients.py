"""Slow clients hold no thread: 20 connections dripping headers or bodies, and others are still answered."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import LiveService
from tests.support import data

Start = Callable[..., LiveService]
PV = "/cds-services/pacing-review"


class Drip:
    """A connection that sends the start of a request, then one byte every `every` seconds, `count` times."""

    def __init__(self, port: int, head: bytes, every: float = 0.5, count: int = 60) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(head)
        self.answer = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every, count), daemon=True)
        self._thread.start()

    def _run(self, every: float, count: int) -> None:
        for _ in range(count):
            if self._stop.wait(every):
                return
            # An answer that has arrived is read before the next byte: writing to a connection the server has
            # closed may reset it and discard the answer still unread.
            if select.select([self.sock], [], [], 0)[0]:
                break
            try:
                self.sock.sendall(b"x")
            except OSError:
                break
        try:
            self.sock.settimeout(20)  # a loaded machine may take a while to answer
            self.answer = self.sock.recv(4096)
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def drips() -> Iterator[list[Drip]]:
    opened: list[Drip] = []
    yield opened
    for drip in opened:
        drip.close()


def test_twenty_slow_connections_do_not_stop_the_service(live_service: Start, drips: list[Drip],
                                                         http: httpx.Client) -> None:
    # One worker with two threads: under thread-per-connection reading, two slow clients would stop it.
    service = live_service(workers="1", threads="2", client_timeout_s="20")
    for index in range(20):
        if index % 2:
            head = b"POST " + PV.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # headers never end
        else:
            head = (b"POST " + PV.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100000\r\n\r\n{")  # the body never ends
        drips.append(Drip(service.port, head))
    body = data.patient_view("slow-1", data.full_prefetch("slow-1"))
    with httpx.Client(timeout=httpx.Timeout(10.0)) as other:  # a fresh connection, another client
        for _ in range(3):
            response = other.post(service.url + PV, json=body)
            assert response.status_code == 200 and "cards" in response.json()
        assert other.get(service.url + "/cds-services").status_code == 200


def test_a_body_that_does_not_arrive_in_time_is_408(live_service: Start, drips: list[Drip]) -> None:
    service = live_service(client_timeout_s="1")
    head = (b"POST " + PV.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{")
    # The client falls silent before the deadline. Bytes still arriving when the server closes would sit unread
    # in its socket, and closing such a socket resets the connection, which can discard the answer on the way.
    drip = Drip(service.port, head, every=0.2, count=3)
    drips.append(drip)
    drip._thread.join(timeout=30)
    assert drip.answer.startswith(b"HTTP/1.1 408"), drip.answer[:100]
    assert b"OperationOutcome" in drip.answer


def test_a_declared_oversized_body_is_refused_before_it_is_read(live_service: Start) -> None:
    service = live_service(max_body_bytes="2048")
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(b"POST " + PV.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 999999999\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413") and b"too-costly" in answer
