"""exercise-order-sign (order-sign): a last pacing check of exercise orders before they are signed."""

from cds.hooks.models import CdsServiceDefinition
from cds.services.base import CdsService
from cds.services.queries import PREFETCH, USAGE

SERVICE = CdsService(CdsServiceDefinition(
    id="exercise-order-sign",
    hook="order-sign",
    title="Exercise order signing check",
    description=(
        "Before exercise orders are signed, checks each one's weekly dose against the pacing plan and the "
        "patient's red flags, and offers a paced dose when it jumps too far."
    ),
    prefetch=PREFETCH,
    usageRequirements=USAGE,
))
