"""exercise-order-select (order-select): checks a selected exercise order against the pacing plan."""

from cds.hooks.models import CdsServiceDefinition
from cds.services.base import CdsService
from cds.services.queries import PREFETCH, USAGE

SERVICE = CdsService(CdsServiceDefinition(
    id="exercise-order-select",
    hook="order-select",
    title="Exercise order pacing check",
    description=(
        "When an exercise order is selected, checks its weekly dose against what the patient tolerates and "
        "offers a paced dose when it jumps too far; warns on red flags."
    ),
    prefetch=PREFETCH,
    usageRequirements=USAGE,
))
