"""The CDS services this provider offers, in discovery order."""

from cds.services import exercise_order_select, exercise_order_sign, pacing_review
from cds.services.base import CdsService

SERVICES: tuple[CdsService, ...] = (pacing_review.SERVICE, exercise_order_select.SERVICE, exercise_order_sign.SERVICE)


def by_id() -> dict[str, CdsService]:
    return {service.id: service for service in SERVICES}
