"""harness.warmup: K repositories on one runner handle, cold and warm figures, the refusal of disruptive cells."""

from __future__ import annotations

import json

import pytest

from harness.cell import CellResult, NotRunnable
from harness.forgejo.models import Status
from harness.outcome import Outcome
from harness.scenarios import load
from harness.target import RunnerHandle
from harness.verdict import Verdict, Violation
from harness.versions import Version
from harness.warmup import WARM_UP_DIR, refusal, run_warm

IMAGE = 48.2
HANDLE = RunnerHandle("12.1.2", Version(12, 1, 2), {"native": "regress-12.1.2-native:host"})


def result(n, *, cold, setup, cpu, growth=IMAGE, error=None, failing=(), shared=False):
    """The n-th run's result (its stores after: n copies of the image)."""
    verdict = Verdict(tuple(failing), Status.FAILURE if failing else Status.SUCCESS, (), (), setup, 60.0, cold)
    obs = {"cpu": {"setup": {"runner_pct": cpu}},
           "store_growth_mb": {"cache_server": growth, "tool_cache": 0.0, "action_clones": 0.4 if cold else 0.0,
                               "home": 0.0},
           "stores_after": {"cache_server": {"mb": n * growth, "entries": n}}, "stores_measured_at": float(n),
           "runner_from_log": {"name": "runner-12", "version": "v12.1.2"}}
    if shared:
        obs["shared_runner_with"] = ["other-cell"]
    return CellResult("qemu-buildx", "12.1.2", "12.1.2", "regress-12.1.2-native", verdict, error=error,
                      repo=f"regress/qemu-buildx-{n}", observations=obs)


class Runs:
    """A fake run_one: hands out prepared results and records where each run went."""

    def __init__(self, *results):
        self.results = list(results)
        self.calls = []

    def __call__(self, handle, bundle_dir, evidence):
        self.calls.append((handle, bundle_dir, evidence))
        return self.results[len(self.calls) - 1]


def warm(runs, tmp_path, repos=3, evidence="on-failure"):
    return run_warm(load("qemu-buildx"), HANDLE, tmp_path / "cell", repos=repos, evidence=evidence, run_one=runs)


def test_cold_run_then_warm_on_the_same_runner(tmp_path):
    runs = Runs(result(1, cold=True, setup=9.5, cpu=58.0), result(2, cold=False, setup=1.5, cpu=15.0),
                result(3, cold=False, setup=1.2, cpu=12.0))
    cell = warm(runs, tmp_path)
    assert [c[0] for c in runs.calls] == [HANDLE] * 3  # one handle: the lane's or worker's runner
    assert [c[1] for c in runs.calls] == [tmp_path / "cell" / WARM_UP_DIR / "repo-1",
                                          tmp_path / "cell" / WARM_UP_DIR / "repo-2", tmp_path / "cell"]
    assert [c[2] for c in runs.calls] == ["always", "always", "on-failure"]  # warm-up evidence kept under the cell
    assert cell.outcome is Outcome.PASS
    figures = cell.observations["warm_up"]
    assert figures["repos"] == 3 and [r["repo"] for r in figures["runs"]] == ["regress/qemu-buildx-1",
                                                                             "regress/qemu-buildx-2"]
    assert (figures["setup_seconds_cold"], figures["setup_seconds_warm"]) == (9.5, 1.2)
    assert (figures["cpu_setup_pct_cold"], figures["cpu_setup_pct_warm"]) == (58.0, 12.0)
    assert figures["per_repo_mb"]["cache_server"] == IMAGE and figures["notes"] == []
    assert figures["measured_repo"] == "regress/qemu-buildx-3"
    growth = [v for v in cell.verdict.violations if v.rule == "cache-growth"]
    assert len(growth) == 1 and growth[0].severity == "report" and "3 repositories" in growth[0].message
    assert "added 3 × 48.2 MB" in growth[0].message


def test_a_failed_warm_up_makes_a_passing_cell_inconclusive(tmp_path):
    runs = Runs(result(1, cold=True, setup=9.5, cpu=58.0, failing=[Violation("green-steps-failed-job", "x")]),
                result(2, cold=False, setup=1.5, cpu=15.0), result(3, cold=False, setup=1.2, cpu=12.0))
    cell = warm(runs, tmp_path)
    assert cell.outcome is Outcome.INCONCLUSIVE
    assert cell.reason.startswith("warm-up run 1 of 3 (regress/qemu-buildx-1) was fail: [green-steps-failed-job] x")
    assert "the measured run was pass" in cell.reason


def test_an_inconclusive_warm_up_is_named_too(tmp_path):
    runs = Runs(result(1, cold=True, setup=9.5, cpu=58.0), result(2, cold=False, setup=None, cpu=None,
                                                                   error="API 502 after retries"),
                result(3, cold=False, setup=1.2, cpu=12.0))
    cell = warm(runs, tmp_path)
    assert cell.outcome is Outcome.INCONCLUSIVE and "warm-up run 2 of 3" in cell.reason
    assert "was inconclusive: API 502 after retries" in cell.reason


def test_a_failing_measured_run_stays_a_failure(tmp_path):
    runs = Runs(result(1, cold=True, setup=9.5, cpu=58.0, error="lab hiccup"),
                result(2, cold=False, setup=1.2, cpu=12.0, failing=[Violation("step-failed", "builders")]))
    cell = warm(runs, tmp_path, repos=2)
    assert cell.outcome is Outcome.FAIL and cell.error is None


def test_no_cold_figure_when_the_first_run_found_everything_cached(tmp_path):
    runs = Runs(result(1, cold=False, setup=1.4, cpu=14.0), result(2, cold=False, setup=1.2, cpu=12.0))
    figures = warm(runs, tmp_path, repos=2).observations["warm_up"]
    assert figures["setup_seconds_cold"] is None and figures["cpu_setup_pct_cold"] is None
    assert figures["setup_seconds_warm"] == 1.2
    assert "no cold figure" in figures["notes"][0]


def test_a_shared_runner_gives_no_per_repository_finding(tmp_path):
    runs = Runs(result(1, cold=True, setup=9.5, cpu=58.0, shared=True), result(2, cold=False, setup=1.2, cpu=12.0))
    cell = warm(runs, tmp_path, repos=2)
    assert "cache-growth" not in cell.verdict.rules()
    assert any("shared their runner" in n for n in cell.observations["warm_up"]["notes"])


def test_no_growth_no_finding(tmp_path):
    runs = Runs(result(1, cold=True, setup=9.5, cpu=58.0, growth=0.0), result(2, cold=False, setup=1.2, cpu=12.0,
                                                                               growth=0.0))
    assert "cache-growth" not in warm(runs, tmp_path, repos=2).verdict.rules()


def test_evidence_never_stays_never(tmp_path):
    runs = Runs(result(1, cold=True, setup=9.5, cpu=58.0), result(2, cold=False, setup=1.2, cpu=12.0))
    warm(runs, tmp_path, repos=2, evidence="never")
    assert [c[2] for c in runs.calls] == ["never", "never"]


@pytest.mark.parametrize("name", ["killed-during-post", "slow-action-fetch"])
def test_disruptive_cells_are_refused_before_any_run(name, tmp_path):
    runs = Runs()
    with pytest.raises(NotRunnable, match=f"--warm-up does not apply to {name}: it disturbs its runner"):
        run_warm(load(name), HANDLE, tmp_path, repos=3, evidence="always", run_one=runs)
    assert runs.calls == []
    assert refusal(load("qemu-buildx")) is None


def test_the_measured_bundle_gets_the_warm_up_figures_and_the_final_result(tmp_path):
    measured = result(2, cold=False, setup=1.2, cpu=12.0)
    measured.bundle = tmp_path / "cell"
    runs = Runs(result(1, cold=True, setup=9.5, cpu=58.0, error="API 502 after retries"), measured)
    cell = warm(runs, tmp_path, repos=2, evidence="always")
    figures = json.loads((tmp_path / "cell" / "warm-up.json").read_text())
    assert figures["outcome"] == "inconclusive" and figures["reason"].startswith("warm-up run 1 of 2")
    assert (figures["setup_seconds_cold"], figures["setup_seconds_warm"]) == (9.5, 1.2)
    final = json.loads((tmp_path / "cell" / "result.json").read_text())
    assert final["outcome"] == "inconclusive" and final["observations"]["warm_up"]["repos"] == 2
    assert cell.outcome is Outcome.INCONCLUSIVE
