"""Validating wire data against a model, with a 400 that names each problem (values never echoed)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cds.errors import CdsError

M = TypeVar("M", bound=BaseModel)
MAX_REPORTED = 8


def _location(prefix: str, loc: tuple[Any, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def validate(model: type[M], data: Any, prefix: str = "", what: str = "request") -> M:
    """Validate data against a model; 400 listing each problem as `path: message` (values never echoed)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems, paths = [], []
        for err in exc.errors(include_url=False, include_input=False, include_context=False):
            path = _location(prefix, err["loc"]) or what
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{path}: {message}")
            paths.append(path)
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
        raise CdsError(400, f"invalid {what}: " + "; ".join(problems[:MAX_REPORTED]) + more,
                       expression=paths[:MAX_REPORTED]) from exc
