"""The pacing chart as SVG, drawn server-side by matplotlib (its SVG backend: no JavaScript in the page).

Okabe-Ito colours (safe for the common colour-vision deficiencies), and every series also differs by shape or
line style, so the chart reads in grey print too. One figure per process is reused under a lock: building axes,
ticks and their labels is most of matplotlib's cost, and only the data changes from chart to chart."""

from __future__ import annotations

import io
import math
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.text import Annotation

from cds.charts.model import Series
from cds.charts.series import WEEKS
from cds.charts.weeks import Week, boom_bust_days, daily_activity, plan_steps

BLUE, ORANGE, GREEN, VERMILLION, YELLOW = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#F0E442"
# Text in those hues, darker: at least 4.5:1 against white and against a flare week's yellow tint (WCAG 1.4.3);
# vermillion and reddish purple themselves are 3.9:1 and 3.1:1 against white.
VERMILLION_TEXT, PURPLE_TEXT = "#AD4C00", "#A0457A"
# Lines (the plan) and the red-flag mark, darker for the same reason: a graphic the reader needs is at least 3:1 against
# white and the flare tint (WCAG 1.4.11); orange itself is 2.3:1 and reddish purple 3.1:1 (2.8:1 on the tint).
ORANGE_LINE = "#A86E00"
FLARE_TINT = 0.35  # the flare week's yellow, this opaque over white
DAY = timedelta(days=1)
# Text stays text in the SVG (searchable, selectable, small); fixed ids make the same series the same SVG.
RC: dict[Any, Any] = {"svg.fonttype": "none", "svg.hashsalt": "pacing-cds", "font.size": 10,
                      "font.family": "DejaVu Sans"}
FLAG_WORDS = {"blood-pressure": "BP", "fever": "fever", "weight-loss": "weight loss"}


def titles(series: Series) -> tuple[str, str]:
    """The chart's title and its activity axis label."""
    if series.measure == "steps":
        return "Daily steps against the step quota, with pain, over the last 12 weeks", "Steps per day"
    return ("Exercise minutes per day against the planned session length, with pain, over the last 12 weeks",
            "Exercise minutes per day")


class _Canvas:
    """The reusable figure: axes, labels and tick positions stay; each drawing's artists are removed after it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.figure = Figure(figsize=(10, 5))
        # Fixed margins: a layout engine would cost more than the rest of the drawing.
        self.figure.subplots_adjust(left=0.08, right=0.93, top=0.92, bottom=0.25)
        self.axes = self.figure.add_subplot()
        self.pain = self.axes.twinx()
        self.axes.set_xlabel("Date")
        self.pain.set_ylabel("Pain score (0-10)", color=VERMILLION_TEXT)
        # Fixed places for the axis labels and the title: placing them by the tick labels' extents (matplotlib's
        # default) lays out every tick label twice more per drawing.
        self.axes.xaxis.set_label_coords(0.5, -0.12)
        self.axes.yaxis.set_label_coords(-0.065, 0.5)
        self.pain.yaxis.set_label_coords(1.045, 0.5)
        self.title = self.figure.text(0.08, 0.945, "", fontsize=11, ha="left", va="bottom")
        self.pain.set_ylim(0, 10.5)
        self.pain.set_yticks(range(0, 11, 2))
        self.drawn: list[Artist] = []

    def keep(self, *artists: Any) -> None:
        for artist in artists:
            self.drawn.extend(artist if isinstance(artist, list) else [artist])

    def svg(self) -> str:
        out = io.StringIO()
        FigureCanvasSVG(self.figure).print_svg(out)
        return out.getvalue()

    def clear(self) -> None:
        for artist in self.drawn:
            artist.remove()
        self.drawn.clear()
        for legend in list(self.figure.legends):
            legend.remove()


_canvas: _Canvas | None = None
_canvas_lock = threading.Lock()


def _shared_canvas() -> _Canvas:
    global _canvas
    with _canvas_lock:
        if _canvas is None:
            with matplotlib.rc_context(RC):
                _canvas = _Canvas()
        return _canvas


def render_svg(series: Series, rows: list[Week]) -> str:
    """The chart as an SVG document (no XML prolog, ready to inline in HTML)."""
    canvas = _shared_canvas()
    with canvas.lock, matplotlib.rc_context(RC):
        try:
            top = _draw(canvas, series, rows)
            axes = canvas.axes
            title, label = titles(series)  # the service's own words: nothing to escape
            canvas.title.set_text(title)
            axes.set_ylabel(label)
            first = series.now.date() - (WEEKS * 7 - 1) * DAY
            axes.set_xlim(_x(first) - 0.5, _x(series.now.date() + 8 * DAY))
            # A tick at the end of every week, a label every other week: text is the costliest thing to lay out.
            ticks = [first + (7 * k + 6) * DAY for k in range(WEEKS)]
            axes.set_xticks([_x(d) for d in ticks[1::2]], [d.strftime("%d %b") for d in ticks[1::2]])
            axes.set_xticks([_x(d) for d in ticks[::2]], minor=True)
            axes.set_ylim(0, top)
            axes.set_yticks(_nice_ticks(top))
            legend = [ax.get_legend_handles_labels() for ax in (axes, canvas.pain)]
            handles = [h for drawn, _ in legend for h in drawn]
            canvas.keep(canvas.figure.legend(handles=handles, loc="lower center", ncols=4, frameon=False,
                                             fontsize=9))
            text = canvas.svg()
            name = alternative(title, [label for _, labels in legend for label in labels],
                               [a.get_text() for a in canvas.drawn if isinstance(a, Annotation)])
        finally:
            canvas.clear()
    svg = text[text.index("<svg"):]
    return svg.replace("<svg ", f'<svg role="img" aria-label="{escape(name, quote=True)}" ', 1)


def alternative(title: str, legend: list[str], notes: list[str]) -> str:
    """The chart's text alternative for screen readers: its title, what it draws (the legend), the orders and red
    flags marked on it (each different note once, with how often it is marked), and where its numbers are as text."""
    counted = Counter(notes)  # in the order first marked
    said = [note if n == 1 else f"{note} ({n} times)" for note, n in counted.items()]
    marked = f" Marked: {'; '.join(said)}." if said else ""
    return (f"{title}. Drawn: {'; '.join(legend)}.{marked} The table under the chart gives the same numbers week "
            f"by week.")


def _nice_ticks(top: float) -> list[float]:
    """Five or so round steps (1, 2, 2.5 or 5 times a power of ten) from 0 to the top of the activity axis: at
    most seven ticks, whatever the data."""
    if not 0 < top < 1e12:
        top = 1.0 if not top > 0 else 1e12
    magnitude = max(1.0, 10.0 ** math.floor(math.log10(top / 6)))
    steps = (1, 2, 2.5, 5, 10) if magnitude >= 10 else (1, 2, 5, 10)  # whole numbers of minutes below ten
    step = next(m * magnitude for m in steps if top / (m * magnitude) <= 6)
    return [step * k for k in range(int(top // step) + 1)]


def _x(day: date | datetime) -> float:
    """matplotlib's date number (days since its epoch), by arithmetic: date2num per point costs more than the
    rest of the data artists together."""
    if isinstance(day, datetime):
        moment = day if day.tzinfo is not None else day.replace(tzinfo=UTC)
        return (moment - _EPOCH).total_seconds() / 86400
    return float((day - _EPOCH.date()).days)


_EPOCH = datetime.fromisoformat(matplotlib.dates.get_epoch()).replace(tzinfo=UTC)


def _draw(canvas: _Canvas, series: Series, rows: list[Week]) -> float:
    """Every data artist; returns the top of the activity axis."""
    axes = canvas.axes
    days = daily_activity(series)
    first = series.now.date() - (WEEKS * 7 - 1) * DAY
    shown = sorted(d for d in days if d >= first)
    for row in rows:
        if row.flare:
            canvas.keep(axes.axvspan(_x(row.start) - 0.5, _x(row.end) + 0.5, facecolor=YELLOW, alpha=FLARE_TINT,
                                     hatch="//", edgecolor=ORANGE, linewidth=0, label="_flare"))
    if any(row.flare for row in rows):
        canvas.keep(axes.fill_between([], [], facecolor=YELLOW, alpha=FLARE_TINT, hatch="//", edgecolor=ORANGE,
                                      label="Flare week"))
    unit = "steps" if series.measure == "steps" else "minutes"
    # One collection of thick lines rather than a patch per bar: the same picture, a fraction of the drawing.
    canvas.keep(axes.vlines([_x(d) for d in shown], 0, [days[d] for d in shown], colors=BLUE, linewidth=5,
                            label=f"Done ({unit} a day)", gid="activity"))
    booms, busts = boom_bust_days(series)
    if booms:
        canvas.keep(axes.scatter([_x(d) for d in booms], [days[d] for d in booms], marker="^", s=40, color=BLUE,
                                 zorder=4, label="Boom day"))
    if busts:
        canvas.keep(axes.scatter([_x(d) for d in busts], [days[d] for d in busts], marker="v", s=40,
                                 color="black", zorder=4, label="Bust day"))
    heights = [days[d] for d in shown]
    corners = plan_steps(series)
    if corners:
        xs = [_x(d) for d, _ in corners] + [_x(series.now.date()) + 0.5]
        ys = [v for _, v in corners] + [corners[-1][1]]
        label = "Planned quota (steps a day)" if series.measure == "steps" else "Planned session (minutes)"
        canvas.keep(axes.step(xs, ys, where="post", color=ORANGE_LINE, linewidth=2.2, label=label,
                              gid="plan"))
        heights += ys
    proposed = series.proposed.daily if series.proposed else None
    if proposed is not None:
        start = _x(series.now.date()) + 0.5
        canvas.keep(axes.step([start, start + 7], [proposed, proposed], where="post", color=GREEN, linewidth=2.2,
                              linestyle="--", label="Proposed next step", gid="proposed"))
        heights.append(proposed)
    _pain(canvas, series)
    _orders_and_flags(canvas, series)
    return max(heights, default=1.0) * 1.1 or 1.0


def _pain(canvas: _Canvas, series: Series) -> None:
    if series.pain:
        canvas.keep(canvas.pain.plot([_x(w) for w, _ in series.pain], [v for _, v in series.pain],
                                     color=VERMILLION, marker="o", markersize=3, linewidth=1.4, label="Pain (0-10)",
                                     gid="pain"))


def _orders_and_flags(canvas: _Canvas, series: Series) -> None:
    axes: Axes = canvas.axes
    first = series.now - WEEKS * 7 * DAY
    for authored, minutes, per_week in series.orders:
        if authored < first:
            continue
        canvas.keep(axes.axvline(_x(authored), color="black", linestyle=":", linewidth=1),
                    axes.annotate(f"order: {minutes} min x {per_week}/wk", (_x(authored), 1),
                                  xycoords=("data", "axes fraction"), xytext=(3, -12), textcoords="offset points",
                                  fontsize=8))
    flags = [(w, kind, value) for w, kind, value in series.red_flags if w >= first]
    for when, kind, value in flags:
        words = FLAG_WORDS.get(kind, kind.replace("-", " "))
        text = f"red flag: {words}" + (f" {value:g}" if value is not None else "")
        canvas.keep(canvas.pain.annotate(text, (_x(when), 9.8), xytext=(-4, 0), textcoords="offset points",
                                         ha="right", fontsize=8, color=PURPLE_TEXT))
    if flags:
        canvas.keep(canvas.pain.scatter([_x(w) for w, _, _ in flags], [9.8] * len(flags), marker="X", s=70,
                                        color=PURPLE_TEXT, zorder=5, label="Red flag", gid="red-flags"))
