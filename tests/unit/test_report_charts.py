"""harness.report_charts: the SVG shapes of report.html, computed from a cell's view."""

from __future__ import annotations

from harness import report_charts
from harness.report_charts import Row, bars, figure
from harness.report_view import cell_view

from .test_report_view import record


def test_bars_share_one_scale_and_the_budget_is_a_dashed_line():
    chart = bars("setup", "t", [Row("cold", 30.0, "#000"), Row("warm", 15.0, "#111"), Row("n", None, "")], "s",
                 ("budget", 60.0))
    cold, warm = chart.rects
    assert abs(cold.w - 2 * warm.w) < 0.2 and cold.w < report_charts.BAR_W
    budget = next(line for line in chart.lines if line.dashed)
    assert budget.x1 > cold.x + cold.w and chart.height > 3 * report_charts.ROW_H
    words = [t.text for t in chart.texts]
    assert "30.0s" in words and "15.0s" in words and "not measured" in words and "budget 60.0s" in words


def test_a_zero_value_still_draws_a_visible_bar_and_labels_are_short():
    (rect,) = bars("cache", "t", [Row("home", 0.0, "#000")], " MB").rects
    assert rect.w == 1.0
    assert (figure(0.0338926), figure(14.83), figure(308.14)) == ("0.03", "14.8", "308")


def test_every_chart_of_a_cell_is_drawn():
    view = cell_view(record(), 0)
    setup = report_charts.setup_chart(view)
    assert [t.text for t in setup.texts][:2] == ["cold", "0.05s"] and setup.width > 0 and setup.height > 0
    cpu = report_charts.cpu_chart(view)
    assert [t.text for t in cpu.texts if ":" in t.text] == ["setup: runner", "setup: tree", "complete: runner",
                                                              "complete: tree"]
    cache = report_charts.cache_chart(view)
    assert len(cache.rects) == 2 and cache.rects[0].w > cache.rects[1].w  # cache_server grew, tool_cache did not
    assert [t.text for t in cache.texts].count("not measured") == 2  # the record measured two stores of four
    assert view.fault is not None
    line = report_charts.timeline(view, view.fault.events)
    xs = [r.x for r in line.rects]
    assert xs == sorted(xs) and len(xs) == 5 and line.height > 5 * 16
    assert "97.4s aftermath ends" in [t.text for t in line.texts]


def test_a_record_without_figures_still_gets_its_charts():
    view = cell_view({"scenario": "x", "runner": "r", "outcome": "skipped"}, 0)
    for chart in (report_charts.setup_chart(view), report_charts.cpu_chart(view), report_charts.cache_chart(view)):
        assert chart.height > 0 and "not measured" in [t.text for t in chart.texts]
