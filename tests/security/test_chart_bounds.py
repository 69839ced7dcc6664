"""A chart link costs the same whatever the record: the axes have a handful of ticks, a chart stores the newest
readings and orders up to fixed counts, a page is drawn once, chart pages have their own threads and queue (a
crowd of page views never holds up a hook call), and every call is audited even when its chart cannot be
stored."""

from __future__ import annotations

import asyncio
import copy
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from cds.api.service_call import write_audit
from cds.charts import render
from cds.charts.model import Series
from cds.charts.series import MAX_ORDERS
from cds.charts.weeks import weeks
from cds.serving import BufferedWsgi, Pages
from cds.store.database import AuditRecord, ChartRecord, Store
from tests.support.examples import example

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)


def activity_ticks(svg: str) -> int:
    """The labelled ticks of the activity axis (matplotlib's second axis; the pain axis is the third)."""
    axis = svg[svg.index('<g id="matplotlib.axis_2">'):svg.index('<g id="matplotlib.axis_3">')]
    return axis.count('<g id="ytick_')


def token_of(client: FlaskClient, body: dict[str, Any]) -> str:
    """The chart token of a call's first card."""
    response = client.post("/cds-services/pacing-review", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    url = next(link["url"] for link in response.get_json()["cards"][0]["links"] if "/charts/" in link["url"])
    return str(url.split("/charts/", 1)[1])


def chart_of(client: FlaskClient, body: dict[str, Any]) -> tuple[str, str]:
    """(the first card's chart page, its token) for a call."""
    token = token_of(client, body)
    page = client.get(f"/charts/{token}")
    assert page.status_code == 200
    return page.get_data(as_text=True), token


def store_of(client: FlaskClient) -> Store:
    store: Store = client.application.extensions["pacing_cds"].store
    return store


def _order(body: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = body["prefetch"]["exercise-orders"]["entry"][0]["resource"]
    return resource


def test_a_huge_dose_leaves_the_activity_axis_a_handful_of_ticks(client: FlaskClient) -> None:
    body, _ = example("progress-walking")
    _order(body)["occurrenceTiming"]["repeat"]["duration"] = 300_000
    page, _ = chart_of(client, body)
    assert activity_ticks(page) <= 7


@settings(max_examples=15, deadline=None)
@given(top=st.floats(1, 1e9), days=st.integers(1, 84))
def test_any_series_draws_at_most_seven_activity_ticks(top: float, days: int) -> None:
    series = Series.model_validate({
        "v": 1, "measure": "minutes", "now": NOW, "sessions": [(NOW - timedelta(days=d), top / (d + 1))
                                                               for d in range(days)],
        "steps": [], "pain": [], "pain_baseline": None, "orders": [], "plan": None, "red_flags": [], "params": {},
        "code": "progress", "proposed": None})
    assert activity_ticks(render.render_svg(series, weeks(series))) <= 7


def test_a_chart_stores_and_draws_only_the_newest_orders(client: FlaskClient) -> None:
    """Thousands of orders in the 12 weeks: the chart keeps the newest MAX_ORDERS, each drawn once."""
    body, _ = example("progress-walking")
    first = _order(body)
    entries = []
    for k in range(3000):
        order = copy.deepcopy(first)
        order["id"] = f"order-{k}"
        order["authoredOn"] = (NOW - timedelta(minutes=30 * k + 60)).isoformat()
        entries.append({"resource": order})
    body["prefetch"]["exercise-orders"]["entry"] = entries
    page, token = chart_of(client, body)
    stored = store_of(client).chart(token)
    assert stored is not None and len(stored[0]["orders"]) == MAX_ORDERS
    assert len(re.findall(r">order: \d+ min x \d+/wk<", page)) == MAX_ORDERS  # drawn: the SVG's text elements
    assert f"order: 20 min x 3/wk ({MAX_ORDERS} times)" in page, "the text alternative says each order once, counted"
    newest = max(datetime.fromisoformat(str(when)) for when, _, _ in stored[0]["orders"])
    assert newest == NOW - timedelta(minutes=60)


def test_a_stored_series_past_the_bounds_is_not_drawn(client: FlaskClient) -> None:
    """A row no version of this service writes (a session of 10^12 minutes) opens as gone, not drawn."""
    body, _ = example("progress-walking")
    token = token_of(client, body)
    store = store_of(client)
    stored = store.chart(token)
    assert stored is not None
    hostile = {**stored[0], "sessions": [[str(NOW), 1e12]]}
    with store.engine.begin() as conn:
        conn.execute(update(ChartRecord).where(ChartRecord.token == token).values(series=hostile))
    assert client.get(f"/charts/{token}").status_code == 410


def test_a_chart_page_is_drawn_once_however_often_it_is_opened(client: FlaskClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    drawings: list[int] = []
    draw = render.render_svg

    def counted(*args: Any) -> str:
        drawings.append(1)
        return draw(*args)

    monkeypatch.setattr(render, "render_svg", counted)
    body, _ = example("progress-walking")
    page, token = chart_of(client, body)
    again = [client.get(f"/charts/{token}").get_data(as_text=True) for _ in range(5)]
    assert again == [page] * 5
    assert len(drawings) == 1


def _asgi_get(app: BufferedWsgi, path: str) -> Any:
    """One GET through the ASGI front; returns (status, headers)."""
    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": [],
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000), "http_version": "1.1"}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> tuple[int, dict[bytes, bytes]]:
        await app(scope, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"])

    return run()


def test_chart_pages_wait_for_their_own_threads_and_never_hold_up_a_hook_call() -> None:
    """Chart pages that take long (held here until released) fill their own thread and queue; past that they
    are refused with 503 at once, and a hook request is answered all the while."""
    release = threading.Event()

    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"].startswith("/charts/"):
            release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = BufferedWsgi(wsgi, threads=2, max_body_bytes=1024, client_timeout_s=5.0, pages=Pages(threads=1, queue=2))

    async def scenario() -> tuple[list[int], int, list[int]]:
        pages = [asyncio.ensure_future(_asgi_get(app, f"/charts/{k}")) for k in range(3)]
        await asyncio.sleep(0.2)
        extra = [await _asgi_get(app, f"/charts/x{k}") for k in range(2)]
        hook, _ = await asyncio.wait_for(_asgi_get(app, "/cds-services"), 10)
        release.set()
        done = [status for status, _ in await asyncio.gather(*pages)]
        return done, hook, [status for status, _ in extra]

    try:
        done, hook, extra = asyncio.run(scenario())
    finally:
        release.set()
    assert hook == 200
    assert extra == [503, 503]
    assert done == [200, 200, 200]


def test_a_refused_page_says_when_to_come_back() -> None:
    release = threading.Event()

    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        release.wait(30)
        start_response("200 OK", [])
        return [b""]

    app = BufferedWsgi(wsgi, threads=1, max_body_bytes=1024, client_timeout_s=5.0, pages=Pages(threads=1, queue=0))

    async def scenario() -> tuple[int, dict[bytes, bytes]]:
        held = asyncio.ensure_future(_asgi_get(app, "/charts/a"))
        await asyncio.sleep(0.2)
        refused = await _asgi_get(app, "/charts/b")
        release.set()
        await held
        return refused  # type: ignore[no-any-return]

    try:
        status, headers = asyncio.run(scenario())
    finally:
        release.set()
    assert status == 503 and headers[b"retry-after"] == b"1"


def test_an_order_duration_past_64_bits_is_answered_and_audited(client: FlaskClient) -> None:
    body, _ = example("progress-walking")
    body["hookInstance"] = str(uuid.uuid4())
    _order(body)["occurrenceTiming"]["repeat"]["duration"] = 1e20
    response = client.post("/cds-services/pacing-review", json=body)
    assert response.status_code == 200
    [event] = store_of(client).audit_events(body["hookInstance"])
    assert event["status"] == 200


def test_a_call_whose_chart_cannot_be_stored_is_audited_without_it(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'audit.db'}")
    store.create_schema()
    try:
        record = AuditRecord(service_id="pacing-review", hook_instance="h-1", message="answered",
                             charts=[("t" * 32, {"too_big": 2**70})],
                             charts_expire=datetime.now(UTC) + timedelta(hours=1))
        write_audit(store, record, 200)
        [event] = store.audit_events("h-1")
        assert event["status"] == 200
        assert event["message"] == "answered; charts not stored: a value could not be encoded"
        assert store.chart("t" * 32) is None
    finally:
        store.close()
