"""Log formats: a readable line (the default) or one JSON object per line (PACING_CDS_LOG_FORMAT=json).

Structured events pass their fields as `extra=`; only the names in FIELDS reach the JSON, so a token, a request
body or a FHIR resource can never ride along on a record by accident.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

FIELDS = ("event", "hookInstance", "service", "status", "duration_ms", "cards", "iss", "jti", "received", "stored")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """time, level, logger, event (the message when the record names none) and the known fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if "event" not in entry:
            entry["event"] = record.getMessage()
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


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
    logger = logging.getLogger("cds")
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if getattr(h, "_pacing_cds", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._pacing_cds = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    handler.setFormatter(formatter(kind))


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter()
    return EscapingFormatter(TEXT_FORMAT)


def gunicorn_json_config() -> dict[str, object]:
    """gunicorn's logconfig_dict: its own messages (worker boot, errors) as JSON lines too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "cds.logs.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
                    # No access lines: a URL may carry a query string the client put patient data in.
                    "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False}},
        "root": {"level": "WARNING", "handlers": ["stderr"]},  # replaces gunicorn's default, whose handler is gone
    }
