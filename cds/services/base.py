"""What a CDS service is: its discovery entry, the context model of its hook, its prefetch, its handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cds.engine import RuleEngine
from cds.fhir.resolver import PrefetchData
from cds.fhir.templates import PrefetchTemplate
from cds.hooks.models import HOOK_CONTEXTS, CdsRequest, CdsServiceDefinition, PatientViewContext
from cds.services.pipeline import Outcome, evaluate_call
from cds.services.queries import OPTIONAL_KEYS

Handler = Callable[[str, str, CdsRequest, PatientViewContext, PrefetchData, RuleEngine, datetime], Outcome]


@dataclass(frozen=True)
class CdsService:
    """A service as discovery declares it, plus the function that answers its calls."""

    definition: CdsServiceDefinition
    handler: Handler = evaluate_call
    optional_keys: frozenset[str] = OPTIONAL_KEYS

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

    @property
    def templates(self) -> tuple[PrefetchTemplate, ...]:
        return tuple(PrefetchTemplate(k, q) for k, q in (self.definition.prefetch or {}).items())
