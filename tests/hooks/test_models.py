"""Wire models follow the CDS Hooks 2.0 card, response and feedback rules."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cds.hooks.models import (
    Card,
    CdsRequest,
    CdsResponse,
    Feedback,
    FeedbackRequest,
    Link,
    OrderSelectContext,
    PatientViewContext,
    Source,
    Suggestion,
    prune,
)
from tests.support import data

SOURCE = {"label": "Pacing CDS"}


def card(**fields: Any) -> Card:
    return Card.model_validate({"summary": "Hold the dose", "indicator": "info", "source": SOURCE, **fields})


def test_spec_response_example_round_trips_unchanged() -> None:
    example = data.spec_example("response.json")
    assert CdsResponse.model_validate(example).to_json() == example


def test_spec_system_action_example_is_a_valid_response() -> None:
    example = data.spec_example("response-system-action.json")
    example["systemActions"][0]["description"] = "Record the appropriateness score"  # required in 2.0
    response = CdsResponse.model_validate(example)
    assert response.to_json()["cards"] == []
    assert response.to_json()["systemActions"][0]["type"] == "update"


def test_empty_response_is_exactly_an_empty_cards_array() -> None:
    assert CdsResponse().to_json() == {"cards": []}


def test_no_null_or_empty_values_leave_the_service() -> None:
    built = card(detail=None, links=[], suggestions=None, overrideReasons=[])
    assert built.to_json() == {"summary": "Hold the dose", "indicator": "info", "source": SOURCE}
    assert prune({"a": "", "b": [], "c": {}, "d": None, "e": [{"f": None}], "g": 0, "h": False}) == {
        "g": 0, "h": False}


def test_summary_must_be_under_140_characters() -> None:
    card(summary="x" * 139)
    with pytest.raises(ValidationError, match="139"):
        card(summary="x" * 140)


@pytest.mark.parametrize("indicator", ["success", "hard-stop", "INFO", ""])
def test_indicator_is_info_warning_or_critical(indicator: str) -> None:
    with pytest.raises(ValidationError):
        card(indicator=indicator)


def test_suggestions_need_a_selection_behavior() -> None:
    suggestion = {"label": "Order 22 min x 3/week", "uuid": "s1",
                  "actions": [{"type": "create", "description": "Create the order",
                               "resource": {"resourceType": "ServiceRequest"}}]}
    with pytest.raises(ValidationError, match="selectionBehavior"):
        card(suggestions=[suggestion])
    assert card(suggestions=[suggestion], selectionBehavior="at-most-one").selectionBehavior == "at-most-one"


def test_override_reasons_need_a_display() -> None:
    with pytest.raises(ValidationError, match="display"):
        card(overrideReasons=[{"code": "declined", "system": "https://example.org/reasons"}])


def test_app_context_only_on_smart_links() -> None:
    Link(label="App", url="https://app.example.org/launch", type="smart", appContext="{}")
    with pytest.raises(ValidationError, match="appContext"):
        Link(label="Web", url="https://example.org", type="absolute", appContext="{}")


@pytest.mark.parametrize("url", ["/relative", "example.org", "javascript:alert(1)"])
def test_urls_are_absolute(url: str) -> None:
    with pytest.raises(ValidationError):
        Source(label="x", url=url)


def test_actions_carry_what_their_type_needs() -> None:
    with pytest.raises(ValidationError, match="needs a resource"):
        Suggestion.model_validate({"label": "x", "actions": [{"type": "create", "description": "d"}]})
    with pytest.raises(ValidationError, match="resourceId"):
        Suggestion.model_validate({"label": "x", "actions": [{"type": "delete", "description": "d"}]})


def test_spec_request_example_is_accepted_and_hides_the_token() -> None:
    request = CdsRequest.model_validate(data.spec_example("request-patient-view.json"))
    assert request.fhirAuthorization is not None
    assert "some-opaque-fhir-access-token" not in repr(request)
    assert request.fhirAuthorization.access_token.get_secret_value() == "some-opaque-fhir-access-token"


def test_token_without_fhir_server_is_refused() -> None:
    body = data.spec_example("request-patient-view.json")
    del body["fhirServer"]
    with pytest.raises(ValidationError, match="fhirServer is required"):
        CdsRequest.model_validate(body)


@pytest.mark.parametrize("name", ["context-patient-view.json"])
def test_spec_patient_view_context_is_accepted(name: str) -> None:
    assert PatientViewContext.model_validate(data.spec_example(name)["context"]).patientId == "1288992"


def test_spec_order_select_context_is_accepted_and_selections_must_be_draft_orders() -> None:
    context = data.spec_example("context-order-select.json")["context"]
    assert OrderSelectContext.model_validate(context).selections[0] == "NutritionOrder/pureeddiet-simple"
    context["selections"] = ["MedicationRequest/not-in-the-bundle"]
    with pytest.raises(ValidationError, match="not in draftOrders"):
        OrderSelectContext.model_validate(context)


@pytest.mark.parametrize("name", ["feedback-accepted.json", "feedback-overridden.json",
                                  "feedback-overridden-reason.json"])
def test_spec_feedback_examples_are_accepted(name: str) -> None:
    request = FeedbackRequest.model_validate(data.spec_example(name))
    assert request.feedback[0].outcomeTimestamp.tzinfo is not None


def test_feedback_rules() -> None:
    base = {"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2021-12-11T10:05:31Z"}
    with pytest.raises(ValidationError, match="acceptedSuggestions"):
        Feedback.model_validate(base)
    with pytest.raises(ValidationError, match="time zone"):
        Feedback.model_validate({**base, "acceptedSuggestions": [{"id": "s"}],
                                 "outcomeTimestamp": "2021-12-11T10:05:31"})
    with pytest.raises(ValidationError):
        Feedback.model_validate({**base, "outcome": "ignored", "acceptedSuggestions": [{"id": "s"}]})
    overridden = Feedback.model_validate({**base, "outcome": "overridden",
                                          "overrideReason": {"reason": {"code": "x", "system": "y"}}})
    assert overridden.overrideReason is not None and overridden.overrideReason.reason is not None
    assert overridden.overrideReason.reason.display is None
    with pytest.raises(ValidationError, match="system"):
        Feedback.model_validate({**base, "outcome": "overridden", "overrideReason": {"reason": {"code": "x"}}})
