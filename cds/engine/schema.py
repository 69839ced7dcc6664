"""The rule file format: what a clinical informaticist writes in rules/, validated before anything runs."""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

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
    used_by: list[Literal["rules", "features", "dose"]] = Field(min_length=1)

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


class Conclusion(Strict):
    """What a rule concludes: the recommendation code, the card's urgency and its text templates."""

    code: Id
    indicator: Literal["info", "warning", "critical"]
    summary: Text
    detail: Text

    @field_validator("summary", "detail")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"not a valid text template: {exc}") from exc
        return value

    def placeholders(self) -> set[str]:
        names = set()
        for text in (self.summary, self.detail):
            for _literal, field_name, _spec, _conv in string.Formatter().parse(text):
                if field_name is not None:
                    names.add(re.split(r"[.\[]", field_name, maxsplit=1)[0])
        return names


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
    conditions: dict[str, Any]
    conclude: Conclusion

    @field_validator("title")
    @classmethod
    def _sentence(cls, value: str) -> str:
        if not value.endswith(("?", ".")):
            raise ValueError("a title reads as a clinical sentence ending in '?' or '.'")
        return value

    @field_validator("conditions")
    @classmethod
    def _durable_form(cls, value: dict[str, Any]) -> dict[str, Any]:
        if set(value) - {"all", "any"} or len(value) != 1:
            raise ValueError("conditions hold exactly one of all or any (durable-rules JSON ruleset form)")
        return value


class RuleFile(Strict):
    """A rule file: rules for one or more services, in one module of knowledge."""

    title: Text
    version: Version
    services: list[Id] = Field(min_length=1)
    placeholders: dict[Name, Text] = Field(default_factory=dict)
    rules: list[Rule] = Field(min_length=1)


class OverrideReasonEntry(Strict):
    code: Id
    display: Text


class RuleSetInfo(Strict):
    name: Text
    version: Version
    code_system: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    override_reason_system: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    override_reasons: list[OverrideReasonEntry] = Field(min_length=1)


class CodeLists(Strict):
    """rules/codes.yaml: the codes the FHIR layer reads the patient's data with."""

    red_flags: dict[Id, list[Text]]
    chronic_pain: dict[Literal["snomed", "icd10"], list[Text]]
    exercise_orders: list[Text] = Field(min_length=1)


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
