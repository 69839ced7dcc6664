"""Prefetch semantics of CDS Hooks 2.0: use what the client sent, fetch what it left out, 412 when neither works.

- key present with a resource: use it (a searchset with a `next` link is completed from fhirServer);
- key present as null: the client has no data; never re-queried;
- key absent, or an OperationOutcome (alone or inside the Bundle): fetch it from fhirServer with the
  fhirAuthorization bearer token;
- data that can be had neither way: CdsError 412 naming the keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cds.errors import CdsError
from cds.fhir.client import FetchFailure, FhirClient, next_link
from cds.fhir.templates import PrefetchTemplate
from cds.hooks.models import CdsRequest


@dataclass
class PrefetchData:
    """The resolved data of every prefetch key, and where each came from (for the audit trail)."""

    resources: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def entries(self, key: str) -> list[dict[str, Any]]:
        """The resources of a search key (OperationOutcome entries left out), or the one resource of a read."""
        resource = self.resources.get(key)
        if resource is None:
            return []
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


def _patient_of(resource: dict[str, Any]) -> str | None:
    """The Patient id a resource points at through subject or patient, when it is a Patient reference."""
    for name in ("subject", "patient"):
        ref = resource.get(name)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            parts = ref["reference"].rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] == "Patient":
                return parts[-1]
    return None


def shape_problem(template: PrefetchTemplate, resource: dict[str, Any], patient_id: str) -> str | None:
    """Why this resource cannot be the answer to this template (wrong type, another patient), or None."""
    expected = template.resource_type
    if not template.is_search:
        if resource.get("resourceType") != expected:
            return f"is a {resource.get('resourceType')}, expected a {expected}"
        if expected == "Patient" and resource.get("id") not in (None, patient_id):
            return "is a different Patient than context.patientId"
        return None
    if resource.get("resourceType") != "Bundle":
        return f"is a {resource.get('resourceType')}, expected a Bundle of {expected}"
    entries = resource.get("entry", [])
    if not isinstance(entries, list):
        return "has an entry that is not a list"
    for index, entry in enumerate(entries):
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(inner, dict):
            return f"entry[{index}] has no resource"
        kind = inner.get("resourceType")
        if kind == "OperationOutcome":
            continue
        if kind != expected:
            return f"entry[{index}] is a {kind}, expected {expected}"
        other = _patient_of(inner)
        if other is not None and other != patient_id:
            return f"entry[{index}] belongs to another patient than context.patientId"
    return None


def _without(data: PrefetchData, key: str, reason: str) -> None:
    """An optional key whose data cannot be had: evaluated as no data, and said so in the audit."""
    data.resources[key], data.sources[key] = None, "unobtainable (optional)"
    data.notes.setdefault(key, []).append(reason)


def _url(template: PrefetchTemplate, request: CdsRequest) -> str:
    try:
        return template.render(request.context)
    except KeyError as exc:
        raise CdsError(412, f"prefetch {template.key} cannot be fetched: the context has no value for "
                            f"{{{{{exc.args[0]}}}}}", expression=[f"prefetch.{template.key}"]) from exc


def resolve(templates: tuple[PrefetchTemplate, ...], request: CdsRequest, patient_id: str,
            client: FhirClient, optional: frozenset[str] = frozenset(), deadline: float | None = None
            ) -> PrefetchData:
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
        if value is None:
            data.resources[key], data.sources[key] = None, "prefetch (null: no data)"
            continue
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            invalid.append(f"prefetch.{key} must be a FHIR resource or null")
            continue
        if unfulfilled(value):
            to_fetch[key] = (_url(template, request), None)
            data.notes.setdefault(key, []).append("prefetch held an OperationOutcome")
            continue
        problem = shape_problem(template, value, patient_id)
        if problem:
            invalid.append(f"prefetch.{key} {problem}")
            continue
        data.resources[key], data.sources[key] = value, "prefetch"
        if template.is_search and next_link(value) is not None:
            to_fetch[key] = (next_link(value) or "", value)
    if invalid:
        raise CdsError(400, "; ".join(invalid), expression=[f"prefetch.{t.key}" for t in templates
                                                            if any(f"prefetch.{t.key} " in m for m in invalid)])
    if to_fetch:
        _fetch_missing(templates, request, patient_id, client, to_fetch, data, optional, deadline)
    return data


def _fetch_missing(templates: tuple[PrefetchTemplate, ...], request: CdsRequest, patient_id: str,
                   client: FhirClient, to_fetch: dict[str, tuple[str, dict[str, Any] | None]],
                   data: PrefetchData, optional: frozenset[str], deadline: float | None) -> None:
    continuing = {k for k, (_, first) in to_fetch.items() if first is not None}
    if request.fhirServer is None:
        for key in sorted(optional & (set(to_fetch) - continuing)):
            _without(data, key, "not in the request and no fhirServer")
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
    results = client.fetch_all(request.fhirServer, token, to_fetch, deadline)
    failed: dict[str, str] = {}
    for key, result in results.items():
        if isinstance(result, FetchFailure):
            failed[key] = str(result)
            continue
        if unfulfilled(result.resource):
            failed[key] = "FHIR server answered with an OperationOutcome"
            continue
        problem = shape_problem(by_key[key], result.resource, patient_id)
        if problem:
            failed[key] = f"the FHIR server's answer {problem}"
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
