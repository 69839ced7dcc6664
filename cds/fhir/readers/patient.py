"""The Patient -> the record's birth date (the rules' age)."""

from __future__ import annotations

from datetime import date
from typing import Any

from cds.fhir.readers.common import Reader, parse_time


def birth_date(value: Any) -> date | None:
    """Patient.birthDate (a year, a year-month or a date) as a date; a partial date takes its first day."""
    parsed = parse_time(value)
    return parsed.date() if parsed is not None else None


class PatientReader(Reader):
    """Reads the Patient into the record (a part of RecordBuilder)."""

    def patient(self, resource: dict[str, Any]) -> None:
        self.record.birth_date = birth_date(resource.get("birthDate"))
