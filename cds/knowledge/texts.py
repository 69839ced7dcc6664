"""Rule text that names parameters: the plain words of a rule (title, plain.when, plain.then, evidence.note) write a
threshold as {name} or {name:spec} (`at least {adherence_min:.0%} of the planned dose`), never as its value, so
that a site that tunes a parameter reads its own value wherever the rule is shown. Card templates name parameters
the same way ({name} plain, "38"; with a format spec, "{name:.0%}" gives "80%").

Pure: texts and values in, rendered texts or problems out.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

# A number as rule text writes it: 7, 1.3, 7,500, 38.0; not a part of a code, a dotted section number (1.2.8) or a
# word (NG193, 24h, 2nd).
NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w]|[.,]\d)")
PERCENT = re.compile(r"\s?%")


def format_value(value: float | int, spec: str) -> str:
    """A parameter in rule or card text: plain ("38", "0.8") without a format spec, formatted with one."""
    return format(float(value), spec) if spec else f"{float(value):g}"


def names(text: str) -> list[str]:
    """The names a text fills in, in order (raises ValueError when the text is not a valid template)."""
    return [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]


def render(text: str, values: Mapping[str, float | int]) -> str:
    """The text with each {name} or {name:spec} replaced by the parameter's value. Raises KeyError for a name that is
    no parameter and ValueError for a spec the value cannot be written with."""
    parts: list[str] = []
    for literal, field, spec, conversion in string.Formatter().parse(text):
        parts.append(literal)
        if field is None:
            continue
        if conversion or not field.isidentifier():
            raise ValueError(f"{{{field}{'!' + conversion if conversion else ''}}} is not a parameter name")
        parts.append(format_value(values[field], spec or ""))
    return "".join(parts)


def render_problems(text: str, values: Mapping[str, float | int]) -> list[str]:
    """Why `text` cannot be rendered with these parameters: not a template, a name that is no parameter, a format
    spec the value cannot be written with."""
    try:
        used = names(text)
    except ValueError as exc:
        return [f"is not a valid text template ({exc}); write a literal brace as {{{{ or }}}}"]
    unknown = sorted({n for n in used if n not in values})
    if unknown:
        return [f"names {', '.join('{' + n + '}' for n in unknown)}, which "
                f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of parameters.yaml"]
    try:
        render(text, values)
    except (ValueError, KeyError) as exc:
        return [f"cannot write a parameter with its format spec ({exc})"]
    return []


@dataclass(frozen=True)
class Literal:
    """A number written in a text where a parameter of the same value could be named."""

    written: str  # as written: "80 %", "1.3", "7,500"
    parameters: tuple[str, ...]  # the parameters of that value
    percent: bool  # written as a percentage of a fraction (80 % for 0.8)


def literals(text: str, values: Mapping[str, float | int]) -> Iterator[Literal]:
    """The numbers written in the literal parts of a template (not in its {placeholders}) that equal the value of
    one of `values`: as written (7, 1.3, 7,500), or as a percentage (80 % for 0.8, 5 % for 5)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return
    for literal, _field, _spec, _conversion in parsed:
        for match in NUMBER.finditer(literal):
            number = float(match.group(1).replace(",", "") + (match.group(2) or ""))
            percent = PERCENT.match(literal, match.end())
            written = match.group(0) + (percent.group(0) if percent else "")
            exact = _equal(number, values)
            fraction = _equal(number / 100, values) if percent else ()
            if exact:
                yield Literal(written, exact, False)
            elif fraction:
                yield Literal(written, fraction, True)


def _equal(number: float, values: Mapping[str, float | int]) -> tuple[str, ...]:
    return tuple(name for name, value in values.items() if abs(float(value) - number) < 1e-9)


def placeholder_hint(literal: Literal) -> str:
    """How to write a literal as its parameter, in the form it was written in (80 %, 38.0, 7,500)."""
    number = NUMBER.search(literal.written)
    decimals = len(number.group(2)) - 1 if number and number.group(2) else 0
    spec = (".0%" if literal.percent else f",.{decimals}f" if number and "," in number.group(1)
            else f".{decimals}f" if decimals else "")
    return " or ".join(f"{{{name}:{spec}}}" if spec else f"{{{name}}}" for name in literal.parameters)


def all_literals(texts: Iterable[tuple[str, str]], values: Mapping[str, float | int]
                 ) -> Iterator[tuple[str, Literal]]:
    """(where, literal) for each (where, text)."""
    for where, text in texts:
        for literal in literals(text, values):
            yield where, literal
