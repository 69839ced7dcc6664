"""Pacing CDS: a CDS Hooks 2.0 service for activity pacing and graded exercise progression."""

from __future__ import annotations

import logging
import sys

from flask import Flask

from cds.settings import Settings, load_settings

__all__ = ["create_app"]


def configure_logging(level: str) -> None:
    """One stderr handler for the `cds` loggers; request bodies and tokens are never logged."""
    logger = logging.getLogger("cds")
    logger.setLevel(level)
    if not any(getattr(h, "_pacing_cds", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler._pacing_cds = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def create_app(settings: Settings | None = None) -> Flask:
    """Build the application: settings, rule engine, database, FHIR client, services and HTTP edge."""
    from cds import api
    from cds.engine import RuleEngine, load_knowledge
    from cds.fhir.client import FhirClient
    from cds.runtime import EXTENSION, Runtime
    from cds.services import by_id
    from cds.store import Store

    settings = settings or load_settings()
    configure_logging(settings.log_level)
    services = by_id()
    engine = RuleEngine(load_knowledge(settings.rules_path, services))
    app = Flask("cds")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    store = Store(settings.database_url)
    store.create_schema()
    app.extensions[EXTENSION] = Runtime(
        settings=settings,
        store=store,
        fhir=FhirClient(settings.fhir_timeout_s, settings.fhir_max_pages),
        engine=engine,
        services=services,
    )
    api.register(app, settings)
    return app
