"""The knowledge format: rules/ as validated data (schema, loader, the condition language)."""

from cds.knowledge.examples import example_dirs
from cds.knowledge.loader import (
    CompiledRule,
    Knowledge,
    RuleError,
    load_knowledge,
    load_ruleset_info,
)

__all__ = ["CompiledRule", "Knowledge", "RuleError", "example_dirs", "load_knowledge", "load_ruleset_info"]
