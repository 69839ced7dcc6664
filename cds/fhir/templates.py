"""Prefetch templates: parsing, the CDS Hooks 2.0 token rules, and rendering against a hook context."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
# Context fields of each hook that hold a primitive at the root, so may be prefetch tokens.
TOKEN_FIELDS = {
    "patient-view": ("userId", "patientId", "encounterId"),
    "order-select": ("userId", "patientId", "encounterId"),
    "order-sign": ("userId", "patientId", "encounterId"),
}


@dataclass(frozen=True)
class PrefetchTemplate:
    """One prefetch key and its query: a read (`Patient/{{...}}`) or a type-level search (`Observation?...`)."""

    key: str
    query: str

    @property
    def resource_type(self) -> str:
        return re.split(r"[/?]", self.query, maxsplit=1)[0]

    @property
    def is_search(self) -> bool:
        return "/" not in self.query.split("?", 1)[0]

    def tokens(self) -> list[str]:
        return TOKEN.findall(self.query)

    def check(self, hook: str) -> None:
        """Raise ValueError unless every token is a CDS Hooks 2.0 token valid for this hook."""
        if not re.match(r"^[A-Z][A-Za-z]+(/|\?)", self.query):
            raise ValueError(f"prefetch {self.key!r}: {self.query!r} is not a FHIR read or type-level search")
        allowed = {f"context.{name}" for name in TOKEN_FIELDS[hook]} | set(USER_TOKENS)
        for token in self.tokens():
            if token not in allowed:
                raise ValueError(f"prefetch {self.key!r}: token {{{{{token}}}}} is not allowed for {hook}")
        if self.query.count("{{") != len(self.tokens()):
            raise ValueError(f"prefetch {self.key!r}: unbalanced token delimiters")

    def render(self, context: dict[str, Any]) -> str:
        """The relative FHIR URL, each token replaced by its URL-encoded value; KeyError if a value is absent."""

        def value(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("context."):
                raw = context.get(token.removeprefix("context."))
            else:
                raw = user_token_value(token, context.get("userId"))
            if raw is None or not isinstance(raw, str):
                raise KeyError(token)
            return quote(raw, safe="/") if token == "context.userId" else quote(raw, safe="")

        return TOKEN.sub(value, self.query)


def user_token_value(token: str, user_id: object) -> str | None:
    """userPractitionerId and friends, from a context.userId such as 'Practitioner/123'."""
    if not isinstance(user_id, str) or "/" not in user_id:
        return None
    resource_type, _, ident = user_id.partition("/")
    return ident if USER_TOKENS.get(token) == resource_type else None
