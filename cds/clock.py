"""The moment of evaluation, read one way by every command: `--now` as a date or a date-time, else
PACING_CDS_NOW, else the clock. A bare date is that day's morning clinic, 09:00 UTC, whichever command reads it (the
test data and the examples are written for 2026-11-20 09:00 UTC); a date-time without an offset is UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from cds.settings import Settings

CLINIC_HOUR = 9  # a bare date's hour, UTC


def parse_now(text: str | None, settings: Settings) -> datetime:
    """`--now` as an aware datetime; ValueError when it is neither a date (YYYY-MM-DD) nor a date-time."""
    if text is None:
        return settings.now or datetime.now(UTC)
    written = text.strip()
    parsed = datetime.fromisoformat(written)
    if len(written) == len("YYYY-MM-DD"):
        parsed = parsed.replace(hour=CLINIC_HOUR)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
