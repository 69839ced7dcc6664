"""GET /metrics: Prometheus text format; every gunicorn worker's counts under `pacing-cds serve`."""

from flask import Blueprint, Response

from cds import metrics

bp = Blueprint("scrape", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
