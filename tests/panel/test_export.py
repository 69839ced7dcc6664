"""The synthetic export: the same seed writes the same files; every archetype of the examples appears."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from bench.export import ARCHETYPES, patient, write_export
from cds.engine import RuleEngine
from cds.panel.rows import evaluate_group
from tests.panel.conftest import NOW_AT

pytestmark = pytest.mark.slow  # runs pacing-cds worklist


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
            for p in sorted(folder.iterdir())}


def test_the_same_seed_writes_the_same_export(tmp_path: Path) -> None:
    write_export(tmp_path / "a", 40, seed=4, now=NOW_AT, gzip_files=True, split=2_000)
    write_export(tmp_path / "b", 40, seed=4, now=NOW_AT, gzip_files=True, split=2_000)
    write_export(tmp_path / "c", 40, seed=5, now=NOW_AT, gzip_files=True, split=2_000)
    assert contents(tmp_path / "a") == contents(tmp_path / "b")
    assert contents(tmp_path / "a") != contents(tmp_path / "c")
    assert len([n for n in contents(tmp_path / "a") if n.startswith("Observation.")]) > 1, "split into files"


def test_a_patient_is_the_same_whatever_the_size_of_the_export() -> None:
    assert patient(17, 4, NOW_AT, 90) == patient(17, 4, NOW_AT, 90)
    assert patient(17, 4, NOW_AT, 90) != patient(18, 4, NOW_AT, 90)


def test_patients_vary_in_archetype_noise_missing_days_and_devices() -> None:
    people = [patient(i, 9, NOW_AT, 90) for i in range(300)]
    assert {name for name, _ in people} == {name for name, _, _ in ARCHETYPES}
    devices = {len({o["device"]["reference"] for o in resources if o.get("device")}) for _, resources in people}
    assert {1, 2} <= devices or {2, 3} <= devices, "one device for some patients, several for others"
    pain_days = [len({o["effectiveDateTime"][:10] for o in resources if o.get("code", {}).get("coding", [{}])[0]
                      .get("code") == "72514-3"}) for name, resources in people if name == "progress"]
    assert min(pain_days) < max(pain_days) <= 90, "days with nothing recorded"
    sizes = [len(resources) for _, resources in people]
    assert min(sizes) < 50 < 200 < max(sizes)
    assert json.dumps(people[0][1])  # plain JSON, as NDJSON needs


def recommendations(engine: RuleEngine, name: str, count: int = 600) -> list[list[str]]:
    """The worklist's codes, dose code first, for the generated patients of one archetype among `count`."""
    out = []
    for index in range(count):
        archetype, resources = patient(index, 9, NOW_AT, 90)
        if archetype == name:
            pid = resources[0]["id"]
            row, _ = evaluate_group(engine, pid, [("x.ndjson", i, json.dumps(r)) for i, r in enumerate(resources)],
                                    NOW_AT)
            assert row is not None
            out.append(row["recommendations"].split())
    return out


def test_the_red_flag_archetype_always_gets_a_red_flag_and_the_refuted_one_never(engine: RuleEngine) -> None:
    """The generator's red flags are coded as the rules define them (specific codes, recorded recently); a
    refuted one and a resolved one are not red flags."""
    flagged, refuted = recommendations(engine, "red-flag-condition"), recommendations(engine, "refuted-red-flag")
    assert flagged and all(codes[0] == "red-flag" for codes in flagged), flagged
    assert refuted and not any("red-flag" in codes for codes in refuted), refuted


def test_the_steps_archetype_has_time_on_its_goal_and_mostly_progresses(engine: RuleEngine) -> None:
    """A step Goal with a start date gives time on the dose; without one, every such patient would hold."""
    steps = recommendations(engine, "progress-steps")
    assert steps and sum(codes[0] == "progress" for codes in steps) > len(steps) / 2, steps


def test_the_inactivity_archetype_is_mostly_called_inactive(engine: RuleEngine) -> None:
    """Not all: with the generator's missing days, a patient may have fewer than the 5 days of steps in the last
    week that inactivity is judged on."""
    inactive = recommendations(engine, "inactivity")
    assert inactive and sum("inactivity" in codes for codes in inactive) > len(inactive) / 2, inactive
