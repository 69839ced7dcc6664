"""Legal variations of a CDS Hooks request, as hypothesis strategies: what an EHR may change without changing what
the data say (representation), the same measurement sent twice, a status changed within its meaning or to another
meaning (rules/statuses.yaml), and one optional (0..1) element removed. Each variation is recorded as steps, each of
one kind, so that the invariants of docs/clinical.md can be asserted on what changed."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

# The kinds of step, from the weakest change to the strongest.
REPRESENTATION = "representation"  # units, UTC offsets, codings, extensions, narrative, entry order, ids, meta
DUPLICATE = "duplicate"  # an Observation sent twice under another id
SAME_MEANING = "same meaning"  # a status code changed to another of the same meaning
READING_REMOVED = "reading removed"  # an Observation's moment, value or counting status taken away
CONDITION_OVER = "condition over"  # a Condition refuted, entered in error, or over (clinical status history)
OTHER_REMOVED = "other removed"  # any other optional element removed, or an order or goal no longer in force
EQUAL_KINDS = frozenset({REPRESENTATION, DUPLICATE, SAME_MEANING})
LOCAL = "http://example.org/fhir/local-codes"
EXTENSION = "http://example.org/fhir/StructureDefinition/ehr-note"

# UCUM-equal units: (unit, factor to the unit of the first column) per quantity the readers convert.
UNITS = {
    "min": [("s", 60.0), ("h", 1 / 60)],
    "kg": [("g", 1000.0), ("[lb_av]", 1 / 0.45359237)],
    "/d": [("{steps}/d", 1.0)],
    "{steps}/d": [("/d", 1.0)],
    "{score}": [("1", 1.0)],
}
OFFSETS = [timedelta(hours=h, minutes=m) for h, m in ((5, 30), (-8, 0), (9, 0), (-3, -30), (1, 0), (14, 0))]
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
# Status codes by table and meaning (rules/statuses.yaml), for changes within and across meanings.
STATUS = {
    "observation": {"current": ["final", "amended", "corrected"], "ignored": ["entered-in-error", "cancelled"]},
    "service-request": {"current": ["active", "on-hold"], "history": ["completed", "revoked"],
                        "ignored": ["entered-in-error"]},
    "goal": {"current": ["active", "accepted", "on-hold"], "history": ["completed", "cancelled"],
             "ignored": ["entered-in-error", "rejected"]},
    "care-plan": {"current": ["active", "on-hold"], "history": ["completed", "revoked"],
                  "ignored": ["entered-in-error"]},
}
CLINICAL = {"current": ["active", "recurrence", "relapse", None], "history": ["inactive", "remission", "resolved"]}
VERIFICATION = {"current": ["confirmed", "provisional", "differential", "unconfirmed", None],
                "ignored": ["refuted", "entered-in-error"]}
CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
# Optional (0..1, or 0..*) elements a variation may remove, by resource type: (element, kind of step).
REMOVABLE = {
    "Patient": [("birthDate", OTHER_REMOVED), ("gender", OTHER_REMOVED), ("active", OTHER_REMOVED)],
    "Observation": [("effectiveDateTime", READING_REMOVED), ("effectivePeriod", READING_REMOVED),
                    ("valueQuantity", READING_REMOVED), ("valueInteger", READING_REMOVED),
                    ("device", OTHER_REMOVED), ("performer", OTHER_REMOVED), ("category", OTHER_REMOVED),
                    ("issued", OTHER_REMOVED), ("interpretation", OTHER_REMOVED), ("note", OTHER_REMOVED)],
    "Condition": [("clinicalStatus", OTHER_REMOVED), ("verificationStatus", OTHER_REMOVED),
                  ("recordedDate", OTHER_REMOVED), ("onsetDateTime", OTHER_REMOVED),
                  ("onsetPeriod", OTHER_REMOVED), ("abatementDateTime", OTHER_REMOVED),
                  ("category", OTHER_REMOVED), ("severity", OTHER_REMOVED)],
    "ServiceRequest": [("authoredOn", OTHER_REMOVED), ("patientInstruction", OTHER_REMOVED),
                       ("reasonCode", OTHER_REMOVED), ("reasonReference", OTHER_REMOVED),
                       ("performer", OTHER_REMOVED), ("replaces", OTHER_REMOVED), ("requester", OTHER_REMOVED),
                       ("priority", OTHER_REMOVED), ("occurrenceTiming", OTHER_REMOVED)],
    "Goal": [("startDate", OTHER_REMOVED), ("statusDate", OTHER_REMOVED), ("target", OTHER_REMOVED)],
    "CarePlan": [("period", OTHER_REMOVED), ("created", OTHER_REMOVED)],
}


@dataclass(frozen=True)
class Step:
    kind: str
    what: str  # for the failure message: what changed, where
    resource: dict[str, Any] | None = None  # the resource changed, as changed (a condition that is now over)

    def __repr__(self) -> str:
        return f"{self.kind}: {self.what}"


@dataclass
class Site:
    """A resource of the request, and the list that holds its entry (to add a copy beside it, to reorder)."""

    resource: dict[str, Any]
    entries: list[dict[str, Any]] | None
    key: str

    @property
    def label(self) -> str:
        return f"{self.key}: {self.resource.get('resourceType')}/{self.resource.get('id')}"


def sites(request: dict[str, Any]) -> Iterator[Site]:
    """Every resource of the prefetch (a Bundle's entries, or a read) and of the draft orders."""
    for key, value in (request.get("prefetch") or {}).items():
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            for entry in value.get("entry") or []:
                if isinstance(entry.get("resource"), dict):
                    yield Site(entry["resource"], value["entry"], key)
        elif value.get("resourceType") != "OperationOutcome":
            yield Site(value, None, key)
    drafts = (request.get("context") or {}).get("draftOrders")
    for entry in (drafts or {}).get("entry") or []:
        if isinstance(entry.get("resource"), dict):
            yield Site(entry["resource"], drafts["entry"], "draftOrders")


def bundles(request: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    found = [(key, value["entry"]) for key, value in (request.get("prefetch") or {}).items()
             if isinstance(value, dict) and value.get("resourceType") == "Bundle" and len(value.get("entry") or []) > 1]
    return found


Draw = Callable[[Any], Any]


def pick(draw: Draw, candidates: list[Any], site_of: Callable[[Any], Site] = lambda c: c) -> Any:
    """One candidate, its resource type drawn first: a chart holds hundreds of Observations and a few Conditions,
    and each type deserves its share of the changes."""
    by_type: dict[str, list[Any]] = {}
    for candidate in candidates:
        by_type.setdefault(str(site_of(candidate).resource.get("resourceType")), []).append(candidate)
    kind = draw(st.sampled_from(sorted(by_type)))
    return draw(st.sampled_from(by_type[kind]))


# ---------------------------------------------------------------- representation only


def _quantities(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """A resource's valueQuantity and its components' (a blood pressure stays in mm[Hg]: no UCUM-equal unit)."""
    found = [resource["valueQuantity"]] if isinstance(resource.get("valueQuantity"), dict) else []
    return [q for q in found if q.get("code") in UNITS and isinstance(q.get("value"), int | float)]


def change_unit(draw: Draw, request: dict[str, Any]) -> Step | None:
    candidates = [(site, q) for site in sites(request) for q in _quantities(site.resource)]
    if not candidates:
        return None
    site, quantity = draw(st.sampled_from(candidates))
    unit, factor = draw(st.sampled_from(UNITS[quantity["code"]]))
    before = f"{quantity['value']} {quantity['code']}"
    quantity["value"] = quantity["value"] * factor
    quantity["code"] = quantity["unit"] = unit
    return Step(REPRESENTATION, f"{site.label} {before} as {quantity['value']} {unit}")


def change_temperature_unit(draw: Draw, request: dict[str, Any]) -> Step | None:
    candidates = [site for site in sites(request) if isinstance(site.resource.get("valueQuantity"), dict)
                  and site.resource["valueQuantity"].get("code") == "Cel"]
    if not candidates:
        return None
    site = draw(st.sampled_from(candidates))
    quantity = site.resource["valueQuantity"]
    quantity["value"] = quantity["value"] * 9 / 5 + 32
    quantity["code"] = quantity["unit"] = "[degF]"
    return Step(REPRESENTATION, f"{site.label} in [degF]")


def _moments(value: Any, path: str = "") -> Iterator[tuple[Any, Any, str]]:
    """(container, key, path) of every dateTime with a time of day in a resource."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and DATETIME.match(item) and key not in ("lastUpdated",):
                yield value, key, f"{path}.{key}"
            else:
                yield from _moments(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _moments(item, f"{path}[{index}]")


def change_offset(draw: Draw, request: dict[str, Any]) -> Step | None:
    """The same instant written with another UTC offset."""
    candidates = [(site, container, key, path) for site in sites(request)
                  for container, key, path in _moments(site.resource)]
    if not candidates:
        return None
    site, container, key, path = pick(draw, candidates, lambda c: c[0])
    offset = draw(st.sampled_from(OFFSETS))
    moment = datetime.fromisoformat(container[key].replace("Z", "+00:00"))
    container[key] = moment.astimezone(timezone(offset)).isoformat()
    return Step(REPRESENTATION, f"{site.label}{path} written as {container[key]}")


def _concepts(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for name in ("code", "category", "clinicalStatus", "verificationStatus"):
        value = resource.get(name)
        for concept in value if isinstance(value, list) else [value]:
            if isinstance(concept, dict) and isinstance(concept.get("coding"), list):
                found.append(concept)
    return found


def change_codings(draw: Draw, request: dict[str, Any]) -> Step | None:
    """Codings reordered, or an extra coding of a local code system that means nothing to the rules."""
    candidates = [(site, concept) for site in sites(request) for concept in _concepts(site.resource)]
    if not candidates:
        return None
    site, concept = pick(draw, candidates, lambda c: c[0])
    if len(concept["coding"]) > 1 and draw(st.booleans()):
        concept["coding"].reverse()
        return Step(REPRESENTATION, f"{site.label} codings reordered")
    position = draw(st.integers(0, len(concept["coding"])))
    concept["coding"].insert(position, {"system": LOCAL, "code": f"L{position}", "display": "Local code"})
    return Step(REPRESENTATION, f"{site.label} an extra local coding")


def _on_a_site(draw: Draw, request: dict[str, Any], change: Callable[[Draw, dict[str, Any]], str]) -> Step | None:
    """A representation-only change to one resource of the request, its type drawn first."""
    candidates = list(sites(request))
    if not candidates:
        return None
    site = pick(draw, candidates)
    return Step(REPRESENTATION, f"{site.label} {change(draw, site.resource)}")


def _extension(draw: Draw, resource: dict[str, Any]) -> str:
    resource.setdefault("extension", []).append({"url": EXTENSION, "valueString": "entered by the front desk"})
    return "an extension"


def _narrative(draw: Draw, resource: dict[str, Any]) -> str:
    resource["text"] = {"status": "generated",
                        "div": '<div xmlns="http://www.w3.org/1999/xhtml">A reading of the record.</div>'}
    return "narrative"


def _meta(draw: Draw, resource: dict[str, Any]) -> str:
    meta = resource.setdefault("meta", {})
    meta["versionId"] = str(draw(st.integers(2, 9)))
    meta["lastUpdated"] = "2026-11-19T22:14:05.120+00:00"
    return "meta"


def add_extension(draw: Draw, request: dict[str, Any]) -> Step | None:
    return _on_a_site(draw, request, _extension)


def add_narrative(draw: Draw, request: dict[str, Any]) -> Step | None:
    return _on_a_site(draw, request, _narrative)


def add_meta(draw: Draw, request: dict[str, Any]) -> Step | None:
    return _on_a_site(draw, request, _meta)


def reorder_entries(draw: Draw, request: dict[str, Any]) -> Step | None:
    candidates = bundles(request)
    if not candidates:
        return None
    key, entries = draw(st.sampled_from(candidates))
    order = draw(st.permutations(list(range(len(entries)))))
    entries[:] = [entries[i] for i in order]
    return Step(REPRESENTATION, f"{key} entries reordered")


def _replace_references(value: Any, old: str, new: str) -> Any:
    """Every reference to Type/old (relative, absolute or versioned) or urn:uuid:old, pointing at Type/new."""
    if isinstance(value, dict):
        return {k: _replace_references(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_references(v, old, new) for v in value]
    if isinstance(value, str):
        kind, old_id = old.split("/", 1)
        new_id = new.split("/", 1)[1]
        if value == f"urn:uuid:{old_id}":
            return f"urn:uuid:{new_id}"
        if value == old or value.endswith("/" + old) or f"/{old}/_history/" in value or value.startswith(f"{old}/"):
            return value.replace(old, new)
    return value


def rename(draw: Draw, request: dict[str, Any]) -> Step | None:
    """Another id for a resource (not the Patient), every reference to it following."""
    candidates = [s for s in sites(request) if s.resource.get("resourceType") != "Patient" and "id" in s.resource]
    if not candidates:
        return None
    site = pick(draw, candidates)
    kind, old = site.resource["resourceType"], site.resource["id"]
    new = f"r{draw(st.integers(1000, 9999))}-{old[::-1][:20]}"
    renamed = _replace_references(request, f"{kind}/{old}", f"{kind}/{new}")
    request.clear()
    request.update(renamed)
    for other in sites(request):
        if other.resource.get("resourceType") == kind and other.resource.get("id") == old:
            other.resource["id"] = new
    if (request.get("context") or {}).get("selections"):
        request["context"]["selections"] = [new_ref if ref == f"{kind}/{old}" else ref
                                            for ref in request["context"]["selections"]
                                            for new_ref in (f"{kind}/{new}",)]
    return Step(REPRESENTATION, f"{kind}/{old} renamed {kind}/{new}")


# ---------------------------------------------------------------- the same measurement twice


def duplicate(draw: Draw, request: dict[str, Any]) -> Step | None:
    candidates = [s for s in sites(request) if s.resource.get("resourceType") == "Observation" and s.entries]
    if not candidates:
        return None
    site = draw(st.sampled_from(candidates))
    copy_ = copy.deepcopy(site.resource)
    copy_["id"] = f"{site.resource.get('id')}-again"
    assert site.entries is not None
    site.entries.insert(draw(st.integers(0, len(site.entries))),
                        {"fullUrl": f"urn:uuid:{copy_['id']}", "resource": copy_})
    return Step(DUPLICATE, f"{site.label} sent again as {copy_['id']}")


# ---------------------------------------------------------------- statuses


TABLE_OF = {"Observation": "observation", "ServiceRequest": "service-request", "Goal": "goal", "CarePlan": "care-plan"}
ELEMENT_OF = {"Goal": "lifecycleStatus"}


def _meaning(table: str, code: Any) -> str | None:
    return next((m for m, codes in STATUS[table].items() if code in codes), None)


def promoted(was: str | None, meaning: str) -> bool:
    """A change that makes something current that was not (an order reinstated, a diagnosis made again) adds what
    the record did not say: it is a new situation, not a variation of this one, and is not drawn."""
    return meaning == "current" and was != "current"


def change_status(draw: Draw, request: dict[str, Any]) -> Step | None:
    """A status code changed: to another of the same meaning, or to another meaning (never made current)."""
    candidates = [s for s in sites(request) if s.key != "draftOrders" and (
        (s.resource.get("resourceType") in TABLE_OF
         and _meaning(TABLE_OF[s.resource["resourceType"]],
                      s.resource.get(ELEMENT_OF.get(s.resource["resourceType"], "status"))) is not None)
        or s.resource.get("resourceType") == "Condition")]
    if not candidates:
        return None
    resource = pick(draw, candidates).resource
    if resource["resourceType"] == "Condition":
        element, system, table = draw(st.sampled_from(CONDITION_TABLES))
        was = _condition_was(resource, element, system, table)
        meaning = draw(st.sampled_from(sorted(m for m in table if not promoted(was, m))))
        return _set_condition_status(element, system, table, meaning, draw(st.sampled_from(table[meaning])))(resource)
    table, element = TABLE_OF[resource["resourceType"]], ELEMENT_OF.get(resource["resourceType"], "status")
    was = _meaning(table, resource[element])
    meaning = draw(st.sampled_from(sorted(m for m in STATUS[table] if not promoted(was, m))))
    return _set_status(table, element, meaning, draw(st.sampled_from(STATUS[table][meaning])))(resource)


CONDITION_TABLES = [("clinicalStatus", CLINICAL_SYSTEM, CLINICAL), ("verificationStatus", VERIFICATION_SYSTEM,
                                                                    VERIFICATION)]


def _condition_was(resource: dict[str, Any], element: str, system: str, table: dict[str, list[str | None]]) -> str:
    """The meaning of a Condition's status as it stands (absent: current)."""
    codes = [c.get("code") for c in (resource.get(element) or {}).get("coding") or [] if c.get("system") == system]
    return next((m for m, listed in table.items() if (codes[0] if codes else None) in listed), "current")


# ---------------------------------------------------------------- an optional element removed


def remove_element(draw: Draw, request: dict[str, Any]) -> Step | None:
    candidates = [(site, element, kind) for site in sites(request) if site.key != "draftOrders"
                  for element, kind in REMOVABLE.get(site.resource.get("resourceType", ""), [])
                  if element in site.resource]
    if not candidates:
        return None
    site, element, kind = pick(draw, candidates, lambda c: c[0])
    del site.resource[element]
    return Step(kind, f"{site.label} without {element}")


REPRESENTATIONS = [change_unit, change_temperature_unit, change_offset, change_codings, add_extension, add_narrative,
                   add_meta, reorder_entries, rename]
EQUAL = [*REPRESENTATIONS, duplicate]
ANY = [*EQUAL, change_status, remove_element]


@st.composite
def varied(draw: Draw, request: dict[str, Any], changes: list[Callable[[Draw, dict[str, Any]], Step | None]],
           most: int = 3) -> tuple[dict[str, Any], list[Step]]:
    """A copy of the request with one to `most` changes drawn from `changes`, and the steps taken."""
    body = copy.deepcopy(request)
    steps = []
    for _ in range(draw(st.integers(1, most))):
        step = draw(st.sampled_from(changes))(draw, body)
        if step is not None:
            steps.append(step)
    return body, steps


# ---------------------------------------------------------------- every single change, for the few resources


def single_changes(request: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Step]]:
    """Every status code and every optional element removed, one at a time, on each resource that is not an
    Observation (the Patient, Conditions, orders, goals, care plans: a few per chart, each of them decisive)."""
    count = sum(1 for _ in sites(request))
    for index in range(count):
        site = list(sites(request))[index]
        kind = site.resource.get("resourceType")
        if kind == "Observation" or site.key == "draftOrders":
            continue
        changes: list[Callable[[dict[str, Any]], Step]] = []
        if kind == "Condition":
            for element, system, table in CONDITION_TABLES:
                was = _condition_was(site.resource, element, system, table)
                for meaning, listed in table.items():
                    for code in listed if not promoted(was, meaning) else []:
                        changes.append(_set_condition_status(element, system, table, meaning, code))
        elif kind in TABLE_OF:
            table, element = TABLE_OF[kind], ELEMENT_OF.get(kind, "status")
            was = _meaning(table, site.resource.get(element))
            for meaning, listed in STATUS[table].items():
                for code in listed if not promoted(was, meaning) else []:
                    changes.append(_set_status(table, element, meaning, code))
        for element, step_kind in REMOVABLE.get(str(kind), []):
            if element in site.resource:
                changes.append(_remove(element, step_kind))
        for change in changes:
            body = copy.deepcopy(request)
            yield body, change(list(sites(body))[index].resource)


def _set_condition_status(element: str, system: str, table: dict[str, list[str | None]], meaning: str,
                          code: str | None) -> Callable[[dict[str, Any]], Step]:
    def change(resource: dict[str, Any]) -> Step:
        was = _condition_was(resource, element, system, table)
        if code is None:
            resource.pop(element, None)
        else:
            resource[element] = {"coding": [{"system": system, "code": code}]}
        kind = SAME_MEANING if meaning == was else CONDITION_OVER if meaning in ("history", "ignored") \
            else OTHER_REMOVED
        return Step(kind, f"Condition/{resource.get('id')} {element} {code} ({was} -> {meaning})", resource)
    return change


def _set_status(table: str, element: str, meaning: str, code: str) -> Callable[[dict[str, Any]], Step]:
    def change(resource: dict[str, Any]) -> Step:
        was = _meaning(table, resource.get(element))
        resource[element] = code
        kind = SAME_MEANING if meaning == was else READING_REMOVED if resource["resourceType"] == "Observation" \
            else OTHER_REMOVED
        return Step(kind, f"{resource['resourceType']}/{resource.get('id')} {element} {code} ({was} -> {meaning})")
    return change


def _remove(element: str, kind: str) -> Callable[[dict[str, Any]], Step]:
    def change(resource: dict[str, Any]) -> Step:
        del resource[element]
        return Step(kind, f"{resource['resourceType']}/{resource.get('id')} without {element}")
    return change
