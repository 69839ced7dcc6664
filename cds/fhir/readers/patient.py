"""The Patient -> the record's birth date (the rules' age) and language (what the patient reads is written in it)."""

from __future__ import annotations

import re
from datetime import date
from functools import cache
from typing import Any

from babel import Locale

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
    for item in _ordered(communication):
        concept = item.get("language")
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            code = coding.get("code") if isinstance(coding, dict) else None
            if isinstance(code, str) and len(code) <= MAX_TAG and LANGUAGE_TAG.match(code) and _names_one(code):
                return code
    return None


def _names_one(tag: str) -> bool:
    """Whether a tag names a language (und, mul, mis and zxx do not)."""
    return tag.split("-", 1)[0].lower() not in NOT_A_LANGUAGE


TEXT_SHOWN = 40  # characters of a language given only as text that a card repeats


@cache
def _english_names() -> dict[str, str]:
    """CLDR's English name of every language and variant Babel knows, casefolded, to its tag: spanish -> es,
    brazilian portuguese -> pt-BR."""
    return {name.casefold(): code.replace("_", "-") for code, name in Locale("en").languages.items()}


def _ordered(communication: Any) -> list[dict[str, Any]]:
    if not isinstance(communication, list):
        return []
    items = [c for c in communication if isinstance(c, dict)]
    return [c for c in items if c.get("preferred") is True] + [c for c in items if c.get("preferred") is not True]


def language_and_text(communication: Any) -> tuple[str | None, str | None]:
    """(the patient's language as a tag, the words of a language given only as text that names none we can read).
    A code comes first (`language`); else the text of the preferred entry, else of the first, is read when it is a
    language's English name exactly, as CLDR writes it ("Spanish": es), which is reading, not guessing; any other
    text is given back, without markup and cut short, so that the card can say it was not read."""
    tag = language(communication)
    if tag is not None:
        return tag, None
    for item in _ordered(communication):
        concept = item.get("language")
        text = concept.get("text") if isinstance(concept, dict) else None
        if not isinstance(text, str) or not text.strip():
            continue
        named = _english_names().get(" ".join(text.split()).casefold())
        if named is not None and _names_one(named):
            return named, None
        shown = " ".join(re.sub(r"[^\w\s()'-]", " ", text).split())[:TEXT_SHOWN]
        return None, shown or None
    return None, None


def birth_date(value: Any) -> date | None:
    """Patient.birthDate (a year, a year-month or a date) as a date; a partial date takes its first day."""
    parsed = parse_time(value)
    return parsed.date() if parsed is not None else None


class PatientReader(Reader):
    """Reads the Patient into the record (a part of RecordBuilder)."""

    def patient(self, resource: dict[str, Any]) -> None:
        self.record.birth_date = birth_date(resource.get("birthDate"))
        self.record.language, self.record.language_text = language_and_text(resource.get("communication"))
