"""The rule file format: what a clinical informaticist writes in rules/, validated before anything runs."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Version = Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- parameters.yaml


class Parameter(Strict):
    """One threshold: its value, unit, the range a site may tune it within, and where it comes from."""

    value: float | int
    unit: Text
    range: tuple[float, float]
    description: Text
    source: Text
    derived: bool
    used_by: list[Literal["rules", "features", "dose", "records", "cards", "reports"]] = Field(min_length=1)

    @model_validator(mode="after")
    def _in_range(self) -> Parameter:
        low, high = self.range
        if low > high:
            raise ValueError(f"range [{low}, {high}] is empty")
        if not low <= self.value <= high:
            raise ValueError(f"value {self.value} is outside its allowed range [{low}, {high}]")
        return self


class ParameterFile(Strict):
    version: Version
    parameters: dict[Name, Parameter]


# ---------------------------------------------------------------- facts.yaml


class FactField(Strict):
    type: Literal["boolean", "integer", "number", "string"]
    description: Text
    values: list[str] | None = None  # the allowed strings, for a string field that is a code


class FactType(Strict):
    description: Text
    fields: dict[Name, FactField]


class FactVocabulary(Strict):
    """Every fact type the rules may match and the fields it carries; rules and scenarios are checked against it."""

    facts: dict[Id, FactType]


# ---------------------------------------------------------------- rule files


class Evidence(Strict):
    citations: list[Text] = Field(min_length=1)
    derived: bool
    note: Text | None = None


def _template_names(texts: Iterable[str]) -> set[str]:
    names = set()
    for text in texts:
        for _literal, field_name, _spec, _conv in string.Formatter().parse(text):
            if field_name is not None:
                names.add(re.split(r"[.\[]", field_name, maxsplit=1)[0])
    return names


def _check_template(value: str | list[str]) -> str | list[str]:
    for text in [value] if isinstance(value, str) else value:
        try:
            list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"not a valid text template: {exc}") from exc
    return value


# A text template, or a list of segments: a segment whose placeholders have no value is left out.
Template = Annotated[str | list[Annotated[str, StringConstraints(min_length=1)]], AfterValidator(_check_template)]


def _check_pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from exc
    return value


def _check_dose_pattern(value: str) -> str:
    groups = set(re.compile(_check_pattern(value)).groupindex)
    if groups != {"minutes", "per_week"}:
        raise ValueError("a dose pattern names exactly the groups (?P<minutes>...) and (?P<per_week>...)")
    return value


def _check_quota_pattern(value: str) -> str:
    if set(re.compile(_check_pattern(value)).groupindex) != {"steps"}:
        raise ValueError("a step quota pattern names exactly the group (?P<steps>...)")
    return value


def template_texts(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


class Suggestion(Strict):
    """What a card offers to do, by kind; Python builds the FHIR resource for the kind, the words come from here.

    - dose: the dose of the recommendation as a draft exercise ServiceRequest (minutes) or a step Goal (steps);
    - order: a draft ServiceRequest for the `orderable` of codes.yaml (an assessment, a referral);
    - update-draft: the draft order under review, changed to the paced dose;
    - remove-drafts: delete the draft exercise orders of an order hook.
    """

    kind: Literal["dose", "order", "update-draft", "remove-drafts"]
    orderable: Id | None = None
    priority: Literal["routine", "urgent", "asap", "stat"] | None = None  # of an order (ServiceRequest.priority)
    label: Template | None = None
    description: Template | None = None
    # What the patient reads (the order's patientInstruction, the Goal's text): the key of a text of
    # rules/patient-text/, written in the patient's language.
    instruction: Id | None = None
    goal_label: Template | None = None
    goal_description: Template | None = None
    goal_text: Id | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Suggestion:
        needed = {"dose": ("label", "description", "instruction", "goal_label", "goal_description", "goal_text"),
                  "order": ("orderable", "label", "instruction"),
                  "update-draft": ("label", "instruction"),
                  "remove-drafts": ("label", "description")}[self.kind]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} suggestion needs {', '.join(missing)}")
        return self

    def texts(self) -> list[str]:
        """The clinician's texts (the patient's are in rules/patient-text/)."""
        return [t for name in CLINICIAN_TEXTS for t in template_texts(getattr(self, name))]

    def unknown_placeholders(self, parameters: Iterable[str], patient_texts: Iterable[str] = ()) -> set[str]:
        """Placeholders its texts, and the patient texts it names, use that neither its kind provides nor a
        parameter names."""
        return _template_names([*self.texts(), *patient_texts]) - SUGGESTION_WORDS[self.kind] - set(parameters)


# The texts of a suggestion the clinician reads, in English.
CLINICIAN_TEXTS = ("label", "description", "goal_label", "goal_description")


# The values each kind of suggestion provides to its texts, besides the parameters.
SUGGESTION_WORDS: dict[str, set[str]] = {
    "dose": {"dose", "minutes", "per_week", "current_order", "dose_quota"},
    "order": {"finding"},
    "update-draft": {"dose", "minutes", "per_week"},
    "remove-drafts": {"draft"},
}


class Reason(Strict):
    """A reason a rule states on its card, when the fact it matched passes `when` (a pattern of the rule language)."""

    when: dict[str, Any]
    text: Text


class Conclusion(Strict):
    """What a rule concludes: the recommendation code, the card's urgency, its text and what it suggests."""

    code: Id
    indicator: Literal["info", "warning", "critical"]
    indicator_at: dict[Literal["patient-view", "order-select", "order-sign"], Literal["info", "warning", "critical"]] \
        = Field(default_factory=dict)  # the indicator at these hooks, where it differs
    summary: Text
    detail: Text
    dose: Literal["start", "progress", "step-back", "re-baseline"] | None = None  # the dose arithmetic proposed
    suggest: list[Suggestion] = Field(default_factory=list)
    selection: Literal["at-most-one", "any"] = "at-most-one"
    # For {red_flags}: per matched fact, one line per template whose values the fact has.
    findings: list[Template] = Field(default_factory=list)
    reasons: list[Reason] = Field(default_factory=list)  # for the {reason} placeholder
    no_reason: Text | None = None  # {reason} when no listed reason holds

    @field_validator("summary", "detail")
    @classmethod
    def _template(cls, value: str) -> str:
        _check_template(value)
        return value

    def placeholders(self) -> set[str]:
        return _template_names([self.summary, self.detail])


class WhenThen(Strict):
    when: Text
    then: Text


class Rule(Strict):
    id: Id
    version: Version
    title: Text
    plain: WhenThen
    evidence: Evidence
    kind: Literal["dose", "pattern", "order"]
    precedence: int = Field(ge=1, le=99)
    suppressed_by: list[Id] = Field(default_factory=list)
    # silent: a rule in pilot. It is evaluated and its would-be card audited, never returned (docs/governance.md).
    mode: Literal["live", "silent"] = "live"
    examples: list[Id] = Field(
        default_factory=list,
        description="The end-to-end examples this rule owns: folders of fhir_examples/ (beside rules/) whose request "
                    "is there to show this rule's card, or its card held back at a boundary. `rules check` checks "
                    "that each one exists and that every example there has an owner; `rules test` answers each one "
                    "and holds its cards to its expected.json.")
    conditions: dict[str, Any]
    conclude: Conclusion

    @field_validator("title")
    @classmethod
    def _sentence(cls, value: str) -> str:
        if not value.endswith(("?", ".")):
            raise ValueError("a title reads as a clinical sentence ending in '?' or '.'")
        return value

    @field_validator("examples")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"names the examples {twice} more than once")
        return value

    @field_validator("conditions")
    @classmethod
    def _durable_form(cls, value: dict[str, Any]) -> dict[str, Any]:
        if set(value) - {"all", "any"} or len(value) != 1:
            raise ValueError("conditions hold exactly one of all or any (durable-rules JSON ruleset form)")
        return value


class RuleFile(Strict):
    """rules/<recommendation>/rule.yaml: the rules that conclude one recommendation, for one or more services."""

    title: Text
    version: Version
    services: list[Id] = Field(min_length=1)
    placeholders: dict[Name, Text] = Field(default_factory=dict)
    # Words that differ by hook: {name: {hook: text}}, used as {name} in the card text.
    words: dict[Name, dict[str, str]] = Field(default_factory=dict)
    rules: list[Rule] = Field(min_length=1)


class OverrideReasonEntry(Strict):
    code: Id
    display: Text


# The data lines of ruleset.yaml, each required: about the data itself rather than a rule (docs/clinical.md).
DataLine = Literal["age_not_recorded", "could_not_be_read", "language_not_available", "language_text_only"]


class RuleSetInfo(Strict):
    name: Text
    version: Version
    code_system: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    override_reason_system: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    override_reasons: list[OverrideReasonEntry] = Field(min_length=1)
    # Phrases no card or patient text may hold (unsafe advice).
    forbidden_words: list[Annotated[str, AfterValidator(_check_pattern)]] = Field(default_factory=list)
    # The worklist's "needs action first" codes, most urgent first.
    needs_action: list[Id] = Field(default_factory=list)
    # {activity} in card text: the activity that carries the dose, by measure.
    activity_words: dict[Literal["minutes", "steps"], Text]
    # Data lines about the data itself (age not recorded, data that could not be read) and the words for what
    # could not be read, by resource type.
    data_lines: dict[DataLine, Text]
    unread_words: dict[Literal["Goal", "CarePlan", "Observation", "Condition", "ServiceRequest", "Patient"], Text]

    @model_validator(mode="after")
    def _every_line(self) -> RuleSetInfo:
        missing = set(get_args(DataLine)) - set(self.data_lines)
        if missing:
            raise ValueError(f"data_lines lacks {', '.join(sorted(missing))}")
        return self


class Coded(Strict):
    system: Name
    code: Text
    display: Text


OBSERVATION_LISTS = (
    "pain_nrs", "peg_mean", "peg_panel", "peg_items", "steps_daily", "steps_period", "session_minutes",
    "evs_weekly_minutes", "blood_pressure_panel", "systolic", "diastolic", "body_temperature", "body_weight")


class CodeLists(Strict):
    """rules/codes.yaml: every code the FHIR layer reads the patient's data with, and the codes it writes."""

    systems: dict[Name, Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]]
    observations: dict[Name, list[Text]]
    eligibility_value_set: Id
    activity_panel: list[Text] = Field(default_factory=list)
    device_wear: list[Text] = Field(default_factory=list)
    minute_goal_measures: list[Text] = Field(default_factory=list)
    exercise_orders: list[Text] = Field(min_length=1)
    explains_weight_loss: list[Id] = Field(default_factory=list)
    weight_goal_measures: list[Text] = Field(default_factory=list)
    orderables: dict[Id, Coded]
    step_goal_target: Coded
    instruction_dose: list[Annotated[str, AfterValidator(_check_dose_pattern)]] = Field(default_factory=list)
    goal_quota: list[Annotated[str, AfterValidator(_check_quota_pattern)]] = Field(default_factory=list)
    step_goal_words: Annotated[str, AfterValidator(_check_pattern)] | None = None
    pa_category: Coded  # the category of every drafted ServiceRequest and Goal (Physical Activity IG)
    draft_reason: Coded  # a drafted ServiceRequest's reasonCode when it has nothing to refer to

    @model_validator(mode="after")
    def _complete(self) -> CodeLists:
        missing = [name for name in OBSERVATION_LISTS if not self.observations.get(name)]
        if missing:
            raise ValueError(f"observations lacks the code lists {', '.join(missing)}")
        drafted = [*self.orderables.values(), self.step_goal_target, self.pa_category, self.draft_reason]
        unknown = {c.system for c in drafted} - set(self.systems)
        if unknown:
            raise ValueError(f"systems {sorted(unknown)} are not in systems")
        return self

    def loinc(self, name: str) -> frozenset[str]:
        return frozenset(self.observations[name])

    def coding(self, coded: Coded) -> dict[str, str]:
        return {"system": self.systems[coded.system], "code": coded.code, "display": coded.display}


# ---------------------------------------------------------------- services.yaml


class ServiceEntry(Strict):
    """One CDS service as discovery lists it."""

    id: Id
    hook: Literal["patient-view", "order-select", "order-sign"]
    title: Text
    description: Text


class ServiceFile(Strict):
    """rules/services.yaml: the services, their prefetch queries (code lists named from codes.yaml), usage."""

    prefetch: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")], Text]
    optional_keys: list[str] = Field(default_factory=list)
    usage: Text
    services: list[ServiceEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_keys(self) -> ServiceFile:
        unknown = set(self.optional_keys) - set(self.prefetch)
        if unknown:
            raise ValueError(f"optional_keys {sorted(unknown)} are not prefetch keys")
        # An EHR grants access by resource type: usageRequirements must name every type the service reads.
        read = {re.split(r"[/?]", query, maxsplit=1)[0] for query in self.prefetch.values()}
        unnamed = sorted(t for t in read if not re.search(rf"\b{t}\b", self.usage))
        if unnamed:
            raise ValueError(f"usage does not name the resource types {unnamed} that the prefetch reads")
        return self


# ---------------------------------------------------------------- scenarios


class Scenario(Strict):
    """Given these facts, the rule fires or not; optionally the findings left after precedence."""

    name: Text
    rule: Id
    fires: bool
    service: Id | None = None
    given: list[dict[str, Any]] = Field(min_length=1)
    expect: list[Id] | None = None


class ScenarioFile(Strict):
    """Top-level keys starting with x- hold YAML anchors shared by the scenarios and are ignored."""

    scenarios: list[Scenario] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _drop_anchor_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
        return data


class FixtureFile(Strict):
    """rules/fixtures.yaml: named facts a scenario starts from with `like: <name>`."""

    fixtures: dict[Id, dict[str, Any]]


# ---------------------------------------------------------------- fhir_examples/<name>/expected.json


class ExpectedAnswer(Strict):
    """fhir_examples/<name>/expected.json: the intent of an example, written by hand. The rules that own the example
    name it in their `examples:`."""

    service: Id = Field(description="the service the request is sent to (rules/services.yaml)")
    now: AwareDatetime = Field(description="the moment of evaluation the answer is recorded at")
    codes: list[Id] = Field(description="the recommendation codes of the cards, in order (none: no card)")
    dose: Text | None = Field(description='the dose the first card that proposes one proposes ("22 min x 3/week", '
                                          '"6,600 steps/day"), or null')
    shows: Text = Field(description="what the example shows, in a line (the README's table of examples)")
    says: list[Text] = Field(default_factory=list, description="words some card's detail says")
    never_says: list[Text] = Field(default_factory=list, description="words no card's detail says")


# ---------------------------------------------------------------- value-sets/<id>.yaml


class ValueSetSource(Strict):
    name: Text
    reference: Text | None = None
    version: Text | None = None
    method: Text


class SnomedCode(Strict):
    code: Annotated[str, StringConstraints(pattern=r"^\d{6,18}$")]
    display: Text


class IcdPrefix(Strict):
    prefix: Annotated[str, StringConstraints(pattern=r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")]
    display: Text


class ValueSet(Strict):
    """A clinical value set: SNOMED CT codes matched exactly, ICD-10-CM codes matched by prefix."""

    id: Id
    title: Text
    label: Text | None = None  # how a card names a match; the title when absent
    purpose: Text
    note: Text | None = None  # a data line on every card when the patient has a condition in the set
    note_after: Name | None = None  # a parameter (days): the note only when the condition is older than that
    note_not_with: list[Id] = Field(default_factory=list)  # recommendation codes whose cards leave the note out
    note_history: bool = False  # the note also when the condition is over (clinical status history)
    # Value sets read apart from this one (another clinical status policy, never a red flag): none of their codes
    # may fall in this set too, or a condition would be read both ways (`pacing-cds rules check`).
    disjoint_from: list[Id] = Field(default_factory=list)
    # How the clinical status (rules/statuses.yaml) bears on a match: `current`, as the status table says; `any`,
    # whatever the clinical status (metastatic disease: bone at risk stays at risk); `until-abated`, over only
    # when the status says so and an abatement is recorded (a fracture or infection resolved without a date counts).
    clinical_status: Literal["current", "any", "until-abated"] = "current"
    source: ValueSetSource
    snomed: list[SnomedCode] = Field(default_factory=list)
    icd10cm: list[IcdPrefix] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> ValueSet:
        if not self.snomed and not self.icd10cm:
            raise ValueError("a value set holds at least one code")
        return self

    @property
    def name(self) -> str:
        return self.label or self.title
