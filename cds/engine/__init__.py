"""The rule engine: rules/ as validated data, evaluated by durable-rules in isolated sessions."""

from cds.engine.host import EngineError, Evaluation, Fired, RuleEngine
from cds.engine.loader import Knowledge, RuleError, load_knowledge

__all__ = ["EngineError", "Evaluation", "Fired", "Knowledge", "RuleEngine", "RuleError", "load_knowledge"]
