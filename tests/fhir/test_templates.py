"""Prefetch templates use only CDS Hooks 2.0 tokens and render safely."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from cds.fhir.templates import PrefetchTemplate
from cds.knowledge import Knowledge
from cds.services import services_of


@pytest.mark.parametrize("query", [
    "Observation?patient={{context.patientId}}&date=ge{{today()}}",
    "Patient/{{context.draftOrders.id}}",
    "Observation?patient={{context.medication.id}}",
    "Patient/{{patientId}}",
    "Patient/{{context.patientId}",
    "patient/{{context.patientId}}",
])
def test_tokens_outside_cds_hooks_2_0_are_refused(query: str) -> None:
    with pytest.raises(ValueError):
        PrefetchTemplate("k", query).check("patient-view")


@pytest.mark.parametrize("query", [
    "Patient/{{context.patientId}}",
    "Encounter/{{context.encounterId}}",
    "PractitionerRole?_id={{userPractitionerRoleId}}",
    "{{context.userId}}".replace("{{", "Practitioner?_id={{"),
])
def test_cds_hooks_2_0_tokens_are_accepted(query: str) -> None:
    PrefetchTemplate("k", query).check("order-sign")


ALLOWED_PARAMETERS = {"patient", "code", "status", "clinical-status", "lifecycle-status", "_count", "_sort"}


def test_every_service_template_is_a_2_0_template_on_patient_id(knowledge: Knowledge) -> None:
    """Reads or type-level searches; token equality without modifiers, _count and _sort (req 58)."""
    for service in services_of(knowledge).values():
        for template in service.templates:
            template.check(service.hook)
            assert template.tokens() == ["context.patientId"], template.key
            if not template.is_search:
                assert template.query == f"{template.resource_type}/{{{{context.patientId}}}}"
                continue
            params = parse_qs(urlsplit(template.query).query, keep_blank_values=True)
            assert set(params) <= ALLOWED_PARAMETERS, template.key
            assert all(len(values) == 1 for values in params.values())
            assert params["patient"] == ["{{context.patientId}}"]


def test_rendering_encodes_values_so_they_cannot_add_parameters() -> None:
    template = PrefetchTemplate("k", "Observation?patient={{context.patientId}}&code=1")
    assert template.render({"patientId": "a&b=c"}) == "Observation?patient=a%26b%3Dc&code=1"
    assert PrefetchTemplate("k", "Patient/{{context.patientId}}").render({"patientId": "../x"}) == "Patient/..%2Fx"


def test_user_tokens_come_from_user_id() -> None:
    template = PrefetchTemplate("u", "PractitionerRole?_id={{userPractitionerRoleId}}")
    assert template.render({"userId": "PractitionerRole/123"}) == "PractitionerRole?_id=123"
    with pytest.raises(KeyError):
        template.render({"userId": "Practitioner/123"})


def test_reads_and_searches_are_told_apart() -> None:
    read = PrefetchTemplate("p", "Patient/{{context.patientId}}")
    search = PrefetchTemplate("o", "Observation?patient={{context.patientId}}")
    assert (read.resource_type, read.is_search) == ("Patient", False)
    assert (search.resource_type, search.is_search) == ("Observation", True)
