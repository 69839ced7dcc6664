"""`pacing-cds evaluate REQUEST.json --now DATE`: cards and trace in a terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "pacing-cds"
EXAMPLES = Path(__file__).resolve().parents[1] / "fhir_examples"


def evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "evaluate", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})


def test_evaluate_prints_cards_and_trace() -> None:
    result = evaluate(str(EXAMPLES / "step-back-flare" / "request.json"), "--now", "2026-11-20T09:00:00Z")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pacing-review (patient-view) for Patient/step-back-flare as of 2026-11-20T09:00:00+00:00" in out
    assert "[warning] step-back: Step back exercise to 20 min x 4/week (-20 %) after a pain flare" in out
    assert "suggestion: Order 20 min x 4/week (create ServiceRequest)" in out
    assert '    fact   {"t": "patient", "has_prescription": true' in out
    assert "    fired  step-back v0.1.0 -> step-back: selected" in out
    assert "    data   pain: " in out


def test_evaluate_with_a_date_only_and_no_cards() -> None:
    result = evaluate(str(EXAMPLES / "order-fits" / "request.json"), "--now", "2026-11-20")
    assert result.returncode == 0, result.stderr
    assert "No cards: nothing to recommend." in result.stdout


def test_evaluate_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    result = evaluate(str(bad))
    assert result.returncode == 2 and "cannot read" in result.stderr and "Traceback" not in result.stderr
    missing = evaluate(str(tmp_path / "absent.json"))
    assert missing.returncode == 2
