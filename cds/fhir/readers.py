"""FHIR R4 resources -> typed clinical records, with the data hygiene of docs/clinical.md.

High-volume resources (Observations) are read with lean accessors over the JSON of the fields the rules use:
full model validation of a year of daily data would cost more than the rest of the evaluation. Extensions and
elements we do not use are ignored. Every value that is set aside (status, unknown unit, out of range, no date,
dated after `now`) is reported in `PatientRecord.set_aside` with its reason, never guessed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from msgspec import UNSET, UnsetType

from cds.clinical.records import (
    CURRENT,
    DATED_IN_FUTURE,
    DEVICE_NOT_WORN,
    HISTORY,
    IGNORED,
    IMPLAUSIBLE,
    INCOMPLETE_PANEL,
    LONGER_THAN_A_DAY,
    NO_DATE,
    NO_VALUE,
    REFUTED,
    STATUS_NOT_FINAL,
    STATUS_UNKNOWN,
    UNIT_NOT_UNDERSTOOD,
    BloodPressure,
    ConditionRecord,
    Dose,
    MinuteGoal,
    OrderRecord,
    PatientRecord,
    Reading,
    SetAside,
    StepGoal,
)
from cds.fhir import typed
from cds.fhir.steps import LONGEST_DAY, SHORTEST_DAY, UNKNOWN_SOURCE, StepPart, day_totals, source_of
from cds.knowledge import Knowledge

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = ("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10")

_new = tuple.__new__  # a named tuple made without its own Python __new__ (see RecordBuilder._lean_value)

MINUTES = {"min": 1.0, "h": 60.0, "s": 1 / 60, "hour": 60.0, "minute": 1.0, "minutes": 1.0}
STEP_UNITS = {"/d", "{steps}", "{steps}/d", "1/d", "{step}", "steps", "steps/day", "{count}/d"}
STEP_FACTORS = dict.fromkeys(STEP_UNITS, 1.0)
SCORE_UNITS = {"{score}", "1", "{#}", "{Score}", "score", ""}
WEEKLY_MINUTES = {"min/wk": 1.0, "min/(7.d)": 1.0, "min/week": 1.0}
KILOGRAMS = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237}
PER_WEEK = {"wk": 1.0, "d": 7.0, "mo": 12 / 52.1775, "a": 1 / 52.1775}
DAYS_A_WEEK = dict.fromkeys(("d/wk", "/wk", "{days}/wk", "d/(7.d)", "{#}/wk", "1/wk", "{times}/wk"), 1.0)
MINUTES_A_DAY = {"min/d": 1.0, "min": 1.0, "h/d": 60.0, "min/(24.h)": 1.0}
PERCENT = {"%"}
ANY_COUNT = (0.0, float("inf"))
# What an Observation is read as, by its LOINC code; one with codes of several kinds is read as the first of them.
OBSERVATION_KINDS = ("pain", "peg", "steps", "session", "evs weekly minutes", "evs days", "evs minutes a day",
                     "blood pressure", "temperature", "weight")
_LEAN_SCORE, _LEAN_STEPS, _LEAN_SESSION, _LEAN_PRESSURE, _LEAN_TEMPERATURE, _LEAN_WEIGHT = range(6)
LEAN_KINDS = {"pain": _LEAN_SCORE, "steps": _LEAN_STEPS, "session": _LEAN_SESSION, "blood pressure": _LEAN_PRESSURE,
              "temperature": _LEAN_TEMPERATURE, "weight": _LEAN_WEIGHT}
PRESSURE_UNITS = ("mm[Hg]", "mmHg")
# A value converted into the unit the rules use is rounded to this many decimals: the same quantity written in
# another UCUM unit (30 min as 0.5 h, 80 kg as 80000 g) gives the same number.
DECIMALS = 6
ABATEMENT = ("abatementDateTime", "abatementAge", "abatementPeriod", "abatementRange", "abatementString")
# Elements of an Observation that say nothing of the measurement: a copy that differs only in them is the same one.
NOT_THE_MEASUREMENT = frozenset(("id", "meta", "text", "identifier", "extension", "modifierExtension"))


# ---------------------------------------------------------------- small readers


def parse_time(value: Any) -> datetime | None:
    """A FHIR date, dateTime or instant as an aware datetime in UTC (no zone: UTC; a date: its midnight UTC). The
    same instant written with another UTC offset is the same moment, on the same day."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads "Z", dates and date-times
    except ValueError:
        try:
            if re.fullmatch(r"\d{4}", value):
                parsed = datetime(int(value), 1, 1)
            elif re.fullmatch(r"\d{4}-\d{2}", value):
                parsed = datetime(int(value[:4]), int(value[5:7]), 1)
            else:
                return None
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


def codes_of(concept: Any, system: str | tuple[str, ...] | None = None) -> list[str]:
    if not isinstance(concept, dict):
        return []
    systems = (system,) if isinstance(system, str) else system
    return [c["code"] for c in concept.get("coding") or [] if isinstance(c, dict) and isinstance(c.get("code"), str)
            and (systems is None or c.get("system") in systems)]


def loinc_codes(concept: Any) -> set[str]:
    """The LOINC codes of a CodeableConcept: codes_of(concept, LOINC) as a set."""
    codes: set[str] = set()
    if isinstance(concept, dict):
        for c in concept.get("coding") or []:
            if isinstance(c, dict) and c.get("system") == LOINC:
                code = c.get("code")
                if isinstance(code, str):
                    codes.add(code)
    return codes


def _only_loinc(concept: Any) -> str | None:
    """The code of a CodeableConcept whose only coding is a LOINC one; None for any other shape."""
    coding = concept.get("coding") if type(concept) is dict else None
    if type(coding) is not list or len(coding) != 1:
        return None
    first = coding[0]
    if type(first) is not dict or first.get("system") != LOINC:
        return None
    code = first.get("code")
    return code if type(code) is str else None


def _typed_loinc(concept: typed.Concept | UnsetType) -> str | None:
    """_only_loinc of a typed CodeableConcept."""
    if concept is UNSET or concept.coding is UNSET or len(concept.coding) != 1:
        return None
    first = concept.coding[0]
    return first.code if first.system == LOINC and first.code is not UNSET else None


def _pressure_parts(components: Any) -> list[tuple[str | None, Any, Any]] | None:
    """A blood pressure panel's two components as (only LOINC code, value, unit) for _lean_panel; None unless
    there are two, each with a valueQuantity."""
    if type(components) is not list or len(components) != 2:
        return None
    parts = []
    for component in components:
        if type(component) is not dict:
            return None
        quantity = component.get("valueQuantity")
        if type(quantity) is not dict:
            return None
        unit = quantity.get("code")
        parts.append((_only_loinc(component.get("code")), quantity.get("value"),
                      unit if type(unit) is str else quantity.get("unit")))
    return parts


def _typed_parts(components: list[typed.Component] | UnsetType) -> list[tuple[str | None, Any, Any]] | None:
    """_pressure_parts of typed components."""
    if components is UNSET or len(components) != 2:
        return None
    parts = []
    for component in components:
        quantity = component.valueQuantity
        if quantity is UNSET:
            return None
        parts.append((_typed_loinc(component.code), quantity.value,
                      quantity.code if quantity.code is not UNSET else quantity.unit))
    return parts


def _typed_source(obs: typed.Observation) -> str:
    """source_of a typed Observation: device, else the first performer, else meta.source (non-empty)."""
    if obs.device is not UNSET and obs.device.reference:
        return obs.device.reference
    for performer in obs.performer or ():
        if performer.reference:
            return performer.reference
    if obs.meta is not UNSET and obs.meta.source:
        return obs.meta.source
    return UNKNOWN_SOURCE


def _celsius(value: float, unit: str) -> float | None:
    """A temperature in Cel or [degF], in Celsius; None in any other unit."""
    if unit == "Cel":
        return value
    if unit == "[degF]":
        return (value - 32) * 5 / 9
    return None


def _whole_day(period: dict[str, Any], start: datetime, end: datetime) -> bool:
    """A period that is one calendar day: 23 to 25 hours, or the same date written without a time."""
    dates = [period.get("start"), period.get("end")]
    if all(isinstance(d, str) and len(d) == 10 for d in dates):
        return dates[0] == dates[1]
    return SHORTEST_DAY <= end - start <= LONGEST_DAY


def _effective(resource: dict[str, Any]) -> datetime | None:
    """The reading's moment: its dateTime; for a period, its end, except that a one-day period (a day's total)
    belongs to its day: the UTC day of its middle, which is the day it was written for whatever the UTC offset it
    was written with."""
    for name in ("effectiveDateTime", "effectiveInstant"):
        if name in resource:
            return parse_time(resource[name])
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        start, end = parse_time(period.get("start")), parse_time(period.get("end"))
        if start is not None and end is not None and _whole_day(period, start, end):
            return _day_start(start, end)
        return end or start
    return None


def _day_start(start: datetime, end: datetime) -> datetime:
    """The midnight (UTC) of the day a one-day period stands for: the day of its middle."""
    middle = start + (end - start) / 2
    return datetime(middle.year, middle.month, middle.day, tzinfo=UTC)


def _started(resource: dict[str, Any], when: datetime) -> datetime:
    """When a session began: the start of its period (when it has no moment of its own), else its moment."""
    if "effectiveDateTime" in resource or "effectiveInstant" in resource:
        return when
    period = resource.get("effectivePeriod")
    start = parse_time(period.get("start")) if isinstance(period, dict) else None
    return start if start is not None and start <= when else when


def _fingerprint(obs: dict[str, Any]) -> bytes:
    """What an Observation measured, whatever its id and bookkeeping: two with the same fingerprint are one."""
    meta = obs.get("meta")
    measured = {k: v for k, v in obs.items() if k not in NOT_THE_MEASUREMENT}
    if isinstance(meta, dict) and "source" in meta:
        measured["meta.source"] = meta["source"]
    return orjson.dumps(measured, option=orjson.OPT_SORT_KEYS)


def _reference_id(reference: Any) -> str | None:
    """The id a reference points to: 'Observation/x', an absolute URL ending so, or 'urn:uuid:x'."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    text = reference["reference"].removeprefix("urn:uuid:")
    return text.rstrip("/").rsplit("/", 1)[-1] or None


def _quantity(q: Any) -> tuple[float, str] | None:
    if not isinstance(q, dict):
        return None
    value = q.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    unit = q.get("code")
    if not isinstance(unit, str):
        unit = q.get("unit")
    return float(value), unit if isinstance(unit, str) else ""


def _score_value(element: dict[str, Any]) -> tuple[float, str] | None:
    """A score from valueQuantity or valueInteger (questionnaire-derived scores are often integers)."""
    quantity = _quantity(element.get("valueQuantity"))
    value = element.get("valueInteger")
    if quantity is None and isinstance(value, int) and not isinstance(value, bool):
        quantity = (float(value), "")
    return quantity


# ---------------------------------------------------------------- the reader


class SessionPart(NamedTuple):
    """One exercise session as read: when it began, its minutes (None: no duration recorded), who recorded it (the
    device, else the performer, else meta.source) and the Observation it came from."""

    start: datetime
    minutes: float | None
    origin: str
    label: str


class _Tables:
    """What a RecordBuilder reads from the knowledge: its code lists, plausibility bounds and lookup tables. Built
    once per rule set (Knowledge.derived) and shared, read-only, by every builder."""

    def __init__(self, knowledge: Knowledge) -> None:
        codes = knowledge.codes
        self.bounds = knowledge.values
        self.pain_nrs, self.peg_mean, self.peg_panel = (codes.loinc(n) for n in ("pain_nrs", "peg_mean", "peg_panel"))
        self.peg_items = codes.loinc("peg_items")
        self.steps, self.steps_period = codes.loinc("steps_daily"), codes.loinc("steps_period")
        self.session, self.evs_minutes = codes.loinc("session_minutes"), codes.loinc("evs_weekly_minutes")
        self.bp_panel, self.systolic, self.diastolic = (
            codes.loinc(n) for n in ("blood_pressure_panel", "systolic", "diastolic"))
        self.temperature, self.weight = codes.loinc("body_temperature"), codes.loinc("body_weight")
        # Vital signs whose preliminary readings still count, as unconfirmed (a precaution to recheck).
        self.unconfirmed_codes = self.bp_panel | self.systolic | self.diastolic | self.temperature
        self.evs_days, self.evs_minutes_a_day = codes.loinc("evs_days_per_week"), codes.loinc("evs_minutes_per_day")
        self.pa_system = codes.systems.get("pa")
        self.activity_panel, self.device_wear = frozenset(codes.activity_panel), frozenset(codes.device_wear)
        self.minute_goal_measures = frozenset(codes.minute_goal_measures)
        self.dose_patterns = instruction_patterns(tuple(codes.instruction_dose))
        self.quota_patterns = instruction_patterns(tuple(codes.goal_quota))
        self.step_goal_words = re.compile(codes.step_goal_words, re.IGNORECASE) if codes.step_goal_words else None
        # The Observation statuses that count as current (rules/statuses.yaml), for the one-pass readers: one set
        # lookup a reading.
        self.current_observation = knowledge.statuses.codes("observation", CURRENT) if knowledge.statuses \
            else frozenset()
        self.status_of = knowledge.status_of
        self.clinical_policy = {vs.id: vs.clinical_status for vs in knowledge.value_sets.values()}
        self._knowledge = knowledge
        self._value_sets = knowledge.value_set_index
        self._eligibility = codes.eligibility_value_set
        self._exercise = frozenset(codes.exercise_orders)
        self._weight_measures = frozenset(codes.weight_goal_measures)
        self._explains_weight_loss = frozenset(codes.explains_weight_loss)
        # LOINC code -> the rank in OBSERVATION_KINDS of what an Observation of it is (the first kind listing it).
        self.rank_of: dict[str, int] = {}
        for rank, listed in enumerate((self.pain_nrs, self.peg_mean | self.peg_panel, self.steps | self.steps_period,
                                       self.session, self.evs_minutes, self.evs_days, self.evs_minutes_a_day,
                                       self.bp_panel | self.systolic | self.diastolic, self.temperature, self.weight)):
            for code in listed:
                self.rank_of.setdefault(code, rank)
        # The usual Observations, read by _lean: a LOINC code of a score, a day's steps, a session, a blood
        # pressure panel (not a lone systolic or diastolic), a temperature or a weight -> kind.
        self.lean_kind = {code: LEAN_KINDS[OBSERVATION_KINDS[rank]] for code, rank in self.rank_of.items()
                          if OBSERVATION_KINDS[rank] in LEAN_KINDS
                          and (OBSERVATION_KINDS[rank] != "blood pressure" or code in self.bp_panel)}
        self.pressure_part = {**dict.fromkeys(self.systolic, 0), **dict.fromkeys(self.diastolic, 1)}
        b = self.bounds
        self.session_bounds = (0, b["session_max_plausible_minutes"])
        self.pressure_bounds = (b["bp_min_mmhg"], b["bp_max_mmhg"])
        self.temperature_bounds = (b["temperature_min_celsius"], b["temperature_max_celsius"])
        self.weight_bounds = (b["weight_min_kg"], b["weight_max_kg"])
        self.dose_limits = DoseLimits.of(b)


class RecordBuilder(_Tables):
    """Reads prefetch entries into a PatientRecord; one per evaluation."""

    def __init__(self, patient_id: str, knowledge: Knowledge, now: datetime | None = None) -> None:
        # The knowledge's tables are built once per rule set and taken as they are (about 15 us a call to build).
        self.__dict__.update(knowledge.derived("record-builder", _Tables).__dict__)
        self.record = PatientRecord(patient_id)
        self.now = now.replace(tzinfo=UTC) if now is not None and now.tzinfo is None else now
        self.step_parts: list[StepPart] = []
        # Activity panels (hasMember): member id -> panel id; panels whose own value was counted; members held.
        self.panel_of: dict[str, str] = {}
        self.valued_panels: set[str] = set()
        self.member_sessions: dict[str, list[SessionPart]] = {}
        self.panel_origin: dict[str, str] = {}
        self.evs_parts: dict[date, dict[str, Reading]] = {}
        # Sessions as read, before the sessions of one source that overlap in time are united (finish_sessions).
        self.session_parts: list[SessionPart] = []
        # What the general path has read already, by fingerprint: a copy of it under another id is not read again.
        self.seen: dict[bytes, str] = {}

    def skip(self, source: str, why: str, reason: str) -> None:
        self.record.set_aside.append(SetAside(source, why, reason))

    def status(self, table: str, code: Any, source: str) -> str:
        """What a status means (rules/statuses.yaml); a code the table does not list is set aside and reported."""
        meaning = self.status_of(table, code if isinstance(code, str) else None)
        if meaning == "unknown":
            self.skip(source, f"{table} status {str(code)[:40]!r} is not one rules/statuses.yaml knows",
                      STATUS_UNKNOWN)
        return meaning

    def add(self, resource: dict[str, Any]) -> None:
        kind = resource.get("resourceType")
        if kind == "Observation":
            self.observation(resource)
        elif kind == "Condition":
            self.condition(resource)
        elif kind == "ServiceRequest":
            self.order(resource)
        elif kind == "Goal":
            self.goal(resource)
        elif kind == "CarePlan":
            self.care_plan(resource)
        elif kind == "Patient":
            self.record.birth_date = _birth_date(resource.get("birthDate"))

    # ------------------------------------------------------------ Observation

    def observation(self, obs: dict[str, Any]) -> None:
        if "hasMember" not in obs and self._lean(obs):
            return
        source = f"Observation/{obs.get('id', '?')}"
        fingerprint = _fingerprint(obs)
        if fingerprint in self.seen:
            self.record.duplicates.append(f"{source}: the same reading as {self.seen[fingerprint]}")
            return
        self.seen[fingerprint] = source
        codes = loinc_codes(obs.get("code"))
        status = obs.get("status")
        meaning = self.status("observation", status, source)
        if meaning == "unknown":
            return
        confirmed = meaning == CURRENT
        if meaning == "unconfirmed" and codes.isdisjoint(self.unconfirmed_codes):
            self.skip(source, f"status {status!r} does not count for this reading", STATUS_NOT_FINAL)
            return
        if meaning not in (CURRENT, "unconfirmed"):
            self.skip(source, f"status {status!r}: as if never recorded", IGNORED)
            return
        moment = obs.get("effectiveDateTime")  # the usual case, read without _effective's search
        when = parse_time(moment) if moment is not None else _effective(obs)
        if when is None:
            self.skip(source, "no effective date", NO_DATE)
            return
        if self.now is not None and when > self.now:
            self.skip(source, f"dated {when.isoformat()}, after the moment of evaluation", DATED_IN_FUTURE)
            return
        if obs.get("component") and self._worn_too_little(obs, source):
            return
        if obs.get("hasMember") and (not codes.isdisjoint(self.session) or self._is_activity_panel(obs)):
            self._panel(obs, source, when, codes)
            return
        ranks = [self.rank_of[code] for code in codes if code in self.rank_of]
        if not ranks:
            return
        kind = OBSERVATION_KINDS[min(ranks)]
        b = self.bounds
        if kind == "pain":
            self._score(obs, source, when, self.record.pain)
        elif kind == "peg":
            self._peg(obs, source, when)
        elif kind == "steps":
            self._steps(obs, source, when)
        elif kind == "session":
            self._session(obs, source, when)
        elif kind == "evs weekly minutes":
            self._converted(obs, source, when, WEEKLY_MINUTES, self.record.evs_minutes, "min/wk",
                            (0, b["evs_weekly_max_minutes"]))
        elif kind == "evs days":
            self._evs_part(obs, source, when, "days")
        elif kind == "evs minutes a day":
            self._evs_part(obs, source, when, "minutes")
        elif kind == "blood pressure":
            self._blood_pressure(obs, source, when, codes, confirmed)
        elif kind == "temperature":
            self._temperature(obs, source, when, confirmed)
        elif kind == "weight":
            self._converted(obs, source, when, KILOGRAMS, self.record.weight, "kg",
                            self.weight_bounds)

    def _lean(self, obs: dict[str, Any]) -> bool:
        """The usual Observation in one pass: final, an effectiveDateTime not after now, and one LOINC coding,
        either of a pain score, a day's steps, a session, a temperature or a weight with a valueQuantity in a known
        unit within bounds, or of a blood pressure panel whose only two components are a systolic and a diastolic
        pressure, each with one LOINC coding and a value in mm[Hg] within bounds. Anything else (a reading to set
        aside, a period, a panel member) returns False having changed nothing, and is read by the general path,
        which gives the same reading for what this accepts. `lean_typed` is the same reading of a typed
        Observation: both take their elements out and leave the decision to `_lean_moment`, `_lean_value` and
        `_lean_panel`."""
        if obs.get("status") not in self.current_observation:
            return False
        loinc = _only_loinc(obs.get("code"))
        kind = self.lean_kind.get(loinc) if loinc is not None else None
        moment = obs.get("effectiveDateTime")
        if kind is None or type(moment) is not str:
            return False
        when = self._lean_moment(moment)
        if when is None:
            return False
        label = f"Observation/{obs.get('id', '?')}"
        if kind == _LEAN_PRESSURE:
            return self._lean_panel(when, label, _pressure_parts(obs.get("component")))
        quantity = obs.get("valueQuantity")
        if type(quantity) is not dict or "component" in obs:
            return False
        number = quantity.get("value")
        if type(number) is not float and type(number) is not int:  # bool is neither
            return False
        unit = quantity.get("code")
        if type(unit) is not str:
            unit = quantity.get("unit")
            if type(unit) is not str:
                unit = ""
        if kind == _LEAN_STEPS:
            return "effectivePeriod" not in obs and self._lean_value(kind, when, label, float(number), unit,
                                                                     source_of(obs))
        if kind == _LEAN_SESSION:
            return self._lean_session(when, label, float(number), unit, obs.get("id"), obs)
        return self._lean_value(kind, when, label, float(number), unit, obs.get("id"))

    def lean_typed(self, obs: typed.Observation) -> bool:
        """`_lean` of an Observation decoded typed (cds/fhir/typed.py), whose elements already have their JSON
        types; False for what `_lean` would leave to the general path."""
        if obs.status not in self.current_observation or obs.hasMember is not UNSET:
            return False
        loinc = _typed_loinc(obs.code)
        kind = self.lean_kind.get(loinc) if loinc is not None else None
        moment = obs.effectiveDateTime
        if kind is None or moment is UNSET:
            return False
        when = self._lean_moment(moment)
        if when is None:
            return False
        ident = None if obs.id is UNSET else obs.id
        label = f"Observation/{'?' if ident is None else ident}"
        if kind == _LEAN_PRESSURE:
            return self._lean_panel(when, label, _typed_parts(obs.component))
        quantity = obs.valueQuantity
        if quantity is UNSET or quantity.value is UNSET or obs.component is not UNSET:
            return False
        unit = quantity.code if quantity.code is not UNSET else quantity.unit if quantity.unit is not UNSET else ""
        if kind == _LEAN_STEPS:
            return obs.effectivePeriod is UNSET and self._lean_value(kind, when, label, quantity.value, unit,
                                                                     _typed_source(obs))
        if kind == _LEAN_SESSION:
            return self._lean_session(when, label, float(quantity.value), unit, ident, obs)
        return self._lean_value(kind, when, label, quantity.value, unit, ident)

    def _lean_moment(self, moment: str) -> datetime | None:
        """An effectiveDateTime as _lean reads it; None if it is not an ISO moment or comes after now."""
        try:
            when = datetime.fromisoformat(moment)
        except ValueError:
            return None
        zone = when.tzinfo
        if zone is not UTC:  # "Z" reads as UTC itself: the usual moment costs no more than this test
            when = when.replace(tzinfo=UTC) if zone is None else when.astimezone(UTC)
        return None if self.now is not None and when > self.now else when

    def _lean_value(self, kind: int, when: datetime, label: str, value: float, unit: str, detail: Any) -> bool:
        """A reading of one value in `unit`, kept when its unit is known and it is within bounds. `detail` is the
        steps' source, or for the other kinds the Observation's id (a session that is a panel's member waits
        for its panel: the general path). The readings are made by tuple.__new__, without the named tuples' own
        __new__ (a Python frame each: about 0.1 us a reading)."""
        if kind == _LEAN_SCORE:
            if unit not in SCORE_UNITS or not 0 <= value <= 10:
                return False
            self.record.pain.append(_new(Reading, (when, value, label)))
        elif kind == _LEAN_STEPS:
            factor = STEP_FACTORS.get(unit)
            if factor is None:
                return False
            steps = value * factor
            if not ANY_COUNT[0] <= steps <= ANY_COUNT[1]:
                return False
            self.step_parts.append(_new(StepPart, (when.date(), detail, when, steps, label, None)))
        elif kind == _LEAN_TEMPERATURE:
            celsius = _celsius(value, unit)
            if celsius is None or not self.temperature_bounds[0] <= celsius <= self.temperature_bounds[1]:
                return False
            self.record.temperature.append(_new(Reading, (when, round(celsius, 2), label)))
        else:
            factor = KILOGRAMS.get(unit)
            if factor is None:
                return False
            kilograms = round(value * factor, DECIMALS)
            if not self.weight_bounds[0] <= kilograms <= self.weight_bounds[1]:
                return False
            self.record.weight.append(_new(Reading, (when, kilograms, label)))
        return True

    def _lean_session(self, when: datetime, label: str, value: float, unit: str, ident: Any,
                      obs: dict[str, Any] | typed.Observation) -> bool:
        """A session with a duration in a known unit within bounds, that no panel holds: kept as a part, to be
        united with its source's other sessions (finish_sessions)."""
        factor = MINUTES.get(unit)
        if factor is None or (self.panel_of and str(ident) in self.panel_of):
            return False
        minutes = round(value * factor, DECIMALS)
        if not self.session_bounds[0] <= minutes <= self.session_bounds[1]:
            return False
        origin = source_of(obs) if type(obs) is dict else _typed_source(obs)  # type: ignore[arg-type]
        self.session_parts.append(_new(SessionPart, (when, minutes, origin, label)))
        return True

    def _lean_panel(self, when: datetime, label: str, parts: list[tuple[str | None, Any, Any]] | None) -> bool:
        """A blood pressure panel from its two components as (LOINC code, value, unit): a systolic and a
        diastolic pressure, each a number in mm[Hg] within bounds; False for anything else."""
        if parts is None:
            return False
        values = [0.0, 0.0]
        seen = set()
        for loinc, value, unit in parts:
            part = self.pressure_part.get(loinc) if loinc is not None else None
            if part is None or part in seen or (type(value) is not float and type(value) is not int):
                return False
            if unit not in PRESSURE_UNITS or not self.pressure_bounds[0] <= value <= self.pressure_bounds[1]:
                return False
            seen.add(part)
            values[part] = float(value)
        self.record.blood_pressure.append(BloodPressure(when, values[0], values[1], label, True))
        return True

    def _score(self, obs: dict[str, Any], source: str, when: datetime, into: list[Reading]) -> None:
        quantity = _score_value(obs)
        if quantity is None:
            self.skip(source, "no numeric value", NO_VALUE)
            return
        value, unit = quantity
        if unit not in SCORE_UNITS:
            self.skip(source, f"unit {unit!r} of a 0-10 score not understood", UNIT_NOT_UNDERSTOOD)
        elif not 0 <= value <= 10:
            self.skip(source, f"score {value:g} outside 0-10", IMPLAUSIBLE)
        else:
            into.append(Reading(when, value, source))

    def _peg(self, obs: dict[str, Any], source: str, when: datetime) -> None:
        if _quantity(obs.get("valueQuantity")) is not None or "valueInteger" in obs:
            self._score(obs, source, when, self.record.peg)
            return
        items = []
        for component in obs.get("component") or []:
            if isinstance(component, dict) and set(codes_of(component.get("code"), LOINC)) & self.peg_items:
                quantity = _score_value(component)
                if quantity is not None and 0 <= quantity[0] <= 10:
                    items.append(quantity[0])
        if len(items) == len(self.peg_items):
            self.record.peg.append(Reading(when, sum(items) / len(items), source))
        else:
            self.skip(source, "PEG panel without its three items", INCOMPLETE_PANEL)

    def _steps(self, obs: dict[str, Any], source: str, when: datetime) -> None:
        """A daily total or an interval's count, kept until every reading is in (cds/fhir/steps.py sums them)."""
        value = self._value(_quantity(obs.get("valueQuantity")), source, STEP_FACTORS, "steps", ANY_COUNT)
        if value is None:
            return
        period = obs.get("effectivePeriod")
        if not isinstance(period, dict):  # a moment: the day's total so far
            self.step_parts.append(StepPart(when.date(), source_of(obs), when, value, source))
            return
        start, end = parse_time(period.get("start")), parse_time(period.get("end"))
        if start is None or end is None or end < start:
            self.skip(source, "steps over a period without a start and a later end", NO_DATE)
        elif end - start > LONGEST_DAY:
            self.skip(source, f"steps over {end - start} are not one day's count", LONGER_THAN_A_DAY)
        elif _whole_day(period, start, end):  # a day's total, on the day it starts
            self.step_parts.append(StepPart(start.date(), source_of(obs), start, value, source))
        else:  # shorter than a day: an interval, summed with the source's other intervals of the day it starts
            self.step_parts.append(StepPart(start.date(), source_of(obs), end, value, source, (start, end)))

    def _session(self, obs: dict[str, Any], source: str, when: datetime) -> None:
        """A session counts even without a duration (an untimed session); a duration must have a known unit. A
        member of an activity panel is held until every reading is in: it counts only through its panel."""
        panel = self.panel_of.get(str(obs.get("id"))) if self.panel_of else None
        quantity = _quantity(obs.get("valueQuantity"))
        start = _started(obs, when)
        if quantity is None:
            if panel is None:
                self.session_parts.append(SessionPart(start, None, source_of(obs), source))
            return
        into = self.session_parts if panel is None else self.member_sessions.setdefault(panel, [])
        minutes = self._value(quantity, source, MINUTES, "minutes", self.session_bounds)
        if minutes is not None:
            into.append(SessionPart(start, minutes, source_of(obs), source))

    def _is_activity_panel(self, obs: dict[str, Any]) -> bool:
        return bool(self.pa_system and set(codes_of(obs.get("code"), self.pa_system)) & self.activity_panel)

    def _panel(self, obs: dict[str, Any], source: str, when: datetime, codes: AbstractSet[str]) -> None:
        """One activity as a panel with members: the panel's own duration counts, once; without one, its members
        give one session (see finish_panels)."""
        ident = str(obs.get("id"))
        self.panel_origin.setdefault(ident, source_of(obs))
        if codes & self.session and _quantity(obs.get("valueQuantity")) is not None:
            self.valued_panels.add(ident)
            minutes = self._value(_quantity(obs.get("valueQuantity")), source, MINUTES, "minutes",
                                  self.session_bounds)
            if minutes is not None:
                self.session_parts.append(SessionPart(_started(obs, when), minutes, source_of(obs), source))

    def finish_panels(self) -> None:
        """Each panel without its own duration counts as one session: its longest member. The members of one
        activity (its duration, its moderate and its vigorous minutes) overlap; the longest never counts a minute
        twice."""
        for panel, members in self.member_sessions.items():
            timed = [m for m in members if m.minutes is not None]
            if panel not in self.valued_panels and timed:
                longest = max(timed, key=lambda m: (m.minutes, m.start))
                self.session_parts.append(SessionPart(min(m.start for m in timed), longest.minutes,
                                                      self.panel_origin.get(panel, longest.origin),
                                                      f"Observation/{panel}"))

    def finish_sessions(self) -> None:
        """One session per activity: the sessions of one source that overlap in time are one session, their union
        (three durations of one activity sent from the same start count as the longest); the same session sent
        twice counts once. A session without a duration inside a timed one of its source is that session."""
        by_origin: dict[str, list[SessionPart]] = {}
        for part in self.session_parts:
            listed = by_origin.get(part[2])
            if listed is None:
                by_origin[part[2]] = [part]
            else:
                listed.append(part)
        for origin in sorted(by_origin) if len(by_origin) > 1 else by_origin:
            self._unite(by_origin[origin])

    def _unite(self, parts: list[SessionPart]) -> None:
        """The sessions of one source, united where they overlap."""
        sessions, duplicates = self.record.sessions, self.record.duplicates
        timed = sorted((p for p in parts if p[1] is not None), key=_by_start_longest_first)
        spans: list[tuple[datetime, datetime]] = []
        index, count = 0, len(timed)
        while index < count:
            first = timed[index]
            start, end = first[0], first[0] + timedelta(minutes=first[1] or 0.0)
            kept, stop = first, index + 1
            while stop < count and (timed[stop][0] < end or timed[stop][0] == start):
                other = timed[stop]
                other_end = other[0] + timedelta(minutes=other[1] or 0.0)
                if other_end > end:
                    end = other_end
                if (other[1] or 0.0) > (kept[1] or 0.0):
                    kept = other
                stop += 1
            minutes = first[1] if stop == index + 1 else round((end - start).total_seconds() / 60, DECIMALS)
            sessions.append(_new(Reading, (start, minutes, kept[3])))
            duplicates.extend(f"{p[3]}: the same session as {kept[3]}" for p in timed[index:stop] if p is not kept)
            spans.append((start, end))
            index = stop
        untimed: set[datetime] = set()
        for part in sorted((p for p in parts if p[1] is None), key=_by_start):
            if part[0] in untimed or any(a <= part[0] <= b for a, b in spans):
                duplicates.append(f"{part[3]}: a session already counted")
                continue
            untimed.add(part[0])
            self.record.untimed_sessions.append(Reading(part[0], 0.0, part[3]))

    def _worn_too_little(self, obs: dict[str, Any], source: str) -> bool:
        """A reading whose device-wear component is below wear_min_percent is set aside."""
        if not self.pa_system:
            return False
        for component in obs.get("component") or []:
            if isinstance(component, dict) and set(codes_of(component.get("code"), self.pa_system)) & self.device_wear:
                quantity = _quantity(component.get("valueQuantity"))
                if quantity is not None and quantity[1] in PERCENT and quantity[0] < self.bounds["wear_min_percent"]:
                    self.skip(source, f"device worn {quantity[0]:g} % of the period, below "
                                      f"{self.bounds['wear_min_percent']:g} %", DEVICE_NOT_WORN)
                    return True
        return False

    def _evs_part(self, obs: dict[str, Any], source: str, when: datetime, part: str) -> None:
        """The Exercise Vital Sign's two questions (days a week, minutes a day), paired by day in finish_evs."""
        quantity = _quantity(obs.get("valueQuantity"))
        value = obs.get("valueInteger")
        if quantity is None and isinstance(value, int) and not isinstance(value, bool):
            quantity = (float(value), "d/wk" if part == "days" else "min/d")
        factors, bounds = (DAYS_A_WEEK, (0, 7)) if part == "days" else (MINUTES_A_DAY, (0, 1440))
        number = self._value(quantity, source, factors, f"exercise {part}", bounds)
        if number is None:
            return
        kept = self.evs_parts.setdefault(when.date(), {}).get(part)
        if kept is None or when >= kept.when:
            self.evs_parts[when.date()][part] = Reading(when, number, source)

    def finish_evs(self) -> None:
        """Days a week x minutes a day, answered the same day, is the weekly Exercise Vital Sign; one without the
        other is set aside."""
        for parts in self.evs_parts.values():
            days, minutes = parts.get("days"), parts.get("minutes")
            if days is not None and minutes is not None:
                weekly = days.value * minutes.value
                if weekly <= self.bounds["evs_weekly_max_minutes"]:
                    self.record.evs_minutes.append(Reading(max(days.when, minutes.when), weekly, minutes.source))
                else:
                    self.skip(minutes.source, f"{weekly:g} min/wk is not plausible", IMPLAUSIBLE)
            else:
                only = days or minutes
                assert only is not None
                self.skip(only.source, "Exercise Vital Sign without its other question on the same day",
                          INCOMPLETE_PANEL)

    def _value(self, quantity: tuple[float, str] | None, source: str, factors: dict[str, float], what: str,
               bounds: tuple[float, float]) -> float | None:
        """A quantity in one of these units, converted and within bounds; else None, the reading set aside with
        its reason (no value, unit not understood, implausible)."""
        if quantity is None:
            self.skip(source, f"{what} without a numeric value", NO_VALUE)
            return None
        value, unit = quantity
        if unit not in factors:
            self.skip(source, f"unit {unit!r} not understood for {what}", UNIT_NOT_UNDERSTOOD)
            return None
        converted = round(value * factors[unit], DECIMALS)
        if not bounds[0] <= converted <= bounds[1]:
            self.skip(source, f"{converted:g} {what} is not plausible", IMPLAUSIBLE)
            return None
        return converted

    def _converted(self, obs: dict[str, Any], source: str, when: datetime, factors: dict[str, float],
                   into: list[Reading], what: str, bounds: tuple[float, float]) -> None:
        converted = self._value(_quantity(obs.get("valueQuantity")), source, factors, what, bounds)
        if converted is not None:
            into.append(Reading(when, converted, source))

    def _temperature(self, obs: dict[str, Any], source: str, when: datetime, confirmed: bool) -> None:
        quantity = _quantity(obs.get("valueQuantity"))
        if quantity is None:
            self.skip(source, "no numeric value", NO_VALUE)
            return
        celsius = _celsius(*quantity)
        if celsius is None:
            self.skip(source, f"unit {quantity[1]!r} not understood for a temperature", UNIT_NOT_UNDERSTOOD)
            return
        if self.temperature_bounds[0] <= celsius <= self.temperature_bounds[1]:
            into = self.record.temperature if confirmed else self.record.temperature_unconfirmed
            into.append(Reading(when, round(celsius, 2), source))
        else:
            self.skip(source, f"temperature {celsius:.1f} Cel is not plausible", IMPLAUSIBLE)

    def _blood_pressure(self, obs: dict[str, Any], source: str, when: datetime, codes: AbstractSet[str],
                        confirmed: bool) -> None:
        values: dict[str, float] = {}
        parts: list[tuple[AbstractSet[str], Any]] = [(loinc_codes(c.get("code")), c.get("valueQuantity"))
                                                     for c in obs.get("component") or [] if isinstance(c, dict)]
        if codes & (self.systolic | self.diastolic):
            parts.append((codes, obs.get("valueQuantity")))
        for part_codes, q in parts:
            quantity = _quantity(q)
            if quantity is None:
                continue
            if quantity[1] not in PRESSURE_UNITS:
                self.skip(source, f"unit {quantity[1]!r} not understood for a blood pressure", UNIT_NOT_UNDERSTOOD)
                continue
            for name, listed in (("systolic", self.systolic), ("diastolic", self.diastolic)):
                if not part_codes & listed:
                    continue
                if self.pressure_bounds[0] <= quantity[0] <= self.pressure_bounds[1]:
                    values[name] = quantity[0]
                else:
                    self.skip(source, f"{name} {quantity[0]:g} mm[Hg] is not plausible", IMPLAUSIBLE)
        if values:
            self.record.blood_pressure.append(BloodPressure(when, values.get("systolic"), values.get("diastolic"),
                                                            source, confirmed))

    # ------------------------------------------------------------ Condition, ServiceRequest, Goal

    def condition(self, resource: dict[str, Any]) -> None:
        """A Condition counts unless its verification status says it is refuted or entered in error; its clinical
        status says whether it is current or over, in each value set as the value set's clinical_status reads it
        (rules/statuses.yaml, value-sets/)."""
        reference = f"Condition/{resource.get('id', '?')}"
        clinical = self._concept_status("condition-clinical", resource.get("clinicalStatus"), reference)
        verification = self._concept_status("condition-verification", resource.get("verificationStatus"), reference)
        if "unknown" in (clinical, verification):
            return
        if verification == "ignored":
            self.skip(reference, "verification status refuted or entered in error", REFUTED)
            return
        snomed = sorted(codes_of(resource.get("code"), SNOMED))
        icd = sorted(codes_of(resource.get("code"), ICD10))
        value_sets = self._value_sets.lookup(snomed, icd)
        if not value_sets:
            return
        abated = any(name in resource for name in ABATEMENT)
        history = frozenset(vs for vs in value_sets if clinical == HISTORY and self._over(vs, abated))
        chronic = self._eligibility in value_sets and self._eligibility not in history
        recorded = parse_time(resource.get("recordedDate")) or parse_time(resource.get("onsetDateTime"))
        if recorded is None and isinstance(resource.get("onsetPeriod"), dict):
            recorded = parse_time(resource["onsetPeriod"].get("start"))
        code = next(iter(value_sets.values()), snomed[0] if snomed else (icd or ["?"])[0])
        self.record.conditions.append(ConditionRecord(code, value_sets, chronic, recorded, reference, history))

    def _activity_goal(self, resource: dict[str, Any]) -> bool:
        """A Goal in the PA IG's PhysicalActivity category."""
        pa = self._knowledge.codes.pa_category
        system = self._knowledge.codes.systems.get(pa.system)
        return any(pa.code in codes_of(concept, system) for concept in resource.get("category") or []
                   if isinstance(concept, dict))

    def _over(self, value_set: str, abated: bool) -> bool:
        """Whether a condition whose clinical status says it is over counts as over in this value set."""
        policy = self.clinical_policy.get(value_set, "current")
        return policy == "current" or (policy == "until-abated" and abated)

    def _concept_status(self, table: str, concept: Any, reference: str) -> str:
        """The meaning of a CodeableConcept status: its code in the table's code system, else its first code."""
        if concept is None:
            return self.status(table, None, reference)
        statuses = self._knowledge.statuses
        system = statuses.tables[table].code_system if statuses else None
        codes = codes_of(concept, system) or codes_of(concept)
        return self.status(table, codes[0] if codes else None, reference)

    def order(self, resource: dict[str, Any]) -> None:
        reference = f"ServiceRequest/{resource.get('id', '?')}"
        if not set(codes_of(resource.get("code"), SNOMED)) & self._exercise:
            return
        status = resource.get("status")
        meaning = self.status("service-request", status, reference)
        if meaning not in (CURRENT, HISTORY):
            if meaning != "unknown":
                self.skip(reference, f"status {status!r}: as if never recorded", IGNORED)
            return
        authored = parse_time(resource.get("authoredOn"))
        self.record.orders.append(OrderRecord(reference, meaning, authored, self._dose(resource, reference),
                                              resource, _order_start(resource) or authored))
        if meaning == CURRENT and for_pain(resource.get("reasonCode"), self._knowledge):
            self.record.pain_orders.append(reference)

    def _dose(self, resource: dict[str, Any], reference: str) -> Dose | None:
        """The order's dose; a written dose out of the plausible range is set aside with its reason."""
        dose, problem = read_dose(resource, self.dose_patterns, self.dose_limits)
        if problem is not None:
            self.skip(reference, f"dose set aside: {problem}", IMPLAUSIBLE)
        return dose

    def care_plan(self, resource: dict[str, Any]) -> None:
        """A CarePlan's exercise activities, read as exercise orders (a dose from scheduledTiming, else from the
        description): current while the plan and the activity are, the past when either is over."""
        reference = f"CarePlan/{resource.get('id', '?')}"
        status = resource.get("status")
        plan = self.status("care-plan", status, reference)
        if plan not in (CURRENT, HISTORY):
            if plan != "unknown":
                self.skip(reference, f"status {status!r}: as if never recorded", IGNORED)
            return
        period = resource.get("period")
        period = period if isinstance(period, dict) else {}
        started = parse_time(period.get("start")) or parse_time(resource.get("created"))
        for index, activity in enumerate(resource.get("activity") or []):
            detail = activity.get("detail") if isinstance(activity, dict) else None
            if not isinstance(detail, dict) or not set(codes_of(detail.get("code"), SNOMED)) & self._exercise:
                continue
            activity_ref = f"{reference}#activity-{index + 1}"
            meaning = self.status("care-plan-activity", detail.get("status"), activity_ref)
            if meaning not in (CURRENT, HISTORY):
                continue
            standing = CURRENT if plan == CURRENT and meaning == CURRENT else HISTORY
            shaped = {"occurrenceTiming": detail.get("scheduledTiming"),
                      "patientInstruction": detail.get("description")}
            self.record.orders.append(OrderRecord(activity_ref, standing, started,
                                                  self._dose(shaped, activity_ref), resource, started))
            if standing == CURRENT and for_pain(detail.get("reasonCode"), self._knowledge):
                self.record.pain_orders.append(activity_ref)

    def goal(self, resource: dict[str, Any]) -> None:
        """A Goal in force: a weight-management goal, a minute goal (PA IG 82290-8 target), or a step quota (its
        target in steps a day, else a number of steps in its description; a step goal with neither is a goal whose
        quota cannot be read)."""
        reference = f"Goal/{resource.get('id', '?')}"
        status = resource.get("lifecycleStatus")
        if self.status("goal", status, reference) != CURRENT:
            return
        targets = [t for t in resource.get("target") or [] if isinstance(t, dict)]
        measures = {code for t in targets for code in codes_of(t.get("measure"), LOINC)}
        described = self._value_sets.lookup(codes_of(resource.get("description"), SNOMED),
                                             codes_of(resource.get("description"), ICD10))
        if measures & self._weight_measures or set(described) & self._explains_weight_loss:
            self.record.weight_goals.append(reference)
        for target in targets:
            if set(codes_of(target.get("measure"), LOINC)) & self.minute_goal_measures:
                quantity = _quantity(target.get("detailQuantity"))
                if quantity is not None and quantity[1] in WEEKLY_MINUTES and quantity[0] > 0:
                    self.record.minute_goal = MinuteGoal(reference, quantity[0] * WEEKLY_MINUTES[quantity[1]])
        start = parse_time(resource.get("startDate")) or parse_time(resource.get("statusDate"))
        quota: float | None = None
        step_target = False
        for target in targets:
            if set(codes_of(target.get("measure"), LOINC)) & self.steps:
                step_target = True
                quantity = _quantity(target.get("detailQuantity"))
                if quantity is not None and quantity[1] in STEP_UNITS and quantity[0] > 0:
                    quota = quantity[0]
                    break
        if quota is None and (step_target or not measures):
            quota = _described_quota(resource.get("description"), self.quota_patterns)
            # A goal with no target whose description speaks of steps is a step goal, readable or not; so is a
            # physical-activity goal (the PA IG's category) with no target at all: a plan whose dose is not written.
            step_target = step_target or quota is not None or _mentions(resource.get("description"),
                                                                        self.step_goal_words) \
                or (not targets and self._activity_goal(resource))
        if not step_target:
            return
        goal = StepGoal(reference, quota, resource, start)
        if self.record.step_goal is None or _goal_rank(goal) > _goal_rank(self.record.step_goal):
            self.record.step_goal = goal


def _goal_rank(goal: StepGoal) -> tuple[bool, datetime, float]:
    """Of several step goals in force, the one that stands: a readable quota first, then the latest start, then the
    larger quota (whatever order the EHR listed them in)."""
    return (goal.steps_per_day is not None, goal.start or datetime.min.replace(tzinfo=UTC), goal.steps_per_day or 0.0)


def _text(description: Any) -> str:
    """A CodeableConcept's text (a Goal's description), at most its first 2,000 characters."""
    text = description.get("text") if isinstance(description, dict) else None
    return text[:2000] if isinstance(text, str) else ""


def _mentions(description: Any, pattern: re.Pattern[str] | None) -> bool:
    return pattern is not None and pattern.search(_text(description)) is not None


def _described_quota(description: Any, patterns: list[re.Pattern[str]]) -> float | None:
    """A number of steps a day written in a Goal's description ("Walk 5,000 steps a day"), by the goal_quota
    patterns of codes.yaml; None when none matches."""
    text = _text(description)
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            steps = float(match.group("steps").replace(",", ""))
            if steps > 0:
                return steps
    return None


def for_pain(concepts: Any, knowledge: Knowledge) -> bool:
    """A list of reason CodeableConcepts with one in the eligibility value set (chronic pain)."""
    wanted = knowledge.codes.eligibility_value_set
    for concept in concepts if isinstance(concepts, list) else []:
        if wanted in knowledge.value_set_index.lookup(codes_of(concept, SNOMED), codes_of(concept, ICD10)):
            return True
    return False


@functools.lru_cache(maxsize=8)
def instruction_patterns(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    """The instruction_dose patterns of codes.yaml, compiled once."""
    return [re.compile(p, re.IGNORECASE) for p in patterns]


def _birth_date(value: Any) -> date | None:
    """Patient.birthDate (a year, a year-month or a date) as a date; a partial date takes its first day."""
    parsed = parse_time(value)
    return parsed.date() if parsed is not None else None


def _order_start(resource: dict[str, Any]) -> datetime | None:
    """When the dose started: occurrenceTiming.repeat.boundsPeriod.start, else occurrencePeriod.start."""
    timing = resource.get("occurrenceTiming")
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
    started = parse_time(bounds.get("start")) if isinstance(bounds, dict) else None
    if started is not None:
        return started
    period = resource.get("occurrencePeriod")
    return parse_time(period.get("start")) if isinstance(period, dict) else None


@dataclass(frozen=True)
class DoseLimits:
    """The plausible dose of an order (rules/parameters.yaml): at most this many sessions a week, each at most
    this many minutes long. A value outside is set aside, like an implausible reading, before any arithmetic."""

    sessions_per_week: float = 14
    session_minutes: float = 300

    @classmethod
    def of(cls, values: Mapping[str, float]) -> DoseLimits:
        return cls(values["order_sessions_max_per_week"], values["session_max_plausible_minutes"])


def order_dose(resource: dict[str, Any], patterns: list[re.Pattern[str]] | None = None,
               limits: DoseLimits = DoseLimits()) -> Dose | None:
    """Minutes per session x sessions per week from occurrenceTiming.repeat, else from the patientInstruction
    by the instruction_dose patterns of codes.yaml; None when neither gives a plausible dose."""
    return read_dose(resource, patterns or [], limits)[0]


def read_dose(resource: dict[str, Any], patterns: list[re.Pattern[str]],
              limits: DoseLimits) -> tuple[Dose | None, str | None]:
    """(the order's dose, why a written dose was set aside): each number is checked against the limits before it
    is multiplied, so no value, however large or small, costs more than a few operations."""
    timing = resource.get("occurrenceTiming")
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    if not isinstance(repeat, dict) or "duration" not in repeat:
        return _instruction_dose(resource.get("patientInstruction"), patterns, limits), None
    frequency, unit = repeat.get("frequency", 1), repeat.get("periodUnit")
    period, duration = _number(repeat.get("period", 1)), _number(repeat.get("duration"))
    duration_unit = repeat.get("durationUnit", "min")
    if (not isinstance(frequency, int) or isinstance(frequency, bool) or period is None
            or unit not in PER_WEEK or duration is None or duration_unit not in MINUTES):
        return None, None
    if not 0 < period <= _PERIOD_MAX:
        return None, f"period {_short(period)} {unit} is not plausible"
    if not 0 < frequency <= limits.sessions_per_week * _PERIOD_MAX:
        return None, f"frequency {_short(frequency)} is not plausible"
    sessions = frequency * PER_WEEK[unit] / period
    if sessions > limits.sessions_per_week + 0.5:
        return None, f"{_short(sessions)} sessions a week is not plausible"
    if not 0 <= duration <= limits.session_minutes * 60:  # the bound in the smallest unit, seconds
        return None, f"a session of {_short(duration)} {duration_unit} is not plausible"
    minutes = duration * MINUTES[duration_unit]
    if minutes > limits.session_minutes:
        return None, f"a session of {_short(minutes)} min is not plausible"
    per_week, whole = round(sessions), round(minutes)
    if per_week < 1 or whole < 1:
        return None, None
    return Dose(whole, per_week), None


# The longest period of an order's timing, in its unit (a year a session is the rarest dose a plan could carry).
_PERIOD_MAX = 366


def _number(value: Any) -> float | int | None:
    """A JSON number (not a boolean), else None."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _short(value: float) -> str:
    """A number for a set-aside line: a few significant digits whatever its size."""
    return f"{float(value):.4g}" if abs(value) < 1e300 else "a number too large to show"


def _instruction_dose(text: Any, patterns: list[re.Pattern[str]], limits: DoseLimits) -> Dose | None:
    if not isinstance(text, str):
        return None
    for pattern in patterns:
        match = pattern.search(text[:2000])
        if match:
            minutes, per_week = match.group("minutes"), match.group("per_week")
            if len(minutes) > 4 or len(per_week) > 4:  # digits, before any conversion
                return None
            if 1 <= int(minutes) <= limits.session_minutes and 1 <= int(per_week) <= limits.sessions_per_week:
                return Dose(int(minutes), int(per_week))
    return None


def _panels(resources: list[Any]) -> dict[str, str]:
    """Member id -> panel id, for every Observation that lists members (hasMember)."""
    members: dict[str, str] = {}
    for resource in resources:
        if isinstance(resource, dict) and resource.get("resourceType") == "Observation" and resource.get("hasMember"):
            for member in resource["hasMember"] if isinstance(resource["hasMember"], list) else []:
                ident = _reference_id(member)
                if ident is not None:
                    members.setdefault(ident, str(resource.get("id")))
    return members


class NotLean(Exception):
    """A typed Observation (cds/fhir/typed.py) that the one-pass reader leaves to the general readers, which read
    dicts: the caller reads its Bundles again as dicts (resolver.read_as_dicts) and builds the record anew."""


def build_record(patient_id: str, resources: list[Any], knowledge: Knowledge,
                 now: datetime | None = None,
                 plain: Callable[[typed.Observation], dict[str, Any]] | None = None) -> PatientRecord:
    """The patient's record from FHIR resources (dicts, and typed Observations that the one-pass reader takes,
    else NotLean), with the code lists and plausibility bounds of the knowledge; given `now`, an Observation dated
    after it is set aside. Given `plain` (a typed Observation -> the same Observation as a dict), a typed
    Observation the one-pass reader does not take is read as that dict by the general reader instead, which is
    what a dict would have been read as (the one-pass reader changes nothing when it declines). A typed
    Observation must then not list members (hasMember): panels are found among the dicts before reading."""
    builder = RecordBuilder(patient_id, knowledge, now)
    builder.panel_of = _panels(resources)
    observation, lean_typed = builder.observation, builder.lean_typed
    for resource in resources:
        if isinstance(resource, dict):
            if resource.get("resourceType") == "Observation":  # the many: read without the dispatch of add()
                observation(resource)
            else:
                builder.add(resource)
        elif type(resource) is typed.Observation and not lean_typed(resource):
            if plain is None or resource.hasMember is not UNSET:
                raise NotLean(resource.id)
            observation(plain(resource))
    builder.finish_panels()
    builder.finish_sessions()
    builder.finish_evs()
    record = builder.record
    record.steps, implausible_days = day_totals(builder.step_parts, knowledge.values["steps_day_max"])
    record.set_aside.extend(implausible_days)
    for name in ("pain", "peg", "evs_minutes", "temperature", "temperature_unconfirmed", "weight"):
        setattr(record, name, _once(getattr(record, name), _moment_and_value, record.duplicates))
    record.sessions.sort(key=_moment_and_value)
    record.untimed_sessions.sort(key=_moment_and_value)
    record.blood_pressure = _once(record.blood_pressure, _pressure_key, record.duplicates)
    return record


def _by_start_longest_first(part: SessionPart) -> tuple[datetime, float]:
    return part[0], -(part[1] or 0.0)


def _by_start(part: SessionPart) -> datetime:
    return part[0]


def _moment_and_value(reading: Reading) -> tuple[datetime, float]:
    return reading[0], reading[1]


def _pressure_key(b: BloodPressure) -> tuple[datetime, bool, float, float]:
    """A blood pressure's moment, then its values: at one moment the higher reading comes last (the latest)."""
    return (b.when, b.confirmed, -1.0 if b.systolic is None else b.systolic,
            -1.0 if b.diastolic is None else b.diastolic)


def _once(readings: list[Any], key: Callable[[Any], Any], duplicates: list[str]) -> list[Any]:
    """The readings in the order of `key` (time, then value), each measurement once: the same key (the same value at
    the same moment) is the same reading, whatever Observation carried it."""
    kept: list[Any] = []
    last: Any = None
    for reading in sorted(readings, key=key):
        current = key(reading)
        if kept and current == last:
            duplicates.append(f"{reading.source}: the same reading as {kept[-1].source}")
            continue
        kept.append(reading)
        last = current
    return kept
