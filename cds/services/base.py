"""What a CDS service is: its discovery entry, the context model of its hook, its prefetch templates."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from cds.fhir.templates import PrefetchTemplate
from cds.hooks.models import HOOK_CONTEXTS, CdsServiceDefinition, PatientViewContext


@dataclass(frozen=True)
class CdsService:
    """A service as discovery declares it, with the prefetch keys it can do without."""

    definition: CdsServiceDefinition
    optional_keys: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for template in self.templates:
            template.check(self.hook)

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def hook(self) -> str:
        return self.definition.hook

    @property
    def context_model(self) -> type[PatientViewContext]:
        return HOOK_CONTEXTS[self.hook]

    @cached_property
    def templates(self) -> tuple[PrefetchTemplate, ...]:
        """The prefetch templates, parsed once per service."""
        return tuple(PrefetchTemplate(k, q) for k, q in (self.definition.prefetch or {}).items())

    @cached_property
    def typed_keys(self) -> frozenset[str]:
        """The prefetch keys filled by an Observation search: read typed from the body (cds/fhir/typed.py)."""
        return frozenset(t.key for t in self.templates if t.is_search and t.resource_type == "Observation")

    @cached_property
    def prefetch_keys(self) -> frozenset[str]:
        """Every prefetch key of the service: a request with only these is read in one pass (cds/fhir/typed.py)."""
        return frozenset(t.key for t in self.templates)
