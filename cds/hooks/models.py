"""CDS Hooks 2.0 wire models, named and shaped as the specification names them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    StringConstraints,
    field_validator,
    model_validator,
)

FHIR_ID = r"[A-Za-z0-9\-\.]{1,64}"
USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]


def _fhir_id(value: str) -> str:
    if not re.fullmatch(FHIR_ID, value):
        raise ValueError("must be a FHIR id: 1 to 64 letters, digits, '-' or '.'")
    return value


def _user_reference(value: str) -> str:
    kind, _, ident = value.partition("/")
    if kind not in USER_TYPES or not re.fullmatch(FHIR_ID, ident):
        raise ValueError(f"must be a reference Type/id with Type one of {', '.join(USER_TYPES)}")
    return value


FhirId = Annotated[str, AfterValidator(_fhir_id)]
UserReference = Annotated[str, AfterValidator(_user_reference)]
Indicator = Literal["info", "warning", "critical"]


def _absolute_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an absolute http(s) URL")
    return value


AbsoluteUrl = Annotated[str, AfterValidator(_absolute_url)]


def prune(value: Any) -> Any:
    """Drop None, empty strings, empty lists and empty objects, recursively (CDS Hooks: no empty JSON). An item is
    tested without making an empty list and object to compare it with."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = prune(item)
            if not (item is None or item == "" or (not item and isinstance(item, (dict, list)))):
                out[key] = item
        return out
    if isinstance(value, list):
        kept = []
        for item in value:
            item = prune(item)
            if not (item is None or item == "" or (not item and isinstance(item, (dict, list)))):
                kept.append(item)
        return kept
    return value


class WireModel(BaseModel):
    """Base of every model that crosses the wire: strict types, spec field names."""

    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)

    def to_json(self, exclude: set[str] | None = None) -> dict[str, Any]:
        """The JSON object to send, without the fields in `exclude`: no null, no empty string, list or object."""
        return prune(self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=exclude))


# ---------------------------------------------------------------- shared data types


class Coding(WireModel):
    """CDS Hooks Coding: code and system required, display optional."""

    code: NonEmptyStr
    system: NonEmptyStr
    display: NonEmptyStr | None = None


# ---------------------------------------------------------------- discovery


class CdsServiceDefinition(WireModel):
    """One entry of the discovery response."""

    hook: NonEmptyStr
    title: NonEmptyStr | None = None
    description: NonEmptyStr
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
    prefetch: dict[str, NonEmptyStr] | None = None
    usageRequirements: NonEmptyStr | None = None


class DiscoveryResponse(WireModel):
    services: list[CdsServiceDefinition]


# ---------------------------------------------------------------- service request


class FhirAuthorization(WireModel):
    """The OAuth 2.0 bearer token the client grants for its FHIR server; never logged or stored."""

    access_token: Annotated[SecretStr, Strict(False)]
    token_type: Literal["Bearer", "bearer"]
    expires_in: Annotated[int, Field(ge=0)]
    scope: NonEmptyStr
    subject: NonEmptyStr
    patient: FhirId | None = None

    @field_validator("access_token")
    @classmethod
    def _token_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value


class CdsRequest(WireModel):
    """A CDS Service call; the hook-specific context is validated separately against the hook."""

    hook: NonEmptyStr
    hookInstance: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
    fhirServer: AbsoluteUrl | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _server_with_token(self) -> CdsRequest:
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirServer is required when fhirAuthorization is provided")
        return self


class BundleEntry(WireModel):
    model_config = ConfigDict(strict=True, extra="allow")
    resource: dict[str, Any]

    @field_validator("resource")
    @classmethod
    def _has_type(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("resourceType"), str) or not value["resourceType"]:
            raise ValueError("resource must have a resourceType")
        return value


class Bundle(WireModel):
    """A FHIR Bundle as carried in draftOrders; resources stay plain JSON until the FHIR layer reads them."""

    model_config = ConfigDict(strict=True, extra="allow")
    resourceType: Literal["Bundle"]
    type: NonEmptyStr | None = None
    entry: list[BundleEntry] = Field(default_factory=list)

    def references(self) -> set[str]:
        """'Type/id' of every entry that has an id."""
        return {f"{e.resource['resourceType']}/{e.resource['id']}" for e in self.entry if "id" in e.resource}


class PatientViewContext(WireModel):
    """patient-view context."""

    userId: UserReference
    patientId: FhirId
    encounterId: FhirId | None = None


# Each draft exercise order is reviewed and may get its own card: an order hook carrying more than this is no
# clinician's order set but an attempt to make one call cost minutes of CPU.
MAX_DRAFT_ORDERS = 100


class OrderSignContext(PatientViewContext):
    """order-sign context."""

    draftOrders: Bundle

    @field_validator("draftOrders")
    @classmethod
    def _bounded(cls, value: Bundle) -> Bundle:
        if len(value.entry) > MAX_DRAFT_ORDERS:
            raise ValueError(f"at most {MAX_DRAFT_ORDERS} draft orders in one call, not {len(value.entry)}")
        return value


class OrderSelectContext(OrderSignContext):
    """order-select context: selections must name orders present in draftOrders."""

    selections: Annotated[list[Annotated[str, StringConstraints(pattern=f"^[A-Za-z]+/{FHIR_ID}$")]],
                          Field(min_length=1, max_length=MAX_DRAFT_ORDERS)]

    @model_validator(mode="after")
    def _selections_in_draft_orders(self) -> OrderSelectContext:
        missing = missing_selections(self.selections, self.draftOrders.references())
        if missing:
            shown = ", ".join(missing[:5]) + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
            raise ValueError(f"selections {shown} are not in draftOrders")
        return self


def missing_selections(selections: list[str], references: set[str]) -> list[str]:
    """Selections naming no draft order: one set built once, one lookup per selection (linear)."""
    return [s for s in selections if s not in references]


HOOK_CONTEXTS: dict[str, type[PatientViewContext]] = {
    "patient-view": PatientViewContext,
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
}


# ---------------------------------------------------------------- service response


class Source(WireModel):
    label: NonEmptyStr
    url: AbsoluteUrl | None = None
    icon: AbsoluteUrl | None = None
    topic: Coding | None = None


class Action(WireModel):
    type: Literal["create", "update", "delete"]
    description: NonEmptyStr
    resource: dict[str, Any] | None = None
    resourceId: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _target(self) -> Action:
        if self.type in ("create", "update") and not self.resource:
            raise ValueError(f"a {self.type} action needs a resource")
        if self.type == "delete" and not self.resourceId:
            raise ValueError("a delete action needs a resourceId")
        return self


class Suggestion(WireModel):
    label: NonEmptyStr
    uuid: NonEmptyStr | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(WireModel):
    label: NonEmptyStr
    url: AbsoluteUrl
    type: Literal["absolute", "smart"]
    appContext: NonEmptyStr | None = None
    autolaunchable: bool | None = None

    @model_validator(mode="after")
    def _app_context_only_smart(self) -> Link:
        if self.appContext is not None and self.type != "smart":
            raise ValueError("appContext is valid only on smart links")
        return self


class OverrideReasonCoding(Coding):
    """An override reason offered on a card: display is required."""

    display: NonEmptyStr


class Card(WireModel):
    uuid: NonEmptyStr | None = None
    summary: Annotated[str, StringConstraints(min_length=1, max_length=139)]
    detail: NonEmptyStr | None = None
    indicator: Indicator
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[OverrideReasonCoding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _selection_behavior(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("selectionBehavior is required when suggestions are present")
        return self


class SystemAction(Action):
    """An action the client may apply without showing a card."""


class CdsResponse(WireModel):
    cards: list[Card] = Field(default_factory=list)
    systemActions: list[SystemAction] | None = None

    def to_json(self, exclude: set[str] | None = None) -> dict[str, Any]:
        body = super().to_json({"cards"} | (exclude or set()))
        body["cards"] = [card.to_json() for card in self.cards]  # always present, empty when no guidance
        return body


# ---------------------------------------------------------------- feedback


def _timestamp_text(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


def _utc(value: datetime) -> datetime:
    """The instant in UTC; text such as 9999-12-31T23:59:59-01:00 names one past the years a datetime holds."""
    if value.tzinfo is None:
        raise ValueError("must carry a time zone (RFC 3339, e.g. 2021-12-11T10:05:31Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be an instant from year 1 to 9999 in UTC") from None


# Feedback field limits: a card and a suggestion are named by a uuid (36 characters; 128 leaves room for any
# client's ids), a reason is a Coding as the card offered it; nothing larger is stored.
ShortId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class AcceptedSuggestion(WireModel):
    id: ShortId


class ReasonCoding(Coding):
    """An override reason sent back: the sizes the card's own codings have."""

    code: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    system: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    display: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None


class OverrideReason(WireModel):
    """The reason given when overriding; reason.display is optional on input."""

    reason: ReasonCoding | None = None
    userComment: Annotated[str, StringConstraints(max_length=4000)] | None = None


class Feedback(WireModel):
    card: ShortId
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: Annotated[list[AcceptedSuggestion], Field(max_length=64)] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: Annotated[datetime, Strict(False), BeforeValidator(_timestamp_text), AfterValidator(_utc)]

    @model_validator(mode="after")
    def _outcome_fields(self) -> Feedback:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("an accepted outcome needs acceptedSuggestions")
        if self.outcome == "accepted" and self.overrideReason is not None:
            raise ValueError("overrideReason belongs to an overridden outcome, not an accepted one")
        return self


class FeedbackRequest(WireModel):
    feedback: Annotated[list[Feedback], Field(min_length=1, max_length=1000)]
