"""The record of one patient from FHIR resources: `RecordBuilder` sends each resource to the reader of its family
(observations, conditions, orders, goals, patient) and finishes what needs every reading; `build_record` is the call
every evaluation makes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from msgspec import UNSET

from cds.clinical.records import PatientRecord
from cds.fhir import typed
from cds.fhir.readers.conditions import ConditionReader, ConditionTables
from cds.fhir.readers.goals import GoalReader, GoalTables
from cds.fhir.readers.observations import ObservationReader, ObservationTables, panels
from cds.fhir.readers.orders import OrderReader, OrderTables
from cds.fhir.readers.patient import PatientReader
from cds.knowledge import Knowledge


def _tables(knowledge: Knowledge) -> dict[str, Any]:
    """What the reader of each family takes from the knowledge (its code lists, bounds and lookup tables), as the
    attributes of one builder: built once per rule set (Knowledge.derived) and shared, read-only, by every builder."""
    tables: dict[str, Any] = {}
    for family in (ObservationTables, ConditionTables, OrderTables, GoalTables):
        tables.update(family(knowledge).__dict__)
    return tables


class NeedsGeneralReader(Exception):
    """An Observation decoded typed (cds/fhir/typed.py) that the one-pass reader leaves to the general reader,
    which reads dicts: the caller reads its Bundles again as dicts (resolver.read_as_dicts) and builds the record
    anew."""


class RecordBuilder(ObservationReader, ConditionReader, OrderReader, GoalReader, PatientReader):
    """Reads prefetch entries into a PatientRecord; one per evaluation."""

    def __init__(self, patient_id: str, knowledge: Knowledge, now: datetime | None = None) -> None:
        # The knowledge's tables are built once per rule set and taken as they are (about 15 us a call to build).
        self.__dict__.update(knowledge.derived("record builder", _tables))
        self.knowledge, self.status_of = knowledge, knowledge.status_of
        self.record = PatientRecord(patient_id)
        self.now = now.replace(tzinfo=UTC) if now is not None and now.tzinfo is None else now
        self.start_observations()

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
            self.patient(resource)


def build_record(patient_id: str, resources: list[Any], knowledge: Knowledge,
                 now: datetime | None = None,
                 plain: Callable[[typed.Observation], dict[str, Any]] | None = None) -> PatientRecord:
    """The patient's record from FHIR resources (dicts, and typed Observations that the one-pass reader takes,
    else NeedsGeneralReader), with the code lists and plausibility bounds of the knowledge; given `now`, an
    Observation dated after it is set aside. Given `plain` (a typed Observation -> the same Observation as a dict),
    a typed Observation the one-pass reader does not take is read as that dict by the general reader instead, which
    is what a dict would have been read as (the one-pass reader changes nothing when it declines). A typed
    Observation must then not list members (hasMember): panels are found among the dicts before reading."""
    builder = RecordBuilder(patient_id, knowledge, now)
    builder.panel_of = panels(resources)
    observation, one_pass_typed = builder.observation, builder.one_pass_typed
    for resource in resources:
        if isinstance(resource, dict):
            if resource.get("resourceType") == "Observation":  # the many: read without the dispatch of add()
                observation(resource)
            else:
                builder.add(resource)
        elif type(resource) is typed.Observation and not one_pass_typed(resource):
            if plain is None or resource.hasMember is not UNSET:
                raise NeedsGeneralReader(resource.id)
            observation(plain(resource))
    builder.finish_observations()
    return builder.record
