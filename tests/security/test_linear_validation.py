"""Requests holding many items are validated in linear time, and a call reviews a bounded number of drafts:
20,000 selections, draft orders or Observations each get an answer (the growth is measured in
bench/validation.py)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from cds.hooks.models import MAX_DRAFT_ORDERS
from cds.settings import Settings
from tests.support import data

N = 20_000


def big_client(settings: Settings) -> tuple[Flask, FlaskClient]:
    from cds import create_app

    app = create_app(settings.model_copy(update={"max_body_bytes": 64 * 1024 * 1024}))
    return app, app.test_client()


def order_select(drafts: int, selections: int) -> dict[str, Any]:
    body = data.order_request("order-select", "lin-1")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    body["context"]["draftOrders"]["entry"] = [{"resource": {**draft, "id": f"d{i}"}} for i in range(drafts)]
    body["context"]["selections"] = [f"ServiceRequest/d{i % drafts}" for i in range(selections)]
    return body


def text(response: Any) -> str:
    return response.get_json()["issue"][0]["details"]["text"]


def test_twenty_thousand_selections_and_drafts_are_refused_at_once(settings: Settings) -> None:
    app, client = big_client(settings)
    try:
        many_selections = client.post("/cds-services/exercise-order-select", json=order_select(10, N))
        assert many_selections.status_code == 400
        assert "context.selections" in text(many_selections)
        many_drafts = client.post("/cds-services/exercise-order-select", json=order_select(N, N))
        assert many_drafts.status_code == 400
        assert f"at most {MAX_DRAFT_ORDERS} draft orders" in text(many_drafts)
        sign = data.order_request("order-sign", "lin-1")
        sign["context"]["draftOrders"] = order_select(N, 1)["context"]["draftOrders"]
        assert client.post("/cds-services/exercise-order-sign", json=sign).status_code == 400
    finally:
        app.extensions["pacing_cds"].close()


def test_the_most_drafts_a_call_may_carry_are_all_reviewed(settings: Settings) -> None:
    app, client = big_client(settings)
    try:
        response = client.post("/cds-services/exercise-order-select",
                               json=order_select(MAX_DRAFT_ORDERS, MAX_DRAFT_ORDERS))
        assert response.status_code == 200
        assert len(response.get_json()["cards"]) >= MAX_DRAFT_ORDERS, "each selected draft is reviewed"
    finally:
        app.extensions["pacing_cds"].close()


def test_twenty_thousand_observations_are_evaluated(settings: Settings) -> None:
    app, client = big_client(settings)
    try:
        body = data.patient_view("lin-2", data.full_prefetch("lin-2"))
        body["prefetch"]["activity"] = data.searchset(data.daily_steps("lin-2", N))
        response = client.post("/cds-services/pacing-review", json=body)
        assert response.status_code == 200 and "cards" in response.get_json()
    finally:
        app.extensions["pacing_cds"].close()
