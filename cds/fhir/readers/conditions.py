"""Conditions -> condition records: the value sets a diagnosis is in (chronic pain, and those the rules ask of), and
in each whether it is current or over, as rules/statuses.yaml and the value set's clinical_status read its status."""

from __future__ import annotations

from typing import Any

from cds.clinical.records import HISTORY, REFUTED, ConditionRecord
from cds.fhir.readers.common import ICD10, SNOMED, Reader, codes_of, parse_time
from cds.knowledge import Knowledge

ABATEMENT = ("abatementDateTime", "abatementAge", "abatementPeriod", "abatementRange", "abatementString")


class ConditionTables:
    """What the Condition reader takes from the knowledge, once per rule set (Knowledge.derived)."""

    def __init__(self, knowledge: Knowledge) -> None:
        self.clinical_policy = {vs.id: vs.clinical_status for vs in knowledge.value_sets.values()}
        self.eligibility = knowledge.codes.eligibility_value_set


class ConditionReader(Reader, ConditionTables):
    """Reads Conditions into the record (a part of RecordBuilder)."""

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
        value_sets = self.knowledge.value_set_index.lookup(snomed, icd)
        if not value_sets:
            return
        abated = any(name in resource for name in ABATEMENT)
        history = frozenset(vs for vs in value_sets if clinical == HISTORY and self._over(vs, abated))
        chronic = self.eligibility in value_sets and self.eligibility not in history
        recorded = parse_time(resource.get("recordedDate")) or parse_time(resource.get("onsetDateTime"))
        if recorded is None and isinstance(resource.get("onsetPeriod"), dict):
            recorded = parse_time(resource["onsetPeriod"].get("start"))
        code = next(iter(value_sets.values()), snomed[0] if snomed else (icd or ["?"])[0])
        self.record.conditions.append(ConditionRecord(code, value_sets, chronic, recorded, reference, history))

    def _over(self, value_set: str, abated: bool) -> bool:
        """Whether a condition whose clinical status says it is over counts as over in this value set."""
        policy = self.clinical_policy.get(value_set, "current")
        return policy == "current" or (policy == "until-abated" and abated)

    def _concept_status(self, table: str, concept: Any, reference: str) -> str:
        """The meaning of a CodeableConcept status: its code in the table's code system, else its first code."""
        if concept is None:
            return self.status(table, None, reference)
        statuses = self.knowledge.statuses
        system = statuses.tables[table].code_system if statuses else None
        codes = codes_of(concept, system) or codes_of(concept)
        return self.status(table, codes[0] if codes else None, reference)
