"""The chart and plan links on a call's cards, and the series stored behind them (used at the HTTP edge)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from cds.charts.series import CHART_PARAMS, call_series, card_series, chart_series, has_data
from cds.hooks.models import Link
from cds.services.pipeline import Outcome

CHART_LABEL = "Open the pacing chart"
PLAN_LABEL = "Open the patient's take-home plan"


def new_token() -> str:
    """192 random bits, URL-safe: the only key to a chart."""
    return secrets.token_urlsafe(24)


def add_chart_links(outcome: Outcome, parameters: Mapping[str, Any], base_url: str) -> list[tuple[str, dict[str, Any]]]:
    """Give every card of the call a chart link and a plan link when there is data to draw; return the
    (token, series) rows to store, one per card."""
    cards = outcome.response.cards
    if not cards:
        return []
    params = {name: parameters[name].value for name in CHART_PARAMS if name in parameters}
    shared = chart_series(outcome.features, outcome.record, outcome.evaluation, params)
    if not has_data(shared):
        return []
    shared = call_series(shared, cards, outcome.evaluation)
    rows = []
    for card in cards:
        token = new_token()
        url = f"{base_url}/charts/{token}"
        card.links = [*(card.links or []), Link(label=CHART_LABEL, url=url, type="absolute"),
                      Link(label=PLAN_LABEL, url=f"{url}/plan", type="absolute")]
        rows.append((token, card_series(shared, card)))
    return rows
