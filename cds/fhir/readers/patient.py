"""The Patient -> the record's birth date (the rules' age) and language (what the patient reads is written in it)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from cds.fhir.readers.common import Reader, parse_time

# A BCP-47 language tag as Patient.communication.language codes it (urn:ietf:bcp:47): es, es-MX, en-US, zh-Hant.
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}$")
MAX_TAG = 35  # as the chart's stored series holds it (cds/charts/model.py)
# Codes that name no language (ISO 639's special codes, which BCP-47 keeps): undetermined, multiple languages,
# uncoded, no linguistic content. They are read as no language given, and the next entry is looked at.
NOT_A_LANGUAGE = frozenset({"und", "mul", "mis", "zxx"})


def language(communication: Any) -> str | None:
    """The language of Patient.communication the patient prefers, else the first with a language tag; None when
    none names one (a language given only as text is not guessed at, and `und` and its kind name none)."""
    if not isinstance(communication, list):
        return None
    items = [c for c in communication if isinstance(c, dict)]
    ordered = [c for c in items if c.get("preferred") is True] + [c for c in items if c.get("preferred") is not True]
    for item in ordered:
        concept = item.get("language")
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            code = coding.get("code") if isinstance(coding, dict) else None
            if (isinstance(code, str) and len(code) <= MAX_TAG and LANGUAGE_TAG.match(code)
                    and code.split("-", 1)[0].lower() not in NOT_A_LANGUAGE):
                return code
    return None


def birth_date(value: Any) -> date | None:
    """Patient.birthDate (a year, a year-month or a date) as a date; a partial date takes its first day."""
    parsed = parse_time(value)
    return parsed.date() if parsed is not None else None


class PatientReader(Reader):
    """Reads the Patient into the record (a part of RecordBuilder)."""

    def patient(self, resource: dict[str, Any]) -> None:
        self.record.birth_date = birth_date(resource.get("birthDate"))
        self.record.language = language(resource.get("communication"))
