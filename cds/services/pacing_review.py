"""pacing-review (patient-view): the next paced exercise dose when a clinician opens the chart."""

from cds.hooks.models import CdsServiceDefinition
from cds.services.base import CdsService
from cds.services.queries import PREFETCH, USAGE

SERVICE = CdsService(CdsServiceDefinition(
    id="pacing-review",
    hook="patient-view",
    title="Activity pacing review",
    description=(
        "Reviews pain scores and activity of a patient with chronic pain and recommends the next exercise dose: "
        "establish a baseline, start, progress by 10 %, hold, step back after a flare, or stop and refer on a "
        "red flag, with a draft order."
    ),
    prefetch=PREFETCH,
    usageRequirements=USAGE,
))
