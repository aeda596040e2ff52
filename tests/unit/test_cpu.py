"""harness.observe.cpu: the plot's layout (title, every phase shaded, fault and stall marked) and the PNG."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from harness.budgets import BUDGETS
from harness.forgejo.models import JobView, LogLine, Status, Step
from harness.observe import cpu
from harness.observe import observers as obs
from harness.observe.base import CellScope
from harness.scenarios import load

SAMPLES = [cpu.Sample(100.0 + i * 0.5, 10.0 * i, 20.0 * i) for i in range(8)]  # 100.0 … 103.5


def frozen_during_post() -> JobView:
    """A frozen runner's final view: "Complete job" holds one ⭐ Run Post line and runs 30 s to the zombie stop."""
    steps = (Step(0, "Set up job", Status.SUCCESS, 0.0, 100, (LogLine(1, "received task", 100.2),
                                                              LogLine(2, "⭐ Run Main regress/slow-post@v1", 100.6))),
             Step(1, "regress/slow-post@v1", Status.SUCCESS, 1.0, 100, (LogLine(3, "main ran", 101.0),)),
             Step(2, "Complete job", Status.FAILURE, 30.0, 101, (LogLine(4, "⭐ Run Post regress/slow-post@v1",
                                                                           101.2),)))
    return JobView(Status.FAILURE, True, "t", (), "job", "", steps, None, {})


def test_complete_job_of_a_frozen_runner_is_a_phase_that_runs_to_the_stop():
    bounds = obs.phase_bounds(frozen_during_post())
    assert set(bounds) == {"setup", "steps", "complete"}
    assert bounds["complete"] == (101.2, 131.0)  # its only line to its start + duration (the stop)
    silent = frozen_during_post()
    no_lines = (*silent.steps[:2], Step(2, "Complete job", Status.FAILURE, 30.0, 101, ()))
    assert obs.phase_bounds(JobView(Status.FAILURE, True, "t", (), "job", "", no_lines, None, {}))["complete"] == (
        101, 131.0)


def test_layout_shades_every_phase_and_marks_fault_and_stall():
    bounds = obs.phase_bounds(frozen_during_post())
    plan = cpu.layout(SAMPLES, bounds, title="frozen-during-post · runner 12.1.2 · finalization-lost",
                      marks={"fault: SIGSTOP": 101.3, "stall": 117.0})
    assert [s[0] for s in plan.spans] == ["setup", "steps", "complete"]
    assert all(end - start >= cpu.MIN_SPAN for _, start, end, _ in plan.spans)  # a zero-length phase stays visible
    assert plan.spans[2][1:3] == (pytest.approx(1.2), pytest.approx(31.0))  # beyond the last sample (3.5 s)
    assert len({colour for *_, colour in plan.spans}) == 3
    assert [(label, at) for label, at, _ in plan.marks] == [("fault: SIGSTOP (1.3s)", pytest.approx(1.3)),
                                                            ("stall (17.0s)", pytest.approx(17.0))]
    assert plan.title.endswith("finalization-lost")


def test_png_is_written_with_title_and_marks(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    path = tmp_path / "cpu.png"
    assert cpu.write_png(SAMPLES, obs.phase_bounds(frozen_during_post()), path, title="t",
                         marks={"fault": 101.0}) is None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cpu.write_png([], {}, path) == "no samples"


def test_the_cpu_observer_titles_the_plot_with_the_cells_class(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(cpu, "write_png", lambda samples, bounds, path, **kw: seen.update(kw))
    scope = CellScope(target=SimpleNamespace(), scenario=load("frozen-during-post"),
                      handle=SimpleNamespace(key="12.1.2", version="12.1.2"), label="native", budgets=BUDGETS,
                      notify=lambda s: None, observing=contextlib.ExitStack(), teardown=contextlib.ExitStack())
    scope.marks["stall"] = 117.0
    scope.failure_class = "finalization-lost"  # set by the cell once classified, before the bundle is written
    obs._png(SAMPLES, {}, tmp_path / "cpu.png", scope)
    assert seen == {"title": "frozen-during-post · runner 12.1.2 (v12.1.2) · finalization-lost",
                    "marks": {"stall": 117.0}}
