"""The service app plus one test-only route that evaluates given facts, to stress the engine under gunicorn.

    gunicorn -k gthread -w 3 --threads 4 'tests.support.engine_wsgi:create()'
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Flask, Response, request

from cds import create_app
from cds.api.error_handler import json_response
from cds.runtime import runtime
from tests.support.stress import canonical, crossing

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def create() -> Flask:
    app = create_app()

    @app.post("/_stress/evaluate")
    def evaluate() -> Response:
        body = request.get_json()
        evaluation = runtime().engine.evaluate(body["service"], body["facts"], NOW)
        return json_response({**canonical(evaluation), "crossed": crossing(evaluation, body["facts"]),
                              "pid": os.getpid()})

    return app
