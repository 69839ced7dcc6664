"""The chart can be read by people with low vision and by screen readers: its text is at least 4.5:1 against the page
and a flare week's tint (WCAG 1.4.3), the lines and marks a reader needs at least 3:1 (WCAG 1.4.11), and its text
alternative names its title, everything its legend lists, the red flags marked on it and the table with the same
numbers. axe-core cannot judge SVG text on a tinted band, so the colours are measured here."""

from __future__ import annotations

import html
import re

import orjson
import pytest

from cds.charts.model import Series
from cds.charts.render import FLARE_TINT, YELLOW, render_svg
from cds.charts.weeks import weeks
from cds.engine import RuleEngine
from tests.charts.test_series import series_of

# A plan line, a flare week and a proposed step; a red flag marked; daily steps.
CHARTS = ["step-back-flare", "high-blood-pressure-on-progress-week", "progress-steps"]
# The data a reader needs to tell apart (gids of the drawn series); the hatching and grid are decoration.
NEEDED = ["plan", "pain", "proposed", "activity", "red-flags"]


def rgb(colour: str) -> tuple[float, float, float]:
    value = colour.lstrip("#")
    return (int(value[0:2], 16) / 255, int(value[2:4], 16) / 255, int(value[4:6], 16) / 255)


def luminance(channels: tuple[float, float, float]) -> float:
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(colour: str, background: tuple[float, float, float]) -> float:
    high, low = sorted((luminance(rgb(colour)), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


WHITE = (1.0, 1.0, 1.0)
TINT = tuple(FLARE_TINT * c + (1 - FLARE_TINT) for c in rgb(YELLOW))  # the flare week's yellow over white
BACKGROUNDS = {"white": WHITE, "flare tint": TINT}


def chart(name: str, engine: RuleEngine) -> str:
    _, stored = series_of(name, engine)
    series = Series.model_validate(orjson.loads(orjson.dumps(stored[0])))
    return render_svg(series, weeks(series))


def group(svg: str, gid: str) -> str | None:
    """The markup of the group with this id: up to the closing tag indented as its opening one (matplotlib indents
    its SVG by depth)."""
    start = svg.find(f'<g id="{gid}"')
    if start < 0:
        return None
    indent = start - svg.rfind("\n", 0, start) - 1
    end = svg.find("\n" + " " * indent + "</g>", start)
    assert end > 0, f"group {gid} is not closed"
    return svg[start:end]


def test_the_contrast_measure_is_wcag_s() -> None:
    """Black on white is 21:1; the palette's orange, which the plan line once was, is under 3:1 on white."""
    assert contrast("#000000", WHITE) == pytest.approx(21.0)
    assert contrast("#E69F00", WHITE) < 3.0 < contrast("#A86E00", WHITE)


@pytest.mark.parametrize("name", CHARTS)
def test_every_label_of_the_chart_contrasts_with_the_page_and_the_flare_tint(name: str, engine: RuleEngine) -> None:
    svg = chart(name, engine)
    styles = re.findall(r'<text [^>]*style="([^"]*)"[^>]*>([^<]*)<', svg)
    assert styles, "the chart has text"
    low = []
    for style, text in styles:
        fill = re.search(r"fill: (#[0-9a-fA-F]{6})", style)
        colour = fill.group(1) if fill else "#000000"  # SVG text is black unless filled
        for where, background in BACKGROUNDS.items():
            if contrast(colour, background) < 4.5:
                low.append(f"{html.unescape(text)!r} in {colour} on {where}: {contrast(colour, background):.2f}:1")
    assert not low, "chart text under 4.5:1:\n" + "\n".join(low)


@pytest.mark.parametrize("name", CHARTS)
def test_every_line_and_mark_a_reader_needs_contrasts_3_to_1(name: str, engine: RuleEngine) -> None:
    svg = chart(name, engine)
    measured, low = 0, []
    for gid in NEEDED:
        markup = group(svg, gid)
        if markup is None:
            continue
        for colour in set(re.findall(r"(?:stroke|fill): (#[0-9a-fA-F]{6})", markup)):
            measured += 1
            for where, background in BACKGROUNDS.items():
                if contrast(colour, background) < 3.0:
                    low.append(f"{gid} in {colour} on {where}: {contrast(colour, background):.2f}:1")
    assert measured, "no drawn series found"
    assert not low, "graphics under 3:1:\n" + "\n".join(low)


@pytest.mark.parametrize("name", CHARTS)
def test_the_text_alternative_names_what_is_drawn_and_marked(name: str, engine: RuleEngine) -> None:
    svg = chart(name, engine)
    label = html.unescape(re.search(r'<svg [^>]*aria-label="([^"]*)"', svg).group(1))  # type: ignore[union-attr]
    legend = group(svg, "legend_1")
    assert legend is not None
    entries = [html.unescape(t) for t in re.findall(r"<text [^>]*>([^<]+)<", legend)]
    assert entries, "the chart has a legend"
    for entry in entries:
        assert entry in label, f"{entry!r} is drawn but the text alternative does not say so: {label}"
    for flag in re.findall(r"<text [^>]*>(red flag: [^<]+)<", svg):
        assert html.unescape(flag) in label, label
    assert "table" in label
