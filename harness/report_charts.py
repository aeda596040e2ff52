"""The inline SVG charts of report.html, as shapes computed from a :class:`~harness.report_view.CellView`.

Only geometry here: the template draws each :class:`Chart` as ``<svg>`` (Jinja escapes every text), so the page needs
no script and no external asset. Every cell with a record gets its charts, a passing one too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.observe.cache import STORES
from harness.report_view import CellView, Event

WIDTH = 560
LABEL_W = 170  # the row labels' column
BAR_W = WIDTH - LABEL_W - 90  # the bars' room; the rest holds the value labels
ROW_H = 20
TOP = 8
COLORS = {"cold": "#4a78b5", "warm": "#e0883a", "measured": "#7a7a7a", "runner": "#4a78b5", "tree": "#9bb7dd",
          "budget": "#c0392b", "axis": "#555555", "event": "#333333", "fault": "#c0392b", "verdict": "#2c7a3f"}
STORE_COLORS = dict(zip(STORES, ("#4a78b5", "#e0883a", "#6aa84f", "#8e7cc3"), strict=False))


def figure(value: float) -> str:
    """A value for a label: two decimals below 10, one up to 100, none above (0.0339 → 0.03, 14.8 → 14.8)."""
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str
    dashed: bool = False


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "start"  # start, middle, end
    fill: str = "#222222"


@dataclass(frozen=True)
class Chart:
    """One SVG: its size, its accessible title and its shapes."""

    kind: str  # setup, cpu, cache, timeline
    title: str
    width: float
    height: float
    rects: tuple[Rect, ...] = ()
    lines: tuple[Line, ...] = ()
    texts: tuple[Text, ...] = ()


@dataclass(frozen=True)
class Row:
    """One bar: its label, value (None: not measured) and colour."""

    label: str
    value: float | None
    color: str


def bars(kind: str, title: str, rows: Sequence[Row], unit: str, limit: tuple[str, float] | None = None) -> Chart:
    """Horizontal bars on one scale; ``limit`` (label, value) is drawn as a dashed line across them (a budget)."""
    values = [r.value for r in rows if r.value is not None] + ([limit[1]] if limit else [])
    top = max([v for v in values if v > 0], default=1.0) * 1.05
    scale = BAR_W / top
    rects, texts, lines = [], [], []
    for i, row in enumerate(rows):
        y = TOP + i * ROW_H
        texts.append(Text(LABEL_W - 6, y + ROW_H * 0.7, row.label, "end"))
        if row.value is None:
            texts.append(Text(LABEL_W + 4, y + ROW_H * 0.7, "not measured", fill="#777777"))
            continue
        w = max(row.value, 0.0) * scale
        rects.append(Rect(LABEL_W, y + 3, round(max(w, 1.0), 1), ROW_H - 6, row.color))
        texts.append(Text(LABEL_W + w + 4, y + ROW_H * 0.7, f"{figure(row.value)}{unit}"))
    height = TOP + len(rows) * ROW_H + (22 if limit else 8)
    if limit:
        x = LABEL_W + limit[1] * scale
        lines.append(Line(x, TOP, x, TOP + len(rows) * ROW_H + 4, COLORS["budget"], dashed=True))
        texts.append(Text(x, height - 4, f"{limit[0]} {figure(limit[1])}{unit}", "middle", COLORS["budget"]))
    lines.append(Line(LABEL_W, TOP, LABEL_W, TOP + len(rows) * ROW_H, COLORS["axis"]))
    return Chart(kind, title, WIDTH, height, tuple(rects), tuple(lines), tuple(texts))


def setup_chart(cell: CellView) -> Chart:
    """Set up job, cold and warm (the measured run alone when its cache state is unknown), against its budget."""
    s = cell.setup
    rows = [Row("cold", s.cold, COLORS["cold"]), Row("warm", s.warm, COLORS["warm"])]
    if s.cold is None and s.warm is None:
        rows = [Row("measured", s.measured, COLORS["measured"])]
    budget = ("budget", s.budget) if s.budget is not None else None
    return bars("setup", f"Set up job of {cell.title}: seconds, cold and warm, against its budget", rows, "s", budget)


def cpu_chart(cell: CellView) -> Chart:
    """The runner's CPU (its process, and its process tree) in each phase of the job."""
    rows = [Row(f"{p.phase}: {who}", value, COLORS[who]) for p in cell.cpu
            for who, value in (("runner", p.runner_pct), ("tree", p.tree_pct))]
    return bars("cpu", f"CPU per phase of {cell.title} (% of one core)", rows or [Row("cpu", None, "")], "%")


def cache_chart(cell: CellView) -> Chart:
    """Each store's growth over each repository the workflow ran from (MB), in order (repo 1 is the first run)."""
    rows = [Row(f"repo {i + 1}: {store}", r.growth_mb.get(store), STORE_COLORS[store])
            for i, r in enumerate(cell.repos) for store in STORES]
    return bars("cache", f"Cache growth per repository of {cell.title} (MB per store)",
                rows or [Row("stores", None, "")], " MB")


def timeline(cell: CellView, events: Sequence[Event]) -> Chart:
    """The fault's moments on one axis (seconds from the fault), each named on its own line below."""
    end = max([e.at for e in events], default=1.0) or 1.0
    left, room = 20.0, WIDTH - 40.0
    axis_y = 24.0
    lines = [Line(left, axis_y, left + room, axis_y, COLORS["axis"])]
    texts = [Text(left, 12, "0s"), Text(left + room, 12, f"{end:g}s", "end")]
    rects = []
    for i, event in enumerate(events):
        x = left + room * event.at / end
        color = COLORS.get(event.what, COLORS["event"])
        y = axis_y + 18 + i * 16
        lines.append(Line(x, axis_y - 6, x, y - 10, color, dashed=True))
        rects.append(Rect(x - 3, axis_y - 3, 6, 6, color))
        texts.append(Text(x, y, f"{event.at:g}s {event.what}", "end" if x > WIDTH * 0.6 else "start", color))
    height = axis_y + 18 + len(events) * 16
    return Chart("timeline", f"Fault timeline of {cell.title} (seconds from the fault)", WIDTH, height,
                 tuple(rects), tuple(lines), tuple(texts))
