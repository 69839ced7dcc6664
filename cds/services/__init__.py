"""The CDS services this provider offers, built from rules/services.yaml in discovery order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cds.services.base import CdsService

if TYPE_CHECKING:
    from cds.engine import Knowledge


def services_of(knowledge: Knowledge) -> dict[str, CdsService]:
    """Each service of services.yaml with the prefetch queries of the knowledge, by id."""
    from cds.hooks.models import CdsServiceDefinition

    spec = knowledge.service_file
    return {entry.id: CdsService(CdsServiceDefinition(
        id=entry.id, hook=entry.hook, title=entry.title, description=entry.description,
        prefetch=dict(knowledge.prefetch), usageRequirements=spec.usage), frozenset(spec.optional_keys))
        for entry in spec.services}
