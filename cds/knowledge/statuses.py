"""rules/statuses.yaml: what each FHIR R4 status code means (current, history, ignored, unconfirmed), read by one
function, `StatusTable.of`. Every reader asks it; none decides a status on its own."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

Meaning = Literal["current", "history", "ignored", "unconfirmed"]
UNKNOWN = "unknown"  # a code the table does not list: the resource is set aside and reported
TABLES = ("observation", "condition-clinical", "condition-verification", "service-request", "goal", "care-plan",
          "care-plan-activity")
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z-]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Table(Strict):
    """One status element: its code system, what absence means, and every code of its value set."""

    element: str
    code_system: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    absent: Meaning
    codes: dict[Code, Meaning]

    def kept(self) -> list[str]:
        """The codes a reader uses (current, history or unconfirmed): what a prefetch query asks for."""
        return [code for code, meaning in self.codes.items() if meaning != "ignored"]


class StatusTable(Strict):
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
    tables: dict[str, Table]

    @model_validator(mode="after")
    def _every_table(self) -> StatusTable:
        missing = [name for name in TABLES if name not in self.tables]
        unknown = sorted(set(self.tables) - set(TABLES))
        if missing or unknown:
            raise ValueError(f"tables must be exactly {', '.join(TABLES)}"
                             + (f"; missing {', '.join(missing)}" if missing else "")
                             + (f"; unknown {', '.join(unknown)}" if unknown else ""))
        if any(m == "unconfirmed" for name, t in self.tables.items() if name != "observation"
               for m in (t.absent, *t.codes.values())):
            raise ValueError("only the observation table may say unconfirmed")
        return self

    def of(self, table: str, code: str | None) -> str:
        """What a status code means: current, history, ignored, unconfirmed; `unknown` for a code the table does
        not list. None (the element is absent) means the table's `absent`."""
        entry = self.tables[table]
        if code is None:
            return entry.absent
        return entry.codes.get(code, UNKNOWN)

    def codes(self, table: str, *meanings: str) -> frozenset[str]:
        """The codes of a table with one of these meanings."""
        return frozenset(code for code, meaning in self.tables[table].codes.items() if meaning in meanings)
