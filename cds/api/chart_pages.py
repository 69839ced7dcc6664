"""GET /charts/{token} and /charts/{token}/plan: the pacing chart and the patient's plan behind a card's links.

The token is the only key (no login: the EHR opens the link in a browser), so it is long and random, the pages
expire, and they are served so that no cache, referrer or script can carry them further."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from datetime import UTC, datetime

from flask import Blueprint, Response
from pydantic import ValidationError

from cds.charts.model import Series
from cds.charts.page import chart_page, plan_page
from cds.errors import CdsError
from cds.runtime import runtime

bp = Blueprint("charts", __name__)
TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")  # secrets.token_urlsafe(24): 192 random bits
# No script may run and nothing may be fetched; inline styles only (matplotlib's SVG styles its elements inline).
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "Content-Security-Policy": CSP,
           "X-Content-Type-Options": "nosniff", "X-Robots-Tag": "noindex, nofollow"}


def _series(token: str) -> tuple[Series, datetime]:
    """The stored series for a token: 404 when malformed or unknown, 410 once expired."""
    if not TOKEN.match(token):
        raise CdsError(404, "no chart at this address")
    found = runtime().store.chart(token)
    if found is None:
        raise CdsError(404, "no chart at this address")
    stored, expires = found
    if datetime.now(UTC) >= expires:
        raise CdsError(410, "this chart has expired; open the card again for a new link")
    try:
        return Series.model_validate(stored), expires
    except ValidationError as exc:
        # Written by this service, so only a schema change between versions gets here: gone, not an error page.
        raise CdsError(410, "this chart was made by another version of the service; open the card again") from exc


def _html(body: str) -> Response:
    return Response(body, mimetype="text/html")


class Drawn:
    """Chart pages already drawn in this process, by token, until they expire: a series never changes, so a page
    is drawn once however often its link is opened. The newest `most` are kept."""

    def __init__(self, most: int = 64) -> None:
        self.most = most
        self._pages: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, now: datetime) -> str | None:
        with self._lock:
            found = self._pages.get(token)
            if found is None or now >= found[1]:
                return None
            self._pages.move_to_end(token)
            return found[0]

    def put(self, token: str, page: str, expires: datetime) -> None:
        with self._lock:
            self._pages[token] = (page, expires)
            self._pages.move_to_end(token)
            while len(self._pages) > self.most:
                self._pages.popitem(last=False)


_drawn = Drawn()


@bp.get("/charts/<token>")
def chart(token: str) -> Response:
    page = _drawn.get(token, datetime.now(UTC)) if TOKEN.match(token) else None
    if page is None:
        series, expires = _series(token)
        page = chart_page(series, expires, token)
        _drawn.put(token, page, expires)
    return _html(page)


@bp.get("/charts/<token>/plan")
def plan(token: str) -> Response:
    series, _ = _series(token)
    accepted = series.lead_card is not None and runtime().store.card_accepted(series.lead_card)
    return _html(plan_page(series, runtime().engine.knowledge.patient, accepted))


@bp.after_request
def _strict_headers(response: Response) -> Response:
    """On every answer under /charts, errors included."""
    response.headers.update(HEADERS)
    return response
