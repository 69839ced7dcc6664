"""Running the fhir_examples in-process, as the service does."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cds.engine import RuleEngine
from cds.fhir.client import FhirClient
from cds.fhir.resolver import resolve
from cds.hooks.models import CdsRequest
from cds.services import by_id
from cds.services.pipeline import Outcome

EXAMPLES = Path(__file__).resolve().parents[2] / "fhir_examples"
SCENARIOS = sorted(p.name for p in EXAMPLES.iterdir() if (p / "request.json").exists())


def example(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    folder = EXAMPLES / name
    return json.loads((folder / "request.json").read_text()), json.loads((folder / "expected.json").read_text())


def run_example(name: str, engine: RuleEngine, change: Callable[[dict[str, Any]], Any] | None = None) -> Outcome:
    """Evaluate an example as of its expected.json's `now`; `change` may edit the request first."""
    body, expected = example(name)
    if change:
        change(body)
    service = by_id()[expected["service"]]
    request = CdsRequest.model_validate(body)
    context = service.context_model.model_validate(request.context)
    fhir = FhirClient(3.0, 10)
    try:
        data = resolve(service.templates, request, context.patientId, fhir, service.optional_keys)
    finally:
        fhir.close()
    now = datetime.fromisoformat(expected["now"].replace("Z", "+00:00"))
    return service.handler(service.id, service.hook, request, context, data, engine, now)
