"""durable-rules, made safe for a multi-threaded, multi-process web service.

The service drives the engine's C core (`durable_rules_engine`) itself, with the calls durable-rules' own Python
host makes, and none of that host: no dispatcher thread, no closures or promises per action, its JSON done by
orjson. What this module does about the engine's known hazards (durable-rules 2.0.28, docs/engine-safety.md):
- no thread at all: the Python host's background dispatcher segfaults with states being deleted, and is not used;
- every session starts with a sentinel fact that a no-op rule matches (deleting a session in which no rule
  fired reads uninitialised memory);
- facts are asserted one at a time, and a fact that no rule matches or that is only observed is skipped (a batch
  with one unmatched fact never runs the others' actions);
- rules compare a fact's field with parameters only, never with another fact (the loader refuses joins);
- one fresh session id per evaluation (a counter), its state deleted in `finally` (at most 1024 live sessions
  per ruleset);
- the engine is given each ruleset as JSON text, so the definitions it would mutate are never its to change;
- an action that raises is abandoned in the engine, and the evaluation raises `EngineError`;
- a rule fires once per evaluation and facts matched: the engine makes a rule of each branch of an `$or`, so a
  fact meeting two branches fired it twice;
- one lock around all engine calls (the C calls hold the GIL anyway, so it costs no parallelism).
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import durable_rules_engine as core
import orjson

from cds.knowledge.conditions import check_facts
from cds.knowledge.loader import CompiledRule, Knowledge

SENTINEL_RULE = "$sentinel"
SENTINEL_FACT = {"t": "$sentinel"}
KIND_ORDER = {"dose": 0, "order": 1, "pattern": 2}
# What the C core's assert_fact answers besides 0 (done, its actions ready): as durable-rules' host reads them.
NOT_HANDLED, OBSERVED, DEFERRED = 1, 2, 3


def _text(value: Any) -> str:
    """JSON text for the C core, as durable-rules' host writes it (UTF-8, not ASCII-escaped).

    The core's number parser refuses an exponent after a mantissa without a fraction ("1e-7", "1e+20": error 204),
    which orjson writes for a float below 1e-5 or from 1e16 in magnitude; such a float is written with ".0" added
    to its mantissa ("1.0e-7"), the same number. Everything else is orjson's text as it is."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    if _BARE_EXPONENT.search(text) is None:
        return text.decode()
    return orjson.dumps(_core_numbers(value), option=orjson.OPT_NON_STR_KEYS).decode()


# A digit then "e": in a number, or (rarely) in a string, which only costs the walk below.
_BARE_EXPONENT = re.compile(rb"\de")


def _core_numbers(value: Any) -> Any:
    """The value with each float the core could not read as orjson writes it replaced by text it reads."""
    if isinstance(value, float):
        text = orjson.dumps(value)
        mantissa, e, exponent = text.partition(b"e")
        return orjson.Fragment(mantissa + b".0e" + exponent) if e and b"." not in mantissa else value
    if isinstance(value, dict):
        return {key: _core_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_core_numbers(item) for item in value]
    return value


class EngineError(Exception):
    """The engine failed on an evaluation (an action raised, or facts did not fit the vocabulary)."""


@dataclass(frozen=True)
class Fired:
    """One rule firing: which rule, at which version, on which facts, with which parameter values."""

    rule_id: str
    rule_version: str
    code: str
    kind: str
    precedence: int
    facts: dict[str, dict[str, Any]]
    parameters: dict[str, float | int]
    suppressed_by: tuple[str, ...] = ()
    outcome: str = "selected"  # or "outranked by <code>", "suppressed by <code>"

    @property
    def group(self) -> tuple[str, str | None]:
        """Findings compete within a group: the dose, or one draft order."""
        return (self.kind, self.subject if self.kind == "order" else None)

    def with_outcome(self, outcome: str) -> Fired:
        return replace(self, outcome=outcome)

    @property
    def subject(self) -> str | None:
        """What the finding is about beyond the patient (the `ref` of an order fact)."""
        for fact in self.facts.values():
            if "ref" in fact:
                return str(fact["ref"])
        return None


@dataclass(frozen=True)
class Evaluation:
    """The findings left after precedence, and the trace of every rule that fired."""

    service_id: str
    now: datetime
    version: str
    findings: tuple[Fired, ...]
    trace: tuple[Fired, ...]
    facts: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    # Findings of rules in silent mode: what precedence would have selected had they been live (the live findings
    # above are resolved as if they had not fired). Audited as silent cards, never returned.
    silent: tuple[Fired, ...] = ()

    @property
    def codes(self) -> list[str]:
        """The recommendation codes made, each once, dose first."""
        return list(dict.fromkeys(f.code for f in self.findings))

    def fired(self, rule_id: str) -> bool:
        return any(f.rule_id == rule_id for f in self.trace)


class RuleEngine:
    """One per process (built in create_app): a ruleset per service compiled from rules/."""

    def __init__(self, knowledge: Knowledge, *, silent_as_live: bool = False) -> None:
        """`silent_as_live`: rules in silent mode answer as if live (what a change would do once live)."""
        self.knowledge = knowledge
        self._silent = frozenset() if silent_as_live else frozenset(
            c.rule.id for c in knowledge.rules if c.rule.mode == "silent")
        self._lock = threading.Lock()
        self._sessions = itertools.count(1)  # session ids, unique in this process (each has its own engine)
        self._rulesets: dict[str, int] = {}
        for service_id in sorted(knowledge.services):
            rules: dict[str, Any] = {SENTINEL_RULE: {"all": [{"m": dict(SENTINEL_FACT)}]}}
            for compiled in knowledge.rules_for(service_id):
                rules[compiled.rule.id] = compiled.conditions
            with self._lock:
                self._rulesets[service_id] = core.create_ruleset(f"{service_id}-{knowledge.digest[:12]}", _text(rules))

    def evaluate(self, service_id: str, facts: list[dict[str, Any]], now: datetime) -> Evaluation:
        """Run the service's rules on these facts in an isolated session; resolve precedence."""
        if service_id not in self._rulesets:
            raise EngineError(f"no rules for service {service_id!r}")
        problems = check_facts(facts, self.knowledge.facts)
        if problems:
            raise EngineError("facts do not fit rules/facts.yaml: " + "; ".join(problems))
        fired = self._run(self._rulesets[service_id], facts)
        # durable-rules compiles each branch of an $or into a rule of its own: a fact that meets two branches fires
        # the rule twice on the same facts. A rule fires once per evaluation and set of facts matched.
        once = {(rule_id, _text(matched)): (rule_id, matched) for rule_id, matched in fired}
        trace = [self._fired_record(self.knowledge.rule(rule_id), matched) for rule_id, matched in once.values()]
        silent: list[Fired] = []
        if self._silent and any(f.rule_id in self._silent for f in trace):
            # What the silent rules would say: their findings in a resolution with every rule live. The live answer
            # is resolved without them, so a rule in pilot never changes, outranks or suppresses a live card.
            silent = [f for f in resolve_precedence(trace)[0] if f.rule_id in self._silent]
            live = [f for f in trace if f.rule_id not in self._silent]
            findings, resolved = resolve_precedence(live)
            quiet = [f.with_outcome("silent (in pilot): audited, not returned") for f in trace
                     if f.rule_id in self._silent]
            return Evaluation(service_id, now, self.knowledge.version, tuple(findings), tuple(resolved + quiet),
                              tuple(facts), tuple(silent))
        findings, trace = resolve_precedence(trace)
        return Evaluation(service_id, now, self.knowledge.version, tuple(findings), tuple(trace), tuple(facts))

    def _run(self, ruleset: int, facts: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """Assert the facts one at a time in a fresh session and run each rule's action as the engine hands it
        out: start, act, update the state, complete and take the next, as durable-rules' host does."""
        fired: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            sid = str(next(self._sessions))
            try:
                for fact in (SENTINEL_FACT, *facts):
                    result, state_offset = core.assert_fact(ruleset, _text({**fact, "sid": sid}))
                    if result in (NOT_HANDLED, OBSERVED):
                        continue
                    if result == DEFERRED:
                        state_offset = 0
                    started = core.start_action_for_state(ruleset, state_offset)
                    if started is None:
                        continue
                    state, message = started
                    while message is not None:
                        rule_id, matched = next(iter(orjson.loads(message).items()))
                        try:
                            if rule_id != SENTINEL_RULE:
                                fired.append(self._action(rule_id, matched))
                        except Exception as error:
                            core.abandon_action(ruleset, state_offset)
                            raise EngineError(f"a rule action failed: {str(error)[:300]}") from error
                        core.update_state(ruleset, state)
                        message = core.complete_and_start_action(ruleset, state_offset)
                return fired
            finally:
                core.delete_state(ruleset, sid)

    @staticmethod
    def _action(rule_id: str, matched: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A rule's action: the rule and the facts it matched by alias, without the session id."""
        return rule_id, {alias: {k: v for k, v in fact.items() if k != "sid"} for alias, fact in matched.items()}

    @staticmethod
    def _fired_record(compiled: CompiledRule, matched: dict[str, Any]) -> Fired:
        rule = compiled.rule
        return Fired(rule.id, rule.version, rule.conclude.code, rule.kind, rule.precedence, matched,
                     dict(compiled.parameters), tuple(rule.suppressed_by))


def resolve_precedence(trace: list[Fired]) -> tuple[list[Fired], list[Fired]]:
    """Precedence (docs/clinical.md, recommendations): one dose recommendation (the lowest precedence number; every
    finding of that code is kept, e.g. several red flags); patterns may accompany it; one recommendation per draft
    order; a finding whose rule lists a code that also fired in `suppressed_by` is dropped."""
    codes = {f.code for f in trace}
    decided: list[Fired] = []
    best: dict[tuple[str, str | None], Fired] = {}
    for f in trace:
        blocker = next((code for code in f.suppressed_by if code in codes), None)
        if blocker is not None:
            f = f.with_outcome(f"suppressed by {blocker}")
        elif f.kind != "pattern":
            current = best.get(f.group)
            if current is None or (f.precedence, f.rule_id) < (current.precedence, current.rule_id):
                best[f.group] = f
        decided.append(f)
    resolved = []
    for f in decided:
        if f.outcome == "selected" and f.kind != "pattern" and best[f.group].code != f.code:
            f = f.with_outcome(f"outranked by {best[f.group].code}")
        resolved.append(f)
    findings = sorted((f for f in resolved if f.outcome == "selected"),
                      key=lambda f: (KIND_ORDER[f.kind], f.precedence, f.rule_id, f.subject or ""))
    return findings, resolved
