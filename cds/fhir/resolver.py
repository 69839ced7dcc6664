"""Prefetch semantics of CDS Hooks 2.0: use what the client sent, fetch what it left out, 412 when neither works.

- key present with a resource: use it (a searchset with a `next` link is completed from fhirServer);
- key present as null: the client has no data; never re-queried;
- key absent, or an OperationOutcome (alone or inside the Bundle): fetch it from fhirServer with the
  fhirAuthorization bearer token;
- data that can be had neither way: CdsError 412 naming the keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from msgspec import UNSET

from cds.errors import CdsError
from cds.fhir.allowlist import AllowList
from cds.fhir.client import FetchFailure, FhirClient, next_link
from cds.fhir.templates import PrefetchTemplate
from cds.fhir.typed import Observation, TypedBundle
from cds.hooks.models import FHIR_ID, CdsRequest


@dataclass
class PrefetchData:
    """The resolved data of every prefetch key, and where each came from (for the audit trail)."""

    resources: dict[str, Any] = field(default_factory=dict)  # a resource (dict), a TypedBundle, or None
    sources: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    # Key -> (its Bundle, the Bundle's entries as read while checking it), so that entries() need not read it again.
    read: dict[str, tuple[Any, list[Any]]] = field(default_factory=dict, repr=False, compare=False)

    def entries(self, key: str) -> list[Any]:
        """The resources of a search key (OperationOutcome entries left out), or the one resource of a read; the
        Observations of a key read typed (cds/fhir/typed.py) as typed Observations."""
        resource = self.resources.get(key)
        if resource is None:
            return []
        read = self.read.get(key)
        if read is not None and read[0] is resource:
            return list(read[1])
        if resource.get("resourceType") != "Bundle":
            return [resource]
        return [e["resource"] for e in resource.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                and e["resource"].get("resourceType") != "OperationOutcome"]

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per key: source and resource count, never the resources themselves."""
        out: dict[str, dict[str, Any]] = {}
        for key, source in self.sources.items():
            item: dict[str, Any] = {"source": source, "count": len(self.entries(key))}
            if self.notes.get(key):
                item["notes"] = self.notes[key]
            out[key] = item
        return out


def _blocking_outcome(resource: dict[str, Any]) -> bool:
    """An OperationOutcome with any issue above `information` means the query was not (fully) answered."""
    issues = resource.get("issue")
    if not isinstance(issues, list) or not issues:
        return True
    return any(not isinstance(i, dict) or i.get("severity") != "information" for i in issues)


def unfulfilled(resource: dict[str, Any]) -> bool:
    """True for an OperationOutcome, or a Bundle holding one, that reports a problem with the query."""
    if resource.get("resourceType") == "OperationOutcome":
        return _blocking_outcome(resource)
    if resource.get("resourceType") == "Bundle":
        for entry in resource.get("entry") or []:
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict) and inner.get("resourceType") == "OperationOutcome" and _blocking_outcome(inner):
                return True
    return False


PATIENT_ID = re.compile(FHIR_ID)
MISSING = object()  # not yet resolved


def patient_in_reference(reference: str, fhir_base: str | None, full_urls: dict[str, str]) -> str | None:
    """The Patient id a reference resolves to: `Patient/id`, versioned, absolute on the request's fhirServer, or
    a `urn:uuid` naming a Patient in the same Bundle. None for anything else (other types, other servers)."""
    if reference.startswith(("urn:uuid:", "urn:oid:")):
        return full_urls.get(reference)
    if reference.startswith(("http://", "https://")):
        base = (fhir_base or "").rstrip("/") + "/"
        if not fhir_base or not reference.startswith(base):
            return None
        reference = reference[len(base):]
    parts = reference.split("/")
    if len(parts) == 4 and parts[2] == "_history" and parts[3]:
        parts = parts[:2]
    if len(parts) != 2 or parts[0] != "Patient" or not PATIENT_ID.fullmatch(parts[1]):
        return None
    return parts[1]


class References:
    """The Patient ids that the references of one Bundle's entries resolve to (patient_in_reference), each distinct
    reference resolved once; the Bundle's Patients are looked up by fullUrl only when a urn reference needs them."""

    def __init__(self, entries: list[Any], fhir_base: str | None) -> None:
        self.entries, self.fhir_base = entries, fhir_base
        self.full_urls: dict[str, str] | None = None
        self.resolved: dict[str, str | None] = {}

    def patient(self, reference: str) -> str | None:
        if reference in self.resolved:
            return self.resolved[reference]
        if self.full_urls is None and reference.startswith(("urn:uuid:", "urn:oid:")):
            self.full_urls = _patient_full_urls(self.entries)
        patient = self.resolved[reference] = patient_in_reference(reference, self.fhir_base, self.full_urls or {})
        return patient


def subject_problem(resource: dict[str, Any], patient_id: str, references: References) -> str | None:
    """Why a resource is not the context patient's own (no subject, unresolvable, another patient), or None."""
    for name in ("subject", "patient"):
        value = resource.get(name)
        if value is None:
            continue
        reference = value.get("reference") if isinstance(value, dict) else None
        if not isinstance(reference, str):
            return f"has a {name} without a literal Patient reference"
        resolved = references.patient(reference)
        if resolved is None:
            return f"has a {name} that is not a reference to context.patientId"
        if resolved != patient_id:
            return "belongs to another patient than context.patientId"
        return None
    return "has no subject; it must name the context patient"


def _patient_full_urls(entries: list[Any]) -> dict[str, str]:
    urls = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("fullUrl"), str):
            inner = entry.get("resource")
            if isinstance(inner, dict) and inner.get("resourceType") == "Patient" and isinstance(inner.get("id"), str):
                urls[entry["fullUrl"]] = inner["id"]
    return urls


def shape_problem(template: PrefetchTemplate, resource: dict[str, Any], patient_id: str,
                  fhir_base: str | None = None) -> str | None:
    """Why this resource cannot be the answer to this template (wrong type, another patient), or None."""
    return examine(template, resource, patient_id, fhir_base, blocking=False)[1]


def _outer_problem(template: PrefetchTemplate, resource: dict[str, Any], patient_id: str,
                   fhir_base: str | None) -> str | None:
    """shape_problem for what is not a search Bundle with a list of entries: a read, or the wrong outer shape."""
    expected = template.resource_type
    if not template.is_search:
        if resource.get("resourceType") != expected:
            return f"is a {resource.get('resourceType')}, expected a {expected}"
        if expected == "Patient":
            return None if resource.get("id") == patient_id else "is a different Patient than context.patientId"
        return subject_problem(resource, patient_id, References([], fhir_base))
    if resource.get("resourceType") != "Bundle":
        return f"is a {resource.get('resourceType')}, expected a Bundle of {expected}"
    return "has an entry that is not a list"


def examine(template: PrefetchTemplate, resource: dict[str, Any], patient_id: str,
            fhir_base: str | None = None,
            blocking: bool = True) -> tuple[bool, str | None, list[dict[str, Any]] | None]:
    """unfulfilled(resource), and when not, shape_problem(...); a search Bundle is read once for both, and its
    entries (OperationOutcomes left out) come with the answer when it has no problem."""
    entries = resource.get("entry", []) if resource.get("resourceType") == "Bundle" else None
    if not template.is_search or not isinstance(entries, list):
        if blocking and unfulfilled(resource):
            return True, None, None
        return False, _outer_problem(template, resource, patient_id, fhir_base), None
    expected = template.resource_type
    references = References(entries, fhir_base)
    problem: str | None = None
    read: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(inner, dict):
            problem = problem or f"entry[{index}] has no resource"
            continue
        kind = inner.get("resourceType")
        if kind == "OperationOutcome":
            if blocking and _blocking_outcome(inner):
                return True, None, None
            continue
        if problem is not None:  # still looking for an OperationOutcome, which would come first
            continue
        read.append(inner)
        if kind == "Patient" and inner.get("id") == patient_id:
            continue
        if kind != expected:
            problem = f"entry[{index}] is a {kind}, expected {expected}"
            continue
        subject = inner.get("subject")  # the usual entry: a subject reference already resolved to the patient
        reference = subject.get("reference") if type(subject) is dict else None
        if type(reference) is str and references.resolved.get(reference, MISSING) == patient_id:
            continue
        problem = subject_problem(inner, patient_id, references)
        if problem is not None:
            problem = f"entry[{index}] {problem}"
    return False, problem, read if problem is None else None


def _typed_observations(bundle: TypedBundle, patient_id: str, fhir_base: str | None) -> list[Observation] | None:
    """The Observations of a Bundle read typed, when each has a subject reference that resolves to the context
    patient, as examine accepts them; None for anything else, which examine then reads as dicts and explains."""
    references = References([], fhir_base)  # no Patient entries: a urn reference resolves to nothing here
    resolved = references.resolved  # looked up here first: one call less per Observation
    observations = bundle.observations()
    for obs in observations:
        subject = obs.subject
        if subject is UNSET or subject.reference is UNSET:
            return None
        patient = resolved.get(subject.reference, MISSING)
        if (references.patient(subject.reference) if patient is MISSING else patient) != patient_id:
            return None
    return observations


def read_as_dicts(data: PrefetchData, templates: tuple[PrefetchTemplate, ...], patient_id: str,
                  fhir_base: str | None) -> None:
    """Every key read typed, read again as dicts and checked as `resolve` checks them: for when the one-pass reader
    leaves one of its Observations to the general reader (readers.NeedsGeneralReader)."""
    for template in templates:
        value = data.resources.get(template.key)
        if type(value) is TypedBundle:
            plain = value.plain()
            _, problem, entries = examine(template, plain, patient_id, fhir_base)
            if problem:  # _typed_observations accepted only what examine accepts: kept as resolve words it
                raise CdsError(400, f"prefetch.{template.key} {problem}", expression=[f"prefetch.{template.key}"])
            data.resources[template.key] = plain
            data.read[template.key] = (plain, entries or [])


def draft_order_problems(entries: list[dict[str, Any]], patient_id: str, fhir_base: str | None) -> list[str]:
    """Draft orders of an order hook that are not for the context patient, as `entry[i] why`."""
    references = References([{"fullUrl": e.get("fullUrl"), "resource": e.get("resource")} for e in entries],
                            fhir_base)
    problems = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient":
            continue
        problem = subject_problem(resource, patient_id, references)
        if problem is not None:
            problems.append(f"entry[{index}] {problem}")
    return problems


UNOBTAINABLE = "unobtainable (optional)"  # asked for, and the request failed: "could not be read"
NOT_ASKED = "none recorded (optional, not prefetched and no FHIR server to ask)"  # never asked for: "none recorded"
BLOCKED_NOTE = "prefetch held an OperationOutcome"


def _without(data: PrefetchData, key: str, reason: str, failed: bool = True) -> None:
    """An optional key whose data cannot be had: evaluated without it, and said so in the audit. A key whose
    request failed (an OperationOutcome, a server that failed or was refused) could not be read, and the cards
    that need it say so; a key the EHR neither sent nor can be asked for (`failed` False) was never asked for:
    none recorded."""
    data.resources[key], data.sources[key] = None, UNOBTAINABLE if failed else NOT_ASKED
    data.notes.setdefault(key, []).append(reason)


def _url(template: PrefetchTemplate, request: CdsRequest) -> str:
    try:
        return template.render(request.context)
    except KeyError as exc:
        raise CdsError(412, f"prefetch {template.key} cannot be fetched: the context has no value for "
                            f"{{{{{exc.args[0]}}}}}", expression=[f"prefetch.{template.key}"]) from exc


def resolve(templates: tuple[PrefetchTemplate, ...], request: CdsRequest, patient_id: str,
            client: FhirClient, optional: frozenset[str] = frozenset(), deadline: float | None = None,
            allowed: AllowList | None = None) -> PrefetchData:
    """Resolve every template of a service for this request, or raise CdsError (400 bad data, 412 unobtainable)."""
    sent = request.prefetch or {}
    data = PrefetchData()
    invalid: list[str] = []
    to_fetch: dict[str, tuple[str, dict[str, Any] | None]] = {}
    for template in templates:
        key = template.key
        if key not in sent:
            to_fetch[key] = (_url(template, request), None)
            continue
        value = sent[key]
        if type(value) is TypedBundle:
            observations = _typed_observations(value, patient_id, request.fhirServer)
            if observations is not None:
                data.resources[key], data.sources[key] = value, "prefetch"
                data.read[key] = (value, observations)
                continue
            value = value.plain()
        if value is None:
            data.resources[key], data.sources[key] = None, "prefetch (null: no data)"
            continue
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            invalid.append(f"prefetch.{key} must be a FHIR resource or null")
            continue
        blocked, problem, entries = examine(template, value, patient_id, request.fhirServer)
        if blocked:
            to_fetch[key] = (_url(template, request), None)
            data.notes.setdefault(key, []).append(BLOCKED_NOTE)
            continue
        if problem:
            invalid.append(f"prefetch.{key} {problem}")
            continue
        data.resources[key], data.sources[key] = value, "prefetch"
        if template.is_search and next_link(value) is not None:  # its next pages are added to it in place
            to_fetch[key] = (next_link(value) or "", value)
        elif entries is not None:
            data.read[key] = (value, entries)
    if invalid:
        raise CdsError(400, "; ".join(invalid), expression=[f"prefetch.{t.key}" for t in templates
                                                            if any(f"prefetch.{t.key} " in m for m in invalid)])
    if to_fetch:
        _fetch_missing(templates, request, patient_id, client, to_fetch, data, optional, deadline, allowed)
    return data


def _refuse_server(to_fetch: set[str], continuing: set[str], optional: frozenset[str], data: PrefetchData) -> None:
    """fhirServer is not allowed: refused before any connection, in the same words whatever the target would
    have answered (412 when a required key needed it)."""
    for key in continuing:
        data.notes.setdefault(key, []).append("more pages exist but fhirServer is not an allowed FHIR server")
    for key in sorted(optional & (to_fetch - continuing)):
        _without(data, key, "fhirServer is not an allowed FHIR server")
    if to_fetch - continuing - optional:
        raise CdsError(412, "fhirServer is not an allowed FHIR server", expression=["fhirServer"])


def _fetch_missing(templates: tuple[PrefetchTemplate, ...], request: CdsRequest, patient_id: str,
                   client: FhirClient, to_fetch: dict[str, tuple[str, dict[str, Any] | None]],
                   data: PrefetchData, optional: frozenset[str], deadline: float | None,
                   allowed: AllowList | None = None) -> None:
    continuing = {k for k, (_, first) in to_fetch.items() if first is not None}
    if request.fhirServer is not None and allowed is not None and not allowed.allows(request.fhirServer):
        _refuse_server(set(to_fetch), continuing, optional, data)
        return
    if request.fhirServer is None:
        for key in sorted(optional & (set(to_fetch) - continuing)):
            _without(data, key, "not in the request and no fhirServer",
                     failed=BLOCKED_NOTE in data.notes.get(key, []))
        missing = sorted(set(to_fetch) - continuing - optional)
        for key in continuing:
            data.notes.setdefault(key, []).append("more pages exist but the request has no fhirServer")
        if missing:
            present = sorted(k for k in (request.prefetch or {}) if k in {t.key for t in templates})
            raise CdsError(412, f"prefetch data unobtainable for {', '.join(missing)}: not in the request "
                                f"(or an OperationOutcome) and no fhirServer to fetch it from; "
                                f"prefetch keys present: {', '.join(present) or 'none'}",
                           expression=[f"prefetch.{k}" for k in missing])
        return
    token = request.fhirAuthorization.access_token.get_secret_value() if request.fhirAuthorization else None
    by_key = {t.key: t for t in templates}
    results = client.fetch_all(request.fhirServer, token, to_fetch, deadline,
                               allowed.allows if allowed is not None else None)
    failed: dict[str, str] = {}
    for key, result in results.items():
        if isinstance(result, FetchFailure):
            failed[key] = str(result)
            continue
        blocked, problem, _ = examine(by_key[key], result.resource, patient_id, request.fhirServer)
        if blocked:
            failed[key] = "FHIR server answered with an OperationOutcome"
            continue
        if problem:
            # The remote body's details stay out of the message: it could describe any host's answer.
            failed[key] = f"the FHIR server's answer is not a usable {by_key[key].resource_type} answer"
            continue
        data.resources[key] = result.resource
        data.sources[key] = "prefetch + fhirServer pages" if key in continuing else "fhirServer"
        data.notes.setdefault(key, []).extend(result.notes)
        if not data.notes[key]:
            del data.notes[key]
    for key in sorted(optional & set(failed)):
        _without(data, key, failed.pop(key))
    if failed:
        by_reason: dict[str, list[str]] = {}
        for key in sorted(failed):
            by_reason.setdefault(failed[key], []).append(key)
        reasons = "; ".join(f"{', '.join(keys)}: {reason}" for reason, keys in by_reason.items())
        raise CdsError(412, f"prefetch data unobtainable from fhirServer for {reasons}",
                       expression=[f"prefetch.{k}" for k in sorted(failed)])
