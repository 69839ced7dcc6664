"""The dose a card proposes, read back from the card itself: its suggested exercise ServiceRequest's timing or step
Goal's target. The charts, the worklist and the examples read a card's dose this one way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cds.hooks.models import Card


def proposed_dose(card: Card) -> dict[str, float] | None:
    """The dose a card proposes, read from its suggested ServiceRequest timing or Goal target."""
    for suggestion in card.suggestions or []:
        for action in suggestion.actions or []:
            resource = action.resource or {}
            repeat = (resource.get("occurrenceTiming") or {}).get("repeat") or {}
            if resource.get("resourceType") == "ServiceRequest" and "duration" in repeat and "frequency" in repeat:
                return {"minutes": repeat["duration"], "per_week": repeat["frequency"]}
            if resource.get("resourceType") == "Goal":
                for target in resource.get("target") or []:
                    value = (target.get("detailQuantity") or {}).get("value")
                    if isinstance(value, int | float):
                        return {"quota": value}
    return None


def dose_text(dose: Mapping[str, float] | None) -> str | None:
    """A proposed dose in the card's words: "22 min x 3/week" or "6,600 steps/day"."""
    if dose is None:
        return None
    if "quota" in dose:
        return f"{round(dose['quota']):,} steps/day"
    return f"{dose['minutes']:g} min x {dose['per_week']:g}/week"


def first_proposed(cards: Iterable[Card]) -> str | None:
    """The dose the first card that proposes one proposes, in words."""
    return next((dose_text(d) for d in map(proposed_dose, cards) if d is not None), None)
