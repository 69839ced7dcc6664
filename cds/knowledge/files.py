"""Reading the YAML files of rules/."""

from __future__ import annotations

from typing import Any

import yaml

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str) -> Any:
    """YAML read safely (standard tags only), through libyaml where PyYAML was built with it: the value sets
    alone took three seconds in the pure-Python parser, at every start of a service or worklist worker."""
    return yaml.load(text, Loader=_SAFE_LOADER)
