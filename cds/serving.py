"""The HTTP front of `pacing-cds serve`: whole requests are read on the event loop before a thread is used.

gunicorn's asyncio worker (worker class `asgi`) parses requests on its event loop, so a client sending its
headers a byte at a time holds a coroutine, not a thread. This layer then collects the body, bounded by
MAX_BODY_BYTES (413) and CLIENT_TIMEOUT_S for the whole request (408), and only then hands the complete request
to the Flask application in a thread of its pool. A slow client can no longer occupy the threads that answer
everyone else.

A keep-alive connection stays with the worker that accepted it, and when clients open their connections at once,
one worker may take most of them while the other waits (seen in bench/service.py: 14 of 16 on one worker, and
throughput from 400 to 600 calls a second by how they fell). Each worker counts the requests it has in hand in
memory shared by the workers (`WorkerLoad`); a worker holding at least two more than another answers with
`Connection: close`, and the client's next connection is accepted by whichever worker is free to accept it.

The hand-over is one hop each way: the thread receives the whole request as a WSGI environ and gives back the
whole answer (status, headers, body); the event loop then sends it. The service's answers are small JSON
documents and pages, so nothing is streamed. Against a bridge that hops to the event loop for every read of
the body and every part of the answer (as a2wsgi does), a 90-day call at concurrency 1 takes about 0.5 ms
less at p50 (11.7 against 12.2 ms, two runs of 1,000 calls each way).
"""

from __future__ import annotations

import asyncio
import io
import logging
import mmap
import sys
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from cds.api.error_handler import operation_outcome
from cds.errors import CdsError

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]

log = logging.getLogger("cds")


def complete_reason_phrases() -> None:
    """gunicorn's ASGI worker writes each status line from its own table of reason phrases, which lacks some this
    service answers (412 Precondition Failed went out as "412 Unknown"): the standard library's phrase is added for
    every status the table lacks. Its entries are kept; a gunicorn without the table is left as it is."""
    from http import HTTPStatus

    try:
        from gunicorn.asgi import protocol
    except ImportError:
        return
    table = getattr(protocol, "_REASON_PHRASES", None)
    if isinstance(table, dict):
        for status in HTTPStatus:
            table.setdefault(status.value, status.phrase)


class WorkerLoad:
    """Requests in hand per worker, in memory shared by the workers of one `pacing-cds serve` (made before they
    fork). A worker counts its own in its slot; any worker reads the others'."""

    SLOTS = 64

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 8 * self.SLOTS)  # shared with the children it is inherited by
        self._cells = memoryview(self._memory).cast("i")  # [0, SLOTS): live flags; [SLOTS, 2 SLOTS): counts
        self.slot = -1

    def join(self, age: int) -> None:
        """In a worker after fork: take the slot of its age (gunicorn numbers workers as it starts them)."""
        self.slot = age % self.SLOTS
        self._cells[self.SLOTS + self.slot] = 0
        self._cells[self.slot] = 1

    def leave(self, age: int) -> None:
        """In the arbiter when a worker has exited."""
        self._cells[age % self.SLOTS] = 0
        self._cells[self.SLOTS + age % self.SLOTS] = 0

    def add(self, change: int) -> None:
        if self.slot >= 0:
            self._cells[self.SLOTS + self.slot] += change

    def busier(self) -> bool:
        """This worker holds more requests than another live worker by two or more."""
        if self.slot < 0:
            return False
        cells, slots = self._cells, self.SLOTS
        mine = cells[slots + self.slot]
        return any(cells[i] and i != self.slot and mine >= cells[slots + i] + 2 for i in range(slots))


class Pages:
    """The chart and plan pages' own threads and queue: a page is opened from a link without a token, so however
    many are asked for at once, they wait for these threads and never for the ones that answer hook calls; past
    `threads + queue` in hand, 503."""

    prefix = "/charts/"

    def __init__(self, threads: int = 1, queue: int = 8) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pages")
        self.most = threads + queue
        self.in_hand = 0


class BodyTooLarge(Exception):
    """The body passed the limit while it was arriving."""


class BufferedWsgi:
    """ASGI application around a WSGI one: the request is complete before the WSGI application sees it."""

    def __init__(self, wsgi_app: Any, threads: int, max_body_bytes: int, client_timeout_s: float,
                 load: WorkerLoad | None = None, pages: Pages | None = None) -> None:
        self.wsgi_app = wsgi_app
        self.load = load
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="WSGI")
        self.pages = pages or Pages()
        self.max_body_bytes = max_body_bytes
        self.client_timeout_s = client_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"{scope['type']} connections are not served")
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(send, CdsError(413, f"request body is larger than the limit of {self.max_body_bytes} "
                                              "bytes"))
            return
        try:
            async with asyncio.timeout(self.client_timeout_s):  # no task of its own, unlike wait_for
                body = await self._body(receive)
        except TimeoutError:
            await _refuse(send, CdsError(408, f"the request did not arrive within {self.client_timeout_s:g} s"))
            return
        except BodyTooLarge:
            await _refuse(send, CdsError(413, f"request body is larger than the limit of {self.max_body_bytes} "
                                              "bytes"))
            return
        if body is None:
            return  # the client went away
        environ = wsgi_environ(scope, body)
        pages = self.pages
        page = scope["path"].startswith(pages.prefix)
        if page and pages.in_hand >= pages.most:
            await _refuse(send, CdsError(503, "too many chart pages are being drawn; open the link again shortly",
                                         headers={"Retry-After": "1"}))
            return
        load = self.load
        if load is not None:
            load.add(1)
        if page:
            pages.in_hand += 1  # on the event loop: no lock needed
        try:
            status, headers, content = await asyncio.get_running_loop().run_in_executor(
                pages.pool if page else self.pool, self._answer, environ)
        finally:
            if load is not None:
                load.add(-1)
            if page:
                pages.in_hand -= 1
        if load is not None and load.busier():
            headers = [*headers, (b"connection", b"close")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    def _answer(self, environ: dict[str, Any]) -> Answer:
        """In a pool thread: the WSGI application's whole answer."""
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return _no_write

        try:
            result: Iterable[bytes] = self.wsgi_app(environ, start_response)
            try:
                content = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not started:
                raise RuntimeError("the application answered without starting a response")
            status, headers = started
            return int(status[:3]), [(k.lower().encode("latin1"), v.encode("latin1")) for k, v in headers], content
        except Exception as exc:  # the application handles its errors; this is the last guard, without the data
            log.error("request %s %s failed in the application: %s", environ["REQUEST_METHOD"],
                      environ["PATH_INFO"][:200], type(exc).__name__)
            error = orjson.dumps(operation_outcome(CdsError(500, "internal error")))
            return 500, [(b"content-type", b"application/json"), (b"content-length", str(len(error)).encode())], error

    async def _body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the write() callable of WSGI is not supported: return the body")


def wsgi_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The PEP 3333 environ of a complete ASGI HTTP request (its text in the "bytes as latin-1" form)."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    root = scope.get("root_path", "")
    path = scope["path"]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.encode().decode("latin1"),
        "PATH_INFO": path.removeprefix(root).encode().decode("latin1") if root else path.encode().decode("latin1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] if server[1] is not None else 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(client[0]), str(client[1])
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin1").upper().replace("-", "_"), raw_value.decode("latin1")
        if name in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body has been read whole and de-chunked: its length is set below
        key = name if name == "CONTENT_TYPE" else f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if body or scope["method"] not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop on the event loop: the application is built before the worker serves."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.decode("latin1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(send: Send, error: CdsError) -> None:
    """An OperationOutcome answer sent from the event loop; the connection is closed after it."""
    body = orjson.dumps(operation_outcome(error))
    extra = [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
