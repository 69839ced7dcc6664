"""Pacing CDS: a CDS Hooks 2.0 service for activity pacing and graded exercise progression."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from flask import Flask

from cds.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from cds.api.auth import Authenticator
    from cds.store.database import Store

__all__ = ["create_app"]


class EscapingFormatter(logging.Formatter):
    """Control characters (newlines, ANSI escapes) in a message are escaped: one record is one line, and text
    from a request (a path with %0a) can neither forge log lines nor drive the operator's terminal."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))


def escape_controls(text: str) -> str:
    """Every control character but tab written as an escape, e.g. \\n or \\x1b."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\t" else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def configure_logging(level: str, kind: str = "text") -> None:
    """One stderr handler for the `cds` loggers, text or JSON; request bodies and tokens are never logged."""
    from cds.logs import formatter

    logger = logging.getLogger("cds")
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if getattr(h, "_pacing_cds", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._pacing_cds = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    handler.setFormatter(formatter(kind))


def build_authenticator(settings: Settings, store: Store) -> Authenticator | None:
    """The JWT verifier when issuers are configured; None (open) otherwise, said loudly."""
    from cds.api.auth import Authenticator, RedisReplayCache, ReplayCache, load_issuers
    from cds.settings import SettingsError
    from cds.store.replay import DatabaseReplayCache

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


def unknown_silent(settings: Settings, knowledge: Any) -> str | None:
    """Why PACING_CDS_SILENT cannot be used with these rules (it names a service they do not define), or None."""
    unknown = [s for s in settings.silent if s not in knowledge.services]
    if not unknown:
        return None
    return (f"PACING_CDS_SILENT names no service of the rules: {', '.join(unknown)} (known: "
            f"{', '.join(sorted(knowledge.services))})")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the application: settings, rule engine, database, FHIR client, services and HTTP edge."""
    from cds import api, metrics
    from cds.charts.plan import load_plan_text
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
    unknown = unknown_silent(settings, engine.knowledge)
    if unknown:
        raise SettingsError(unknown)
    plan_text = load_plan_text(settings.rules_path, {r.rule.conclude.code for r in engine.knowledge.rules})
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
        plan_text=plan_text,
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
