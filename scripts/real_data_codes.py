"""Print the card codes the service gives to each case of tests/real_data/, in process, as JSON.

    .venv/bin/python scripts/real_data_codes.py
    PYTHONPATH=<another checkout> .venv/bin/python scripts/real_data_codes.py <another checkout>/rules

Run against another checkout's code and rules (PYTHONPATH first on the path), it shows what that version answers to
the same cases: what a change altered.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from cds.engine import RuleEngine, load_knowledge
from cds.errors import CdsError
from cds.fhir.client import FhirClient
from cds.services import services_of
from cds.services.pipeline import answer

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    rules = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "rules"
    knowledge = load_knowledge(rules)
    engine, services, fhir = RuleEngine(knowledge), services_of(knowledge), FhirClient(3.0, 10)
    suite = ROOT / "tests" / "real_data"
    codes: dict[str, list[str]] = {}
    for request in sorted(suite.rglob("request.json")):
        expected = json.loads((request.parent / "expected.json").read_text())
        now = datetime.fromisoformat(expected["now"].replace("Z", "+00:00"))
        try:
            cards = answer(services[expected["service"]], json.loads(request.read_text()), engine, fhir,
                           now).outcome.response.cards
            codes[str(request.parent.relative_to(suite))] = [c.source.topic.code for c in cards if c.source.topic]
        except CdsError as error:
            codes[str(request.parent.relative_to(suite))] = [f"error {error.status}"]
    fhir.close()
    print(json.dumps(codes, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
