"""The rule engine: the knowledge of rules/ evaluated by durable-rules in isolated sessions."""

from cds.engine.host import EngineError, Evaluation, Fired, RuleEngine
from cds.knowledge import Knowledge, RuleError, load_knowledge

__all__ = ["EngineError", "Evaluation", "Fired", "Knowledge", "RuleEngine", "RuleError", "load_knowledge"]
