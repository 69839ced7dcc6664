"""Pacing CDS: a CDS Hooks 2.0 service for activity pacing and graded exercise progression.

A call goes: api/service_call -> services/pipeline.answer -> fhir (resolve, read) -> clinical.features -> engine ->
cards -> store. In modules:

- `cds/api/service_call.py`: POST /cds-services/{id}; calls `answer`, then audits the call
- `cds/services/pipeline.py`: `answer` validates the request and completes the prefetch (`cds/fhir/resolver.py`,
  `resolve`), then `evaluate_patient`, the per-patient core the panel worklist calls too, runs the steps below
- `cds/fhir/readers.py`, `build_record`: the FHIR resources -> the patient's record
- `cds/clinical/features.py`: the record -> features (`compute`) and the facts the rules read (a draft order's
  fact: `cds/clinical/orders.py`)
- `cds/engine/host.py`, `RuleEngine.evaluate`: the facts -> findings
- `cds/cards/build.py`, `build_cards`: the findings -> cards
- `cds/store/database.py`, `Store.audit`: the call's audit record, with the cards it issued
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Flask

from cds.logs import configure_logging, escape_controls
from cds.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from cds.auth.tokens import Authenticator
    from cds.store.database import Store

__all__ = ["configure_logging", "create_app", "escape_controls"]


def build_authenticator(settings: Settings, store: Store) -> Authenticator | None:
    """The JWT verifier when issuers are configured; None (open) otherwise, said loudly."""
    from cds.auth.replay import DatabaseReplayCache, RedisReplayCache, ReplayCache
    from cds.auth.tokens import Authenticator, load_issuers
    from cds.settings import SettingsError

    log = logging.getLogger("cds")
    if settings.issuers_file is None:
        if settings.auth == "disabled":
            log.warning("client authentication disabled (PACING_CDS_AUTH=disabled): any caller is served")
        else:
            log.warning("no PACING_CDS_ISSUERS_FILE: running open, without client authentication (development)")
        return None
    try:
        issuers = load_issuers(settings.issuers_file)
    except ValueError as exc:
        raise SettingsError(f"PACING_CDS_ISSUERS_FILE: {exc}") from exc
    # Never a cache per process: a token captured once would be accepted once by every worker.
    replay: ReplayCache = RedisReplayCache(settings.redis_url) if settings.redis_url else DatabaseReplayCache(store)
    log.info("client authentication: %d trusted issuer(s), replay cache %s", len(issuers),
             "shared (Redis)" if settings.redis_url else "shared (the database)")
    return Authenticator(issuers, settings.base_url, replay)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the application: settings, rule engine, database, FHIR client, services and HTTP edge."""
    from cds import api, metrics
    from cds.engine import RuleEngine, load_knowledge
    from cds.fhir.allowlist import AllowList, ServerPolicy
    from cds.fhir.client import FhirClient
    from cds.runtime import EXTENSION, Runtime
    from cds.services import services_of
    from cds.store.database import Store

    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    engine = RuleEngine(load_knowledge(settings.rules_path))
    services = services_of(engine.knowledge)
    from cds.startup import unknown_silent

    unknown = unknown_silent(settings, engine.knowledge)
    if unknown:
        raise SettingsError(unknown)
    app = Flask("cds")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    store = Store(settings.database_url)
    store.create_schema()
    authenticator = build_authenticator(settings, store)
    app.extensions[EXTENSION] = Runtime(
        settings=settings,
        store=store,
        fhir=FhirClient(settings.fhir_timeout_s, settings.fhir_max_pages, max_bytes=settings.fhir_max_bytes,
                        max_entries=settings.fhir_max_entries),
        engine=engine,
        services=services,
        auth=authenticator,
        fhir_servers=ServerPolicy(AllowList.parse(settings.allowed_fhir_servers),
                                  authenticator.fhir_server_lists() if authenticator else {}),
    )
    api.register(app, settings)
    metrics.declare(services, _card_kinds(engine.knowledge))
    return app


def _card_kinds(knowledge: Any) -> list[tuple[str, str]]:
    """Every (topic, indicator) a card of these rules can carry, and the card that says data were unavailable."""
    from cds.services.unavailable import INDICATOR, TOPIC

    kinds = {(c.rule.conclude.code, indicator) for c in knowledge.rules
             for indicator in (c.rule.conclude.indicator, *c.rule.conclude.indicator_at.values())}
    return sorted(kinds | {(TOPIC, INDICATOR)})
