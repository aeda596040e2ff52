"""harness.observe.heavy: each job's setup seconds and CPU in its window, and the relative budget."""

from __future__ import annotations

from harness.forgejo.models import JobView
from harness.observe.cpu import Sample
from harness.observe.heavy import SetupFigure, relative_violations, setup_figures


def job_view(t0: float, setup_seconds: float) -> JobView:
    """A finished job whose "Set up job" runs from ``t0`` to its ``⭐ Run Main`` line ``setup_seconds`` later."""
    lines = [{"index": 1, "message": "runner received task", "timestamp": t0},
             {"index": 2, "message": "☁️  git clone 'http://x/o/heavy' # ref=v1", "timestamp": t0 + 0.01},
             {"index": 3, "message": "⭐ Run Main heavy", "timestamp": t0 + setup_seconds}]
    return JobView.from_view({
        "state": {"run": {"status": "success", "done": True, "title": "t",
                          "jobs": [{"id": 1, "name": "j", "status": "success", "duration": "3s"}]},
                  "currentJob": {"title": "j", "detail": "Success",
                                 "steps": [{"summary": "Set up job", "status": "success", "duration": "1s"},
                                           {"summary": "heavy", "status": "success", "duration": "1s"}]}},
        "logs": {"stepsLog": [{"step": 0, "cursor": 3, "lines": lines, "started": int(t0)}]},
    })


def test_each_job_gets_its_own_window_and_cpu():
    views = [job_view(1000.0, 5.0), job_view(1000.5, 10.0)]
    samples = [Sample(1000.0 + i / 10, 10.0, 100.0 if i <= 51 else 40.0) for i in range(1, 120)]
    first, second = setup_figures(views, samples, ("first", "second"))
    assert (first.job, first.seconds, second.job, second.seconds) == ("first", 5.0, "second", 10.0)
    assert first.cpu_pct == 100.0  # every sample covering 1000–1005 s (one interval past its end) is at 100 %
    assert second.cpu_pct is not None and 40.0 < second.cpu_pct < 100.0  # its window spans both levels


def test_no_samples_is_no_cpu_figure():
    (figure,) = setup_figures([job_view(1000.0, 2.0)], [])
    assert figure.seconds == 2.0 and figure.cpu_pct is None and figure.job == "job 0"


def test_relative_budget():
    figures = [SetupFigure("first", 5.6, None, None), SetupFigure("second", 9.3, None, None),
               SetupFigure("third", None, None, None)]
    (violation,) = relative_violations(figures, baseline=5.5, factor=1.4)
    assert violation.rule == "setup-over-budget" and violation.severity == "fail"
    assert "second: 'Set up job' took 9.3s > 1.4 × 5.5s" in violation.message and "= 7.7s" in violation.message
    assert relative_violations(figures[:1], baseline=5.5, factor=1.4) == []
