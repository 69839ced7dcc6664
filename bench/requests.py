"""Realistic patient-view requests with N days of daily data (steps, pain, sessions, vitals, conditions)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("generate_examples", ROOT / "scripts" / "generate_examples.py")
assert _spec is not None and _spec.loader is not None
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)

SIZES = {"1 week": 7, "90 days": 90, "1 year": 365, "3 years": 1095}
NOW = "2026-11-20T09:00:00Z"


def patient_view(days: int, patient_id: str = "bench-1") -> dict[str, Any]:
    """A patient on 20 min x 3/week for `days` days: sessions, daily steps and pain, weekly blood pressure and
    temperature, monthly weight, a chronic pain condition and a resolved fever."""
    p = generate.Patient(patient_id, seed=days)
    p.order("order", 20, 3, "2022-01-01")
    p.sessions(range(0, days), lambda d: 20 + d % 2)
    p.steps(range(0, days), lambda d: 5200 + (d % 7) * 150)
    p.pain(range(0, days), 4, 5)
    for d in range(0, days, 7):
        p.blood_pressure(d, 126 + d % 9, 80 + d % 5)
        p.obs("vitals", "8310-5", "Body temperature", generate.at(d, 9), 36.7, "Cel", category="vital-signs")
    for d in range(0, days, 30):
        p.obs("weight", "29463-7", "Body weight", generate.at(d, 9), 81.0 - (d % 60) / 100, "kg",
              category="vital-signs")
    p.condition("old-fever", "386661006", "Fever", "2026-01-10", clinical="resolved")
    return {"hookInstance": f"bench-{days}", "hook": "patient-view",
            "context": {"userId": "Practitioner/bench", "patientId": patient_id}, "prefetch": p.prefetch()}


def observations(request: dict[str, Any]) -> int:
    return sum(len(v.get("entry", [])) for k, v in request["prefetch"].items()
               if k != "patient" and isinstance(v, dict) and k not in ("conditions", "exercise-orders", "step-goals"))
