"""The stored series, checked when a chart is read: dates, numbers and the service's own codes, nothing else."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from cds.charts.series import MAX_FLAGS, MAX_ORDERS, MAX_READINGS, WEEKS

Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z-]{0,39}$")]
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+){0,9}$", max_length=64)]
CardId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")]
Number = Annotated[float, Field(allow_inf_nan=False, ge=-1e9, le=1e9)]


# The widest doses a chart draws: the bounds of the rules' plausibility parameters, at their widest.
MINUTES_A_DAY, SESSIONS_A_WEEK = 1440, 28


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dose(Frozen):
    """Minutes per session and sessions a week, or a daily step quota."""

    minutes: int | None = Field(None, ge=0, le=MINUTES_A_DAY)
    per_week: int | None = Field(None, ge=0, le=SESSIONS_A_WEEK)
    quota: Number | None = Field(None, ge=0)

    @property
    def daily(self) -> float | None:
        """The height of the plan line: minutes on a session day, or steps a day."""
        return self.quota if self.quota is not None else self.minutes

    @property
    def weekly(self) -> float | None:
        if self.minutes is not None and self.per_week is not None:
            return self.minutes * self.per_week
        return None


class Thresholds(Frozen):
    """The rule parameters the chart marks flares and boom and bust days with."""

    flare_delta: Number = 2.0
    boom_day_ratio: Number = 1.5
    bust_day_ratio: Number = 0.5
    boom_bust_window_hours: Number = 48.0


class Series(Frozen):
    """What a chart token opens, as chart_series() and card_series() wrote it."""

    v: Literal[1]
    measure: Literal["minutes", "steps"]
    now: datetime
    sessions: list[tuple[datetime, Number]] = Field(max_length=MAX_READINGS)
    steps: list[tuple[date, Number]] = Field(max_length=WEEKS * 7)
    pain: list[tuple[datetime, Number]] = Field(max_length=MAX_READINGS)
    pain_baseline: Number | None
    orders: list[tuple[datetime, Annotated[int, Field(ge=0, le=MINUTES_A_DAY)],
                       Annotated[int, Field(ge=0, le=SESSIONS_A_WEEK)]]] = Field(max_length=MAX_ORDERS)
    plan: Dose | None
    red_flags: list[tuple[datetime, Code, Number | None]] = Field(max_length=MAX_FLAGS)
    params: Thresholds
    code: Code
    proposed: Dose | None
    # The call's leading card (the dose card, or the first order card), which the take-home plan follows: its
    # rule, the dose it proposes, and its uuid (the plan shows the proposal as agreed once feedback accepts it).
    # `plan` is the plan in force only: a starting quota that nobody agreed is a proposal, not a plan.
    codes: list[Code] = Field(default_factory=list, max_length=16)
    lead_rule: RuleId | None = None
    lead_proposed: Dose | None = None
    lead_card: CardId | None = None
    # The patient's language (BCP-47, from Patient.communication), which the take-home plan is written in; None: the
    # record names none (English).
    language: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,35}$")] | None = None

    @field_validator("sessions", "steps", "pain", "orders", "red_flags")
    @classmethod
    def _in_time_order(cls, value: list[Any]) -> list[Any]:
        """Stored as the record listed them; drawn and counted oldest first."""
        return sorted(value, key=lambda item: item[0])
