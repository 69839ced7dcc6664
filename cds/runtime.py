"""The objects create_app builds once per process and the request handlers share."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from cds.auth.tokens import Authenticator
from cds.engine import RuleEngine
from cds.fhir.allowlist import ServerPolicy
from cds.fhir.client import FhirClient
from cds.services.base import CdsService
from cds.settings import Settings
from cds.store.database import Store

EXTENSION = "pacing_cds"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: Store
    fhir: FhirClient
    engine: RuleEngine
    services: dict[str, CdsService]
    auth: Authenticator | None = None
    fhir_servers: ServerPolicy = ServerPolicy()

    def close(self) -> None:
        if self.auth is not None:
            self.auth.close()
        self.fhir.close()
        self.store.close()


def runtime() -> Runtime:
    return current_app.extensions[EXTENSION]
