"""Facts for the rule engine, generated from the scenarios of rules/: a scenario's facts with a few fields changed,
each to another scenario's value (thresholds are where rules differ) or to any value of its type."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from cds.engine import Knowledge, load_knowledge
from tests.conftest import ROOT


def field_values(knowledge: Knowledge) -> dict[tuple[str, str], list[Any]]:
    """Every value a scenario gives each field of each fact type: thresholds are where the rules differ."""
    seen: dict[tuple[str, str], list[Any]] = {}
    for _, scenario in knowledge.scenarios:
        for fact in scenario.given:
            for name, value in fact.items():
                if name != "t" and value not in seen.setdefault((fact["t"], name), []):
                    seen[(fact["t"], name)].append(value)
    return seen


BASE = load_knowledge(ROOT / "rules")
VALUES = field_values(BASE)
TYPED = {"boolean": st.booleans(), "integer": st.integers(0, 400), "number": st.floats(-4, 4),
         "string": st.just("")}


@st.composite
def facts(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A scenario's facts with up to four fields changed, each to another scenario's value or one of its type."""
    _, scenario = draw(st.sampled_from(BASE.scenarios))
    given = [dict(fact) for fact in scenario.given]
    for _ in range(draw(st.integers(0, 4))):
        fact = draw(st.sampled_from(given))
        fields = BASE.facts[fact["t"]].fields
        name = draw(st.sampled_from(sorted(fields)))
        spec = fields[name]
        choices = [v for v in VALUES.get((fact["t"], name), []) if v is not None]
        typed = st.sampled_from(spec.values) if spec.values else TYPED[spec.type]
        fact[name] = draw(st.sampled_from(choices) | typed if choices else typed)
    return given
