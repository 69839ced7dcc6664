"""The HTTP front of `pacing-cds serve`: whole requests are read on the event loop before a thread is used.

gunicorn's asyncio worker (worker class `asgi`) parses requests on its event loop, so a client sending its
headers a byte at a time holds a coroutine, not a thread. This layer then collects the body, bounded by
MAX_BODY_BYTES (413) and CLIENT_TIMEOUT_S for the whole request (408), and only then hands the complete request
to the Flask application in a thread of a2wsgi's pool. A slow client can no longer occupy the threads that
answer everyone else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from a2wsgi import WSGIMiddleware

from cds.api.error_handler import operation_outcome
from cds.errors import CdsError

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    """The body passed the limit while it was arriving."""


class BufferedWsgi:
    """ASGI application around a WSGI one: the request is complete before the WSGI application sees it."""

    def __init__(self, wsgi_app: Any, threads: int, max_body_bytes: int, client_timeout_s: float) -> None:
        self.inner: Any = WSGIMiddleware(wsgi_app, workers=threads)
        self.max_body_bytes = max_body_bytes
        self.client_timeout_s = client_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)  # lifespan (and websocket, refused by a2wsgi)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(send, CdsError(413, f"request body is larger than the limit of {self.max_body_bytes} "
                                              "bytes"))
            return
        try:
            body = await asyncio.wait_for(self._body(receive), timeout=self.client_timeout_s)
        except TimeoutError:
            await _refuse(send, CdsError(408, f"the request did not arrive within {self.client_timeout_s:g} s"))
            return
        except BodyTooLarge:
            await _refuse(send, CdsError(413, f"request body is larger than the limit of {self.max_body_bytes} "
                                              "bytes"))
            return
        if body is None:
            return  # the client went away
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.inner(scope, replay, send)

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


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.decode("latin1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(send: Send, error: CdsError) -> None:
    """An OperationOutcome answer sent from the event loop; the connection is closed after it."""
    body = orjson.dumps(operation_outcome(error))
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
