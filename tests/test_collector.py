"""The collector of a serving process: settled once the application is built, it leaves a call's objects to
reference counting instead of walking them on every call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Three years of a patient's data through the in-process pipeline, counting the collector's runs by generation.
SCRIPT = """
import gc, json, sys
from datetime import datetime
from pathlib import Path
import orjson
from bench.requests import NOW, SIZES, patient_view
from cds.collector import YOUNG_COLLECTION_THRESHOLD, settle_heap
from cds.engine import RuleEngine, load_knowledge
from cds.fhir.client import FhirClient
from cds.fhir.typed import decode_request
from cds.services import services_of
from cds.services.pipeline import answer
import pytest

pytestmark = pytest.mark.slow  # measures a fresh interpreter's heap

engine = RuleEngine(load_knowledge(Path("rules")))
service = services_of(engine.knowledge)["pacing-review"]
fhir = FhirClient(3.0, 10)
now = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
raw = orjson.dumps(patient_view(SIZES["3 years"]))
if sys.argv[1] == "settled":
    settle_heap()
runs = [0, 0, 0]
gc.callbacks.append(lambda phase, info: runs.__setitem__(info["generation"], runs[info["generation"]] + phase.count("stop")))
cards = set()
for _ in range(5):
    body = decode_request(raw, service.typed_keys, service.prefetch_keys)
    cards.add(orjson.dumps(answer(service, body, engine, fhir, now).outcome.response.to_json()))
print(json.dumps({"runs": runs, "threshold": gc.get_threshold()[0], "young": YOUNG_COLLECTION_THRESHOLD,
                  "frozen": gc.get_freeze_count(), "answers": sorted(c.decode() for c in cards)}))
"""


def _calls(mode: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_settled_process_does_not_walk_each_calls_objects() -> None:
    settled, unsettled = _calls("settled"), _calls("default")
    assert settled["threshold"] == settled["young"] and settled["frozen"] > 0
    assert settled["runs"] == [0, 0, 0]  # five 3-year calls: everything freed by reference counting
    assert unsettled["runs"][0] > 5  # the default threshold walks the live objects of every such call
    assert len(settled["answers"]) == 1 and settled["answers"] == unsettled["answers"]  # one answer, either way
