"""Observations -> readings: pain scores and the PEG, a day's steps, exercise sessions and activity panels, the
Exercise Vital Sign, blood pressure, temperature and weight.

What a reading means is decided once, by checks that every Observation goes through however it was read: its
status (what rules/statuses.yaml says of it), its code (the kind it is read as, `ObservationTables.rank_of`), its
moment (`ObservationReader.moment`: one it has, not after the moment of evaluation) and its value (the `Measure` of
its kind: a unit it may be written in, converted to the rules' unit and rounded, within the plausible bounds). Two
readers take them:

- the general reader (`ObservationReader.observation`) reads any Observation as a dict (a copy of one already read
  counts once), and sets aside what the checks refuse, with their reason;
- the one-pass reader (`one_pass_typed`) reads the usual Observation (final, one LOINC coding, an
  effectiveDateTime, one value in a valueQuantity, or a blood pressure panel's two) from the typed record of
  cds/fhir/typed.py. A Bundle decoded typed comes as those records; an Observation read as a dict is converted to
  one (`one_pass`), msgspec checking each element's JSON type as the typed decoder does, so the two inputs differ
  only in how the elements are taken out. What a check refuses, and anything that is not usual, the one-pass
  reader leaves unread, changing nothing, to the general reader, which gives the same reading for what it takes.

Full model validation of a year of daily data would cost more than the rest of the evaluation: the readers take only
the elements the rules use, and ignore extensions and the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from cds.clinical.records import (
    CURRENT,
    DATED_IN_FUTURE,
    DEVICE_NOT_WORN,
    IGNORED,
    IMPLAUSIBLE,
    INCOMPLETE_PANEL,
    LONGER_THAN_A_DAY,
    NO_DATE,
    NO_VALUE,
    STATUS_NOT_FINAL,
    UNIT_NOT_UNDERSTOOD,
    BloodPressure,
    Reading,
)
from cds.fhir import typed
from cds.fhir.readers.common import (
    DECIMALS,
    LOINC,
    MINUTES,
    STEP_UNITS,
    WEEKLY_MINUTES,
    Reader,
    Why,
    codes_of,
    loinc_codes,
    parse_time,
    quantity_of,
    reference_id,
)
from cds.fhir.steps import LONGEST_DAY, SHORTEST_DAY, UNKNOWN_SOURCE, StepPart, day_totals, source_of
from cds.knowledge import Knowledge

_new = tuple.__new__  # a named tuple made without its own Python __new__ (see ObservationReader.one_pass_typed)
_convert = msgspec.convert

STEP_FACTORS = dict.fromkeys(STEP_UNITS, 1.0)
SCORE_UNITS = {"{score}", "1", "{#}", "{Score}", "score", ""}
KILOGRAMS = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237}
DAYS_A_WEEK = dict.fromkeys(("d/wk", "/wk", "{days}/wk", "d/(7.d)", "{#}/wk", "1/wk", "{times}/wk"), 1.0)
MINUTES_A_DAY = {"min/d": 1.0, "min": 1.0, "h/d": 60.0, "min/(24.h)": 1.0}
PERCENT = {"%"}
PRESSURE_UNITS = ("mm[Hg]", "mmHg")
ANY_COUNT = (0.0, float("inf"))
# What an Observation is read as, by its LOINC code; one with codes of several kinds is read as the first of them.
OBSERVATION_KINDS = ("pain", "peg", "steps", "session", "evs weekly minutes", "evs days", "evs minutes a day",
                     "blood pressure", "temperature", "weight")
# The kinds the one-pass reader takes (a blood pressure: a panel of a systolic and a diastolic component).
_SCORE, _STEPS, _SESSION, _PRESSURE, _TEMPERATURE, _WEIGHT = range(6)
USUAL_KINDS = {"pain": _SCORE, "steps": _STEPS, "session": _SESSION, "blood pressure": _PRESSURE,
               "temperature": _TEMPERATURE, "weight": _WEIGHT}
# Elements of an Observation that say nothing of the measurement: a copy that differs only in them is the same one.
NOT_THE_MEASUREMENT = frozenset(("id", "meta", "text", "identifier", "extension", "modifierExtension"))
_NO_DATE = Why("no effective date", NO_DATE)
_ANY_MOMENT = datetime.max.replace(tzinfo=UTC)


# ---------------------------------------------------------------- what a value must be


class Measure:
    """What a value of one kind of reading must be for the rules to take it. `read` is the one decision, for every
    reader: the value in the rules' unit, or why it is set aside."""

    __slots__ = ("high", "low", "no_value")

    def __init__(self, bounds: tuple[float, float], no_value: str) -> None:
        self.low, self.high = bounds
        self.no_value = Why(no_value, NO_VALUE)  # a reading of this kind without a number

    def read(self, number: float, unit: str) -> float | Why:
        raise NotImplementedError


class Converted(Measure):
    """A quantity written in one of several units, each with its factor to the rules' unit: converted, rounded to
    DECIMALS, then within the plausible bounds."""

    __slots__ = ("factors", "what")

    def __init__(self, what: str, factors: Mapping[str, float], bounds: tuple[float, float]) -> None:
        super().__init__(bounds, f"{what} without a numeric value")
        self.what, self.factors = what, factors

    def read(self, number: float, unit: str) -> float | Why:
        factor = self.factors.get(unit)
        if factor is None:
            return Why(f"unit {unit!r} not understood for {self.what}", UNIT_NOT_UNDERSTOOD)
        value = round(number * factor, DECIMALS)
        if not self.low <= value <= self.high:
            return Why(f"{value:g} {self.what} is not plausible", IMPLAUSIBLE)
        return value


class Score(Measure):
    """A 0-10 score (pain, PEG): written in a score unit or none, taken as written."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__((0, 10), "no numeric value")

    def read(self, number: float, unit: str) -> float | Why:
        if unit not in SCORE_UNITS:
            return Why(f"unit {unit!r} of a 0-10 score not understood", UNIT_NOT_UNDERSTOOD)
        if not self.low <= number <= self.high:
            return Why(f"score {number:g} outside 0-10", IMPLAUSIBLE)
        return number


class Temperature(Measure):
    """A body temperature in Cel or [degF], in Celsius: plausible within the bounds, kept to two decimals."""

    __slots__ = ()

    def __init__(self, bounds: tuple[float, float]) -> None:
        super().__init__(bounds, "no numeric value")

    def read(self, number: float, unit: str) -> float | Why:
        if unit == "Cel":
            celsius = number
        elif unit == "[degF]":
            celsius = (number - 32) * 5 / 9
        else:
            return Why(f"unit {unit!r} not understood for a temperature", UNIT_NOT_UNDERSTOOD)
        if not self.low <= celsius <= self.high:
            return Why(f"temperature {celsius:.1f} Cel is not plausible", IMPLAUSIBLE)
        return round(celsius, 2)


class Pressure(Measure):
    """A systolic or diastolic pressure: in mm[Hg], within the plausible bounds."""

    __slots__ = ()

    def __init__(self, bounds: tuple[float, float]) -> None:
        super().__init__(bounds, "no numeric value")

    def unit_refused(self, unit: str) -> Why | None:
        """Why a pressure in this unit is set aside, whichever pressure it is; None for mm[Hg]."""
        if unit in PRESSURE_UNITS:
            return None
        return Why(f"unit {unit!r} not understood for a blood pressure", UNIT_NOT_UNDERSTOOD)

    def read(self, number: float, unit: str, name: str = "pressure") -> float | Why:
        refused = self.unit_refused(unit)
        if refused is not None:
            return refused
        if not self.low <= number <= self.high:
            return Why(f"{name} {number:g} mm[Hg] is not plausible", IMPLAUSIBLE)
        return number


# ---------------------------------------------------------------- the elements of a typed Observation


def typed_only_loinc(concept: typed.Concept | UnsetType) -> str | None:
    """The code of a typed CodeableConcept whose only coding is a LOINC one; None for any other shape."""
    if concept is UNSET:
        return None
    coding = concept.coding
    if coding is UNSET or len(coding) != 1:
        return None
    first = coding[0]
    return first.code if first.system == LOINC and first.code is not UNSET else None


def typed_quantity(q: typed.Quantity | UnsetType) -> tuple[float, str] | None:
    """quantity_of a typed Quantity: its number and unit (its code, else its unit, else ""); None without a
    number."""
    if q is UNSET or q.value is UNSET:
        return None
    unit = q.code
    if unit is UNSET:
        unit = "" if q.unit is UNSET else q.unit
    return q.value, unit


def typed_source(obs: typed.Observation) -> str:
    """steps.source_of a typed Observation: the device, else the first performer, else meta.source (non-empty)."""
    if obs.device is not UNSET and obs.device.reference:
        return obs.device.reference
    for performer in obs.performer or ():
        if performer.reference:
            return performer.reference
    if obs.meta is not UNSET and obs.meta.source:
        return obs.meta.source
    return UNKNOWN_SOURCE


# ---------------------------------------------------------------- the general reader's small readers


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


def _score_value(element: dict[str, Any]) -> tuple[float, str] | None:
    """A score from valueQuantity or valueInteger (questionnaire-derived scores are often integers)."""
    quantity = quantity_of(element.get("valueQuantity"))
    value = element.get("valueInteger")
    if quantity is None and isinstance(value, int) and not isinstance(value, bool):
        quantity = (float(value), "")
    return quantity


def panels(resources: list[Any]) -> dict[str, str]:
    """Member id -> panel id, for every Observation that lists members (hasMember)."""
    members: dict[str, str] = {}
    for resource in resources:
        if isinstance(resource, dict) and resource.get("resourceType") == "Observation" and resource.get("hasMember"):
            for member in resource["hasMember"] if isinstance(resource["hasMember"], list) else []:
                ident = reference_id(member)
                if ident is not None:
                    members.setdefault(ident, str(resource.get("id")))
    return members


# ---------------------------------------------------------------- the readers


class SessionPart(NamedTuple):
    """One exercise session as read: when it began, its minutes (None: no duration recorded), who recorded it (the
    device, else the performer, else meta.source) and the Observation it came from."""

    start: datetime
    minutes: float | None
    origin: str
    label: str


class ObservationTables:
    """What the Observation readers take from the knowledge: its code lists, the kind each LOINC code is read as,
    and the measure of each kind of value. Built once per rule set (Knowledge.derived) and shared, read-only, by
    every builder."""

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
        # The Observation statuses that count as current (rules/statuses.yaml), for the one-pass reader: one set
        # lookup a reading.
        self.current_observation = knowledge.statuses.codes("observation", CURRENT) if knowledge.statuses \
            else frozenset()
        # LOINC code -> the rank in OBSERVATION_KINDS of what an Observation of it is (the first kind listing it).
        self.rank_of: dict[str, int] = {}
        for rank, listed in enumerate((self.pain_nrs, self.peg_mean | self.peg_panel, self.steps | self.steps_period,
                                       self.session, self.evs_minutes, self.evs_days, self.evs_minutes_a_day,
                                       self.bp_panel | self.systolic | self.diastolic, self.temperature, self.weight)):
            for code in listed:
                self.rank_of.setdefault(code, rank)
        # The usual Observations, read in one pass: a LOINC code of a score, a day's steps, a session, a blood
        # pressure panel (not a lone systolic or diastolic), a temperature or a weight -> kind.
        self.usual_kind: dict[str | None, int] = {
            code: USUAL_KINDS[OBSERVATION_KINDS[rank]] for code, rank in self.rank_of.items()
            if OBSERVATION_KINDS[rank] in USUAL_KINDS
            and (OBSERVATION_KINDS[rank] != "blood pressure" or code in self.bp_panel)}
        self.pressure_part: dict[str | None, int] = {**dict.fromkeys(self.systolic, 0),
                                                     **dict.fromkeys(self.diastolic, 1)}
        b = self.bounds
        self.score = Score()
        self.step_count = Converted("steps", STEP_FACTORS, ANY_COUNT)
        self.session_minutes = Converted("minutes", MINUTES, (0, b["session_max_plausible_minutes"]))
        self.weekly_minutes = Converted("min/wk", WEEKLY_MINUTES, (0, b["evs_weekly_max_minutes"]))
        self.days_a_week = Converted("exercise days", DAYS_A_WEEK, (0, 7))
        self.minutes_a_day = Converted("exercise minutes", MINUTES_A_DAY, (0, 1440))
        self.mm_hg = Pressure((b["bp_min_mmhg"], b["bp_max_mmhg"]))
        self.celsius = Temperature((b["temperature_min_celsius"], b["temperature_max_celsius"]))
        self.kilograms = Converted("kg", KILOGRAMS, (b["weight_min_kg"], b["weight_max_kg"]))
        # The measure of each usual kind, by kind (a blood pressure panel: of each of its two values).
        self.usual_measure: tuple[Measure, ...] = (self.score, self.step_count, self.session_minutes, self.mm_hg,
                                                   self.celsius, self.kilograms)


class ObservationReader(Reader, ObservationTables):
    """Reads Observations into the record (a part of RecordBuilder)."""

    def start_observations(self) -> None:
        """What one evaluation holds while it reads Observations, until `finish_observations`."""
        # The latest moment a reading may have: the moment of evaluation (without one, any moment).
        self.latest = _ANY_MOMENT if self.now is None else self.now
        self.step_parts: list[StepPart] = []
        # Activity panels (hasMember): member id -> panel id; panels whose own value was counted; members held.
        self.panel_of: dict[str, str] = {}
        self.valued_panels: set[str] = set()
        self.member_sessions: dict[str, list[SessionPart]] = {}
        self.panel_origin: dict[str, str] = {}
        self.evs_parts: dict[date, dict[str, Reading]] = {}
        # Sessions as read, before the sessions of one source that overlap in time are united (finish_sessions).
        self.session_parts: list[SessionPart] = []
        # What the general reader has read already, by fingerprint: a copy of it under another id is not read again.
        self.seen: dict[bytes, str] = {}

    def moment(self, when: datetime | None) -> datetime | Why:
        """A reading's moment as the rules take it, or why it is set aside: it has none, or it comes after the
        moment of evaluation."""
        if when is None:
            return _NO_DATE
        if when > self.latest:
            return Why(f"dated {when.isoformat()}, after the moment of evaluation", DATED_IN_FUTURE)
        return when

    def _value(self, quantity: tuple[float, str] | None, source: str, measure: Measure) -> float | None:
        """A quantity as the measure reads it; None when there is none or the measure refuses it, the reading set
        aside with its reason (no value, unit not understood, implausible)."""
        if quantity is None:
            self.skip(source, *measure.no_value)
            return None
        value = measure.read(*quantity)
        if type(value) is Why:
            self.skip(source, *value)
            return None
        return value

    # ------------------------------------------------------------ the one-pass reader

    def one_pass(self, obs: dict[str, Any]) -> bool:
        """`one_pass_typed` of an Observation read as a dict, converted to the typed record by msgspec, which checks
        the JSON type of each element as the typed decoder does. One the conversion refuses, and one with an element
        the typed record holds as raw JSON (a panel's members, a period: the general reader's), is left to the
        general reader: False, having changed nothing."""
        if "hasMember" in obs or "effectivePeriod" in obs:  # raw JSON in the typed record: not converted from dicts
            return False
        try:
            as_typed = _convert(obs, typed.Observation)
        except msgspec.ValidationError:
            return False
        return self.one_pass_typed(as_typed)

    def one_pass_typed(self, obs: typed.Observation) -> bool:
        """The usual Observation in one pass: final, an effectiveDateTime not after now, and one LOINC coding,
        either of a pain score, a day's steps, a session, a temperature or a weight with a valueQuantity in a known
        unit within bounds, or of a blood pressure panel whose only two components are a systolic and a diastolic
        pressure, each with one LOINC coding and a value in mm[Hg] within bounds, all by the checks the general
        reader takes (the statuses that count as current, the kind of its code, its `moment`, the measure of its
        kind). Anything else (a reading to set aside, a period, a panel or a panel's member) returns False having
        changed nothing, and is left to the general reader, which reads dicts (build_record then raises
        NeedsGeneralReader) and gives the same reading for what this takes. The readings are made by tuple.__new__,
        without the named tuples' own __new__ (a Python frame each: about 0.1 us a reading)."""
        if obs.status not in self.current_observation or obs.hasMember is not UNSET:
            return False
        kind = self.usual_kind.get(typed_only_loinc(obs.code))
        if kind is None:
            return False
        when = self.moment(parse_time(obs.effectiveDateTime))
        if type(when) is Why:
            return False
        ident = obs.id
        label = "Observation/?" if ident is UNSET else f"Observation/{ident}"
        if kind == _PRESSURE:
            return self._usual_pressure(when, label, obs.component)
        quantity = obs.valueQuantity
        if quantity is UNSET or quantity.value is UNSET or obs.component is not UNSET:
            return False
        unit = quantity.code
        if unit is UNSET:
            unit = "" if quantity.unit is UNSET else quantity.unit
        number = self.usual_measure[kind].read(quantity.value, unit)
        if type(number) is Why:
            return False
        if kind == _STEPS:
            if obs.effectivePeriod is not UNSET:  # a day's steps over a period: the general reader's
                return False
            self.step_parts.append(_new(StepPart, (when.date(), typed_source(obs), when, number, label, None)))
        elif kind == _SESSION:
            if self.panel_of and str(None if ident is UNSET else ident) in self.panel_of:  # waits for its panel
                return False
            self.session_parts.append(_new(SessionPart, (when, number, typed_source(obs), label)))
        elif kind == _SCORE:
            self.record.pain.append(_new(Reading, (when, number, label)))
        elif kind == _TEMPERATURE:
            self.record.temperature.append(_new(Reading, (when, number, label)))
        else:
            self.record.weight.append(_new(Reading, (when, number, label)))
        return True

    def _usual_pressure(self, when: datetime, label: str, components: list[typed.Component] | UnsetType) -> bool:
        """A blood pressure panel of two components: a systolic and a diastolic pressure, each as `mm_hg` reads
        it; False for anything else."""
        if components is UNSET or len(components) != 2:
            return False
        values = [0.0, 0.0]
        seen = set()
        for component in components:
            part = self.pressure_part.get(typed_only_loinc(component.code))
            quantity = typed_quantity(component.valueQuantity)
            if part is None or part in seen or quantity is None:
                return False
            value = self.mm_hg.read(quantity[0], quantity[1])
            if type(value) is Why:
                return False
            seen.add(part)
            values[part] = value
        self.record.blood_pressure.append(BloodPressure(when, values[0], values[1], label, True))
        return True

    # ------------------------------------------------------------ the general reader

    def observation(self, obs: dict[str, Any]) -> None:
        """An Observation read as a dict: the usual one in one pass, any other by the general reader."""
        if self.one_pass(obs):
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
        when = self.moment(parse_time(moment) if moment is not None else _effective(obs))
        if type(when) is Why:
            self.skip(source, *when)
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
        record = self.record
        if kind == "pain":
            self._reading(_score_value(obs), source, when, self.score, record.pain)
        elif kind == "peg":
            self._peg(obs, source, when)
        elif kind == "steps":
            self._steps(obs, source, when)
        elif kind == "session":
            self._session(obs, source, when)
        elif kind == "evs weekly minutes":
            self._reading(quantity_of(obs.get("valueQuantity")), source, when, self.weekly_minutes,
                          record.evs_minutes)
        elif kind == "evs days":
            self._evs_part(obs, source, when, "days")
        elif kind == "evs minutes a day":
            self._evs_part(obs, source, when, "minutes")
        elif kind == "blood pressure":
            self._blood_pressure(obs, source, when, codes, confirmed)
        elif kind == "temperature":
            self._reading(quantity_of(obs.get("valueQuantity")), source, when, self.celsius,
                          record.temperature if confirmed else record.temperature_unconfirmed)
        elif kind == "weight":
            self._reading(quantity_of(obs.get("valueQuantity")), source, when, self.kilograms, record.weight)

    def _reading(self, quantity: tuple[float, str] | None, source: str, when: datetime, measure: Measure,
                 into: list[Reading]) -> None:
        """A reading of one value, kept when the measure of its kind takes it."""
        value = self._value(quantity, source, measure)
        if value is not None:
            into.append(Reading(when, value, source))

    def _peg(self, obs: dict[str, Any], source: str, when: datetime) -> None:
        if quantity_of(obs.get("valueQuantity")) is not None or "valueInteger" in obs:
            self._reading(_score_value(obs), source, when, self.score, self.record.peg)
            return
        items = []
        score = self.score
        for component in obs.get("component") or []:
            if isinstance(component, dict) and set(codes_of(component.get("code"), LOINC)) & self.peg_items:
                quantity = _score_value(component)
                if quantity is not None and score.low <= quantity[0] <= score.high:
                    items.append(quantity[0])
        if len(items) == len(self.peg_items):
            self.record.peg.append(Reading(when, sum(items) / len(items), source))
        else:
            self.skip(source, "PEG panel without its three items", INCOMPLETE_PANEL)

    def _steps(self, obs: dict[str, Any], source: str, when: datetime) -> None:
        """A daily total or an interval's count, kept until every reading is in (cds/fhir/steps.py sums them)."""
        value = self._value(quantity_of(obs.get("valueQuantity")), source, self.step_count)
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
        quantity = quantity_of(obs.get("valueQuantity"))
        start = _started(obs, when)
        if quantity is None:
            if panel is None:
                self.session_parts.append(SessionPart(start, None, source_of(obs), source))
            return
        into = self.session_parts if panel is None else self.member_sessions.setdefault(panel, [])
        minutes = self._value(quantity, source, self.session_minutes)
        if minutes is not None:
            into.append(SessionPart(start, minutes, source_of(obs), source))

    def _is_activity_panel(self, obs: dict[str, Any]) -> bool:
        return bool(self.pa_system and set(codes_of(obs.get("code"), self.pa_system)) & self.activity_panel)

    def _panel(self, obs: dict[str, Any], source: str, when: datetime, codes: AbstractSet[str]) -> None:
        """One activity as a panel with members: the panel's own duration counts, once; without one, its members
        give one session (see finish_panels)."""
        ident = str(obs.get("id"))
        self.panel_origin.setdefault(ident, source_of(obs))
        if codes & self.session and quantity_of(obs.get("valueQuantity")) is not None:
            self.valued_panels.add(ident)
            minutes = self._value(quantity_of(obs.get("valueQuantity")), source, self.session_minutes)
            if minutes is not None:
                self.session_parts.append(SessionPart(_started(obs, when), minutes, source_of(obs), source))

    def _worn_too_little(self, obs: dict[str, Any], source: str) -> bool:
        """A reading whose device-wear component is below wear_min_percent is set aside."""
        if not self.pa_system:
            return False
        for component in obs.get("component") or []:
            if isinstance(component, dict) and set(codes_of(component.get("code"), self.pa_system)) & self.device_wear:
                quantity = quantity_of(component.get("valueQuantity"))
                if quantity is not None and quantity[1] in PERCENT and quantity[0] < self.bounds["wear_min_percent"]:
                    self.skip(source, f"device worn {quantity[0]:g} % of the period, below "
                                      f"{self.bounds['wear_min_percent']:g} %", DEVICE_NOT_WORN)
                    return True
        return False

    def _evs_part(self, obs: dict[str, Any], source: str, when: datetime, part: str) -> None:
        """The Exercise Vital Sign's two questions (days a week, minutes a day), paired by day in finish_evs."""
        quantity = quantity_of(obs.get("valueQuantity"))
        value = obs.get("valueInteger")
        if quantity is None and isinstance(value, int) and not isinstance(value, bool):
            quantity = (float(value), "d/wk" if part == "days" else "min/d")
        number = self._value(quantity, source, self.days_a_week if part == "days" else self.minutes_a_day)
        if number is None:
            return
        kept = self.evs_parts.setdefault(when.date(), {}).get(part)
        if kept is None or when >= kept.when:
            self.evs_parts[when.date()][part] = Reading(when, number, source)

    def _blood_pressure(self, obs: dict[str, Any], source: str, when: datetime, codes: AbstractSet[str],
                        confirmed: bool) -> None:
        """A blood pressure: a panel's systolic and diastolic components, or a lone systolic or diastolic reading.
        A value in a unit other than mm[Hg] is set aside once, whichever pressure it is."""
        values: dict[str, float] = {}
        parts: list[tuple[AbstractSet[str], Any]] = [(loinc_codes(c.get("code")), c.get("valueQuantity"))
                                                     for c in obs.get("component") or [] if isinstance(c, dict)]
        if codes & (self.systolic | self.diastolic):
            parts.append((codes, obs.get("valueQuantity")))
        for part_codes, q in parts:
            quantity = quantity_of(q)
            if quantity is None:
                continue
            refused = self.mm_hg.unit_refused(quantity[1])
            if refused is not None:
                self.skip(source, *refused)
                continue
            for name, listed in (("systolic", self.systolic), ("diastolic", self.diastolic)):
                if not part_codes & listed:
                    continue
                value = self.mm_hg.read(*quantity, name)
                if type(value) is Why:
                    self.skip(source, *value)
                else:
                    values[name] = value
        if values:
            self.record.blood_pressure.append(BloodPressure(when, values.get("systolic"), values.get("diastolic"),
                                                            source, confirmed))

    # ------------------------------------------------------------ once every Observation is in

    def finish_observations(self) -> None:
        """What needs every reading: panels, sessions, the Exercise Vital Sign, one step total a day; then each list
        of readings in time order, each measurement once."""
        self.finish_panels()
        self.finish_sessions()
        self.finish_evs()
        record = self.record
        record.steps, implausible_days = day_totals(self.step_parts, self.bounds["steps_day_max"])
        record.set_aside.extend(implausible_days)
        for name in ("pain", "peg", "evs_minutes", "temperature", "temperature_unconfirmed", "weight"):
            setattr(record, name, _once(getattr(record, name), _moment_and_value, record.duplicates))
        record.sessions.sort(key=_moment_and_value)
        record.untimed_sessions.sort(key=_moment_and_value)
        record.blood_pressure = _once(record.blood_pressure, _pressure_key, record.duplicates)

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
