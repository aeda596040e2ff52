"""harness.compare: the side-by-side table and the upgrade gate."""

from __future__ import annotations

import json

import pytest

from harness.compare import FIXED, KNOWN_FAILURE, REGRESSION, SAME, Cell, gate, gate_failed, load_cells, markdown_table

BASE, CAND = "11.3.1", "12.1.2"


def cell(scenario="native-checkout", runner=BASE, passed=True, *, violations=(), setup=1.0, cache=None, cpu=None,
         leftovers=0, error=None, job=None, shared=False):
    return Cell(scenario=scenario, runner=runner, passed=passed, job=job or ("success" if passed else "failure"),
                violations=tuple(violations), setup_seconds=setup, cache_growth_mb=cache, cpu_setup_pct=cpu,
                leftovers=leftovers, error=error, shared=shared)


def kinds(findings):
    return {f.scenario: f.kind for f in findings}


# -- table -----------------------------------------------------------------------------------------------


def _row(table: str, scenario: str) -> str:
    return next(line for line in table.splitlines()[2:] if line.split("|")[1].strip() in (scenario, f"{scenario} ◆"))


def test_markdown_table_marks_differing_rows():
    table = markdown_table([
        cell("same", BASE), cell("same", CAND),
        cell("differs", BASE), cell("differs", CAND, passed=False, violations=["green-steps-failed-job"]),
    ])
    assert table.splitlines()[0] == f"| scenario | {BASE} | {CAND} |"
    assert "◆" in _row(table, "differs")
    assert "◆" not in _row(table, "same")
    assert "[green-steps-failed-job]" in _row(table, "differs")


def test_markdown_table_missing_runner_is_na():
    table = markdown_table([cell("only-base", BASE), cell("other", CAND)])
    assert _row(table, "only-base").endswith("| n/a |")
    assert "◆" not in _row(table, "only-base")


def test_markdown_table_repeats():
    table = markdown_table([cell("s", BASE), cell("s", BASE), cell("s", CAND), cell("s", CAND, passed=False)])
    row = _row(table, "s")
    assert "◆" in row
    assert "pass 2/2" in row and "flaky 1/2" in row


def test_markdown_table_values():
    row = _row(markdown_table([cell("s", BASE, setup=12.34, cache=5.0, cpu=80.0, leftovers=2, error="boom")]), "s")
    assert "pass error" in row and "setup=12.3s" in row and "cpu=80.0%" in row and "cache+=5.0MB" in row
    assert "left=2" in row and "[-]" in row


def test_markdown_table_all_failed():
    assert "FAIL" in _row(markdown_table([cell("s", BASE, passed=False)]), "s")


# -- gate ------------------------------------------------------------------------------------------------


def test_gate_regression():
    findings = gate([cell(runner=BASE), cell(runner=CAND, passed=False, violations=["green-steps-failed-job"])],
                    BASE, CAND)
    assert kinds(findings) == {"native-checkout": REGRESSION}
    assert "green-steps-failed-job" in findings[0].why and "failed" in findings[0].why
    assert gate_failed(findings)


def test_gate_regression_uses_error_when_no_rule():
    findings = gate([cell(runner=BASE), cell(runner=CAND, passed=False, error="target could not be set up")], BASE, CAND)
    assert "target could not be set up" in findings[0].why


def test_gate_known_failure():
    findings = gate([cell(runner=BASE, passed=False), cell(runner=CAND, passed=False)], BASE, CAND)
    assert kinds(findings) == {"native-checkout": KNOWN_FAILURE}
    assert not gate_failed(findings)


def test_gate_fixed():
    findings = gate([cell(runner=BASE, passed=False), cell(runner=CAND)], BASE, CAND)
    assert kinds(findings) == {"native-checkout": FIXED}
    assert not gate_failed(findings)


def test_gate_flaky_candidate_is_a_regression():
    cells = [cell(runner=BASE), cell(runner=BASE), cell(runner=BASE),
             cell(runner=CAND), cell(runner=CAND, passed=False, violations=["runner-stalled"]), cell(runner=CAND)]
    findings = gate(cells, BASE, CAND)
    assert kinds(findings) == {"native-checkout": REGRESSION}
    assert "is flaky" in findings[0].why and "runner-stalled" in findings[0].why
    assert gate_failed(findings)


def test_gate_flaky_baseline_failing_candidate_is_known_failure():
    cells = [cell(runner=BASE), cell(runner=BASE, passed=False), cell(runner=CAND, passed=False)]
    assert kinds(gate(cells, BASE, CAND)) == {"native-checkout": KNOWN_FAILURE}


def test_gate_same_without_gate_on():
    findings = gate([cell(runner=BASE, setup=5), cell(runner=CAND, setup=50)], BASE, CAND)
    assert kinds(findings) == {"native-checkout": SAME}
    assert not gate_failed(findings)


def test_gate_on_setup_delta():
    slow = gate([cell(runner=BASE, setup=10), cell(runner=CAND, setup=20)], BASE, CAND, ["setup"])
    assert kinds(slow) == {"native-checkout": REGRESSION}
    assert "setup 20.0s vs 10.0s" in slow[0].why
    within = gate([cell(runner=BASE, setup=10), cell(runner=CAND, setup=16.9)], BASE, CAND, ["setup"])
    assert kinds(within) == {"native-checkout": SAME}


def test_gate_on_setup_ignores_unmeasured():
    findings = gate([cell(runner=BASE, setup=None), cell(runner=CAND, setup=99)], BASE, CAND, ["setup"])
    assert kinds(findings) == {"native-checkout": SAME}


def test_gate_on_other_deltas():
    cells = [cell(runner=BASE, cache=1.0, cpu=10.0, leftovers=0), cell(runner=CAND, cache=20.0, cpu=50.0, leftovers=1)]
    findings = gate(cells, BASE, CAND, ["cache", "cpu", "leftovers"])
    assert findings[0].kind == REGRESSION
    assert "cache growth" in findings[0].why and "setup CPU" in findings[0].why and "docker leftovers" in findings[0].why
    assert kinds(gate(cells, BASE, CAND, ["setup"])) == {"native-checkout": SAME}


def test_gate_does_not_compare_figures_of_a_shared_runner():
    """With pytest -n N, jobs overlap on one runner: its CPU and cache growth are not one job's."""
    for shared_base, shared_cand in ((True, False), (False, True)):
        cells = [cell(runner=BASE, cache=1.0, cpu=10.0, shared=shared_base),
                 cell(runner=CAND, cache=90.0, cpu=90.0, leftovers=1, shared=shared_cand)]
        findings = gate(cells, BASE, CAND, ["cache", "cpu", "leftovers"])
        assert findings[0].kind == REGRESSION and findings[0].why == "1 docker leftovers vs 0"  # per task: still judged
    row = _row(markdown_table([cell("s", CAND, cache=90.0, shared=True)]), "s")
    assert "cache+=90.0MB (shared runner)" in row


def test_cell_from_json_reads_shared():
    data = {"scenario": "s", "runner": CAND, "passed": True, "observations": {"shared_runner_with": ["x-12.1.2"]}}
    assert Cell.from_json(data).shared and not Cell.from_json({**data, "observations": {}}).shared


def test_gate_uses_last_repeat_for_deltas():
    cells = [cell(runner=BASE, setup=10), cell(runner=CAND, setup=100), cell(runner=CAND, setup=10)]
    assert kinds(gate(cells, BASE, CAND, ["setup"])) == {"native-checkout": SAME}


def test_gate_not_run_on_both():
    findings = gate([cell("a", BASE), cell("b", CAND)], BASE, CAND)
    assert kinds(findings) == {"a": "n/a", "b": "n/a"}
    assert not gate_failed(findings)


def test_gate_failed_any_regression():
    findings = gate([cell("a", BASE), cell("a", CAND), cell("b", BASE), cell("b", CAND, passed=False)], BASE, CAND)
    assert kinds(findings) == {"a": SAME, "b": REGRESSION}
    assert gate_failed(findings)
    assert not gate_failed([])


# -- cell records ----------------------------------------------------------------------------------------


def test_cell_from_json_and_load(tmp_path):
    record = {
        "scenario": "qemu-buildx", "runner": CAND, "passed": False,
        "verdict": {"job": "failure", "setup_seconds": 12.5,
                    "violations": [{"rule": "setup-over-budget"}, {"rule": "marker-missing"}]},
        "observations": {"cpu": {"setup": {"runner_pct": 55.0}}, "store_growth_mb": {"cache_server": 3.5},
                         "leftovers": ["container x", "network y"]},
        "error": "",
    }
    (tmp_path / "a.json").write_text(json.dumps(record))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "partial.json").write_text(json.dumps({"runner": CAND}))
    cells = load_cells(tmp_path)
    assert cells == [Cell("qemu-buildx", CAND, False, "failure", ("setup-over-budget", "marker-missing"), 12.5, 3.5,
                          55.0, 2, None)]


def test_cell_from_json_minimal():
    c = Cell.from_json({"scenario": "s", "runner": "r"})
    assert (c.passed, c.job, c.violations, c.setup_seconds, c.leftovers, c.error) == (False, None, (), None, 0, None)


def test_golden_baseline_round_trip_and_refusals(tmp_path):
    from harness.compare import load_baseline

    record = {"scenario": "qemu-buildx", "runner": "11.3.1", "passed": True,
              "verdict": {"job": "success", "violations": [], "setup_seconds": 1.0}, "observations": {}}
    good = tmp_path / "golden.json"
    good.write_text(json.dumps({"schema": "forgejo-runner-regress/baseline/1", "cells": [record]}))
    (cell,) = load_baseline(good)
    assert cell.scenario == "qemu-buildx" and cell.runner == "11.3.1" and cell.passed
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"cells": [record]}))
    with pytest.raises(ValueError, match="not a forgejo-runner-regress baseline"):
        load_baseline(foreign)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not readable JSON"):
        load_baseline(broken)
