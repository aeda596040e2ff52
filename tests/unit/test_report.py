"""harness.report: records, reports, golden baselines, the gate and the session's exit status."""

from __future__ import annotations

import json

import pytest

from harness import report
from harness.compare import INCONCLUSIVE, KNOWN_FAILURE, REGRESSION, SAME, Cell
from harness.outcome import Outcome
from harness.report import EXIT_OK, EXIT_TESTS_FAILED, GateRequest, ReportedTest

BASE, CAND = "11.3.1", "12.1.2"
NODE = "tests/scenarios/test_scenarios.py::test_scenario[{}-{}]"


def record(scenario="native-checkout", runner=BASE, outcome="pass", reason="", **extra):
    return {"scenario": scenario, "runner": runner, "outcome": outcome, "reason": reason,
            "passed": outcome == "pass", "error": None, "nodeid": NODE.format(scenario, runner),
            "verdict": {"job": "success" if outcome == "pass" else "failure", "violations": [], "setup_seconds": 2.0},
            "observations": {}, **extra}


def cell_test(scenario="native-checkout", runner=BASE, failed=(), skipped=None, message=""):
    return ReportedTest(NODE.format(scenario, runner), scenario, runner, tuple(failed), skipped, message)


def write_cells(run_dir, *records):
    for r in records:
        report.write_record(run_dir, r["nodeid"].split("::")[-1], r)


# -- records -----------------------------------------------------------------------------------------------


def test_write_and_load_records_name_the_unreadable(tmp_path):
    path = report.write_record(tmp_path, "test_scenario[native-checkout-11.3.1]", record())
    assert path == tmp_path / "cells" / "test_scenario_native-checkout-11.3.1.json"
    (tmp_path / "cells" / "broken.json").write_text("{")
    (tmp_path / "cells" / "foreign.json").write_text(json.dumps({"runner": "x"}))
    records, problems = report.load_records(tmp_path / "cells")
    assert [r["scenario"] for r in records] == ["native-checkout"]
    assert len(problems) == 2 and all("not a cell record" in p for p in problems)
    assert report.load_records(tmp_path / "nowhere") == ([], [])


def test_skipped_record_is_a_cell_record():
    cell = Cell.from_json(report.skipped_record("qemu-buildx", CAND, "needs a Docker engine", "n::x"))
    assert cell.outcome is Outcome.SKIPPED and cell.reason == "needs a Docker engine"


def test_tests_without_a_record_get_one_saying_why():
    tests = [cell_test(runner=BASE),
             cell_test(runner=CAND, failed=("setup",), message="the target could not be set up: boom"),
             cell_test("docker-checkout", CAND, skipped="lab binaries missing: no forgejo binary"),
             cell_test("qemu-buildx", CAND),
             ReportedTest("tests/unit/test_x.py::test_y", failed=("call",))]
    records = report.complete_records([record()], tests)
    by_key = {(r["scenario"], r["runner"]): r for r in records}
    assert len(records) == 4  # the unit test is no cell
    assert by_key[("native-checkout", BASE)] == record()
    died = by_key[("native-checkout", CAND)]
    assert died["outcome"] == "inconclusive" and "failed (setup) before its cell wrote a record" in died["reason"]
    assert "the target could not be set up: boom" in died["reason"]
    skipped = by_key[("docker-checkout", CAND)]
    assert skipped["outcome"] == "skipped" and skipped["reason"] == "lab binaries missing: no forgejo binary"
    assert by_key[("qemu-buildx", CAND)]["outcome"] == "inconclusive"


def test_reports_and_golden_baseline(tmp_path):
    records = [record(), record(runner=CAND, outcome="inconclusive", reason="API 502 after retries")]
    written = report.write_reports(tmp_path, records)
    assert [p.name for p in written] == ["report.md", "report.json", "index.md", "report.html"]
    table = (tmp_path / "report.md").read_text()
    assert table.startswith("# Runner comparison\n\n| scenario | 11.3.1 | 12.1.2 |")
    assert "native-checkout ◆" in table and "INCONCLUSIVE" in table and "API 502 after retries" in table
    cold_warm = dict.fromkeys(report.COLD_WARM)
    assert json.loads((tmp_path / "report.json").read_text()) == [{**r, **cold_warm, "runner_cache": None}
                                                                   for r in records]
    assert report.write_reports(tmp_path / "empty", []) == [] and not (tmp_path / "empty").exists()
    golden = report.save_baseline(tmp_path / "sub" / "golden.json", records)
    data = json.loads(golden.read_text())
    assert data["schema"] == "forgejo-runner-regress/baseline/1" and data["cells"] == records


def test_merge_golden_replaces_the_baseline_runner():
    stored = [Cell.from_json(record()), Cell.from_json(record(runner="11.2.0"))]
    live = [Cell.from_json(record(runner=BASE, outcome="fail")), Cell.from_json(record(runner=CAND))]
    cells, key = report.merge_golden(stored, live, BASE)
    assert key == BASE and [(c.runner, c.outcome) for c in cells] == [(BASE, Outcome.PASS), (CAND, Outcome.PASS)]
    with pytest.raises(ValueError, match=r"holds several runners \(it holds 11\.2\.0, 11\.3\.1\).*--baseline"):
        report.merge_golden(stored, live, None)
    with pytest.raises(ValueError, match=r"has no runner 10\.0\.0"):
        report.merge_golden(stored, live, "10.0.0")
    assert report.merge_golden(stored[:1], live, None)[1] == BASE


# -- the exit status ------------------------------------------------------------------------------------------


def _finish(tmp_path, records, tests, current, **gate):
    write_cells(tmp_path, *records)
    return report.finish(tmp_path, tests, current, gate=GateRequest(candidate=CAND, baseline=BASE, **gate))


def test_gate_passed_and_nothing_else_failed_is_ok(tmp_path):
    done = _finish(tmp_path, [record(), record(runner=CAND)], [cell_test(), cell_test(runner=CAND)], EXIT_OK)
    assert done.exit_status == EXIT_OK and done.gate_line == "gate passed (nothing regressed)"
    gate = json.loads((tmp_path / "gate.json").read_text())
    assert gate["verdict"] == "passed" and gate["findings"] == [
        {"scenario": "native-checkout", "kind": SAME, "why": "passes on both", "condition": ""}]


def test_gate_passed_never_hides_an_unrelated_failure(tmp_path):
    """The measured problem: `1 failed, 2 passed`, `gate passed (nothing regressed)`, exit 0."""
    tests = [cell_test(), cell_test(runner=CAND), ReportedTest("tests/test_other.py::test_unrelated", failed=("call",))]
    done = _finish(tmp_path, [record(), record(runner=CAND)], tests, EXIT_TESTS_FAILED)
    assert done.gate_line == "gate passed (nothing regressed)"
    assert done.exit_status == EXIT_TESTS_FAILED


def test_a_known_failure_is_judged_by_the_gate(tmp_path):
    """Both versions fail the scenario (their tests failed): the gate judges those cells, nothing else failed."""
    records = [record(outcome="fail"), record(runner=CAND, outcome="fail")]
    tests = [cell_test(failed=("call",)), cell_test(runner=CAND, failed=("call",))]
    done = _finish(tmp_path, records, tests, EXIT_TESTS_FAILED)
    assert [f.kind for f in done.findings] == [KNOWN_FAILURE] and done.exit_status == EXIT_OK


def test_a_cell_that_also_failed_its_teardown_keeps_the_session_failed(tmp_path):
    records = [record(outcome="fail"), record(runner=CAND, outcome="fail")]
    tests = [cell_test(failed=("call",)), cell_test(runner=CAND, failed=("call", "teardown"))]
    done = _finish(tmp_path, records, tests, EXIT_TESTS_FAILED)
    assert [f.kind for f in done.findings] == [KNOWN_FAILURE] and done.exit_status == EXIT_TESTS_FAILED


def test_a_failing_cell_on_a_runner_the_gate_does_not_compare_keeps_the_session_failed(tmp_path):
    records = [record(), record(runner=CAND), record(runner="12.0.1", outcome="fail")]
    tests = [cell_test(), cell_test(runner=CAND), cell_test(runner="12.0.1", failed=("call",))]
    done = _finish(tmp_path, records, tests, EXIT_TESTS_FAILED)
    assert [f.kind for f in done.findings] == [SAME] and done.exit_status == EXIT_TESTS_FAILED


def test_a_regression_fails_the_gate(tmp_path):
    done = _finish(tmp_path, [record(), record(runner=CAND, outcome="fail", reason="unexpected-job-result")],
                   [cell_test(), cell_test(runner=CAND, failed=("call",))], EXIT_TESTS_FAILED)
    assert [f.kind for f in done.findings] == [REGRESSION]
    assert done.exit_status == EXIT_TESTS_FAILED and done.gate_line.startswith("gate FAILED")
    assert json.loads((tmp_path / "gate.json").read_text())["verdict"] == "FAILED"
    assert report.read_gate(tmp_path / "gate.json") == (list(done.findings), BASE, CAND)
    page = (tmp_path / "report.html").read_text()  # written again once the gate decided: its line first
    assert 'id="gate-line">gate FAILED (regressed: native-checkout)' in page and page.index("gate FAILED") < page.index(
        'id="matrix"')


def test_read_gate_names_a_file_that_is_none(tmp_path):
    (tmp_path / "gate.json").write_text('{"verdict": "passed"}')
    with pytest.raises(ValueError, match=r"gate\.json is not a gate\.json: KeyError\('findings'\)"):
        report.read_gate(tmp_path / "gate.json")


def test_a_candidate_whose_fixture_died_makes_the_gate_inconclusive(tmp_path):
    tests = [cell_test(), cell_test(runner=CAND, failed=("setup",), message="RuntimeError: boom")]
    done = _finish(tmp_path, [record()], tests, EXIT_TESTS_FAILED)
    (finding,) = done.findings
    assert finding.kind == INCONCLUSIVE and finding.scenario == "native-checkout"
    assert "12.1.2 is inconclusive" in finding.why and "RuntimeError: boom" in finding.why
    assert done.exit_status == EXIT_TESTS_FAILED and done.gate_line.startswith("gate INCONCLUSIVE")


def test_an_inconclusive_candidate_is_never_a_regression_and_never_ok(tmp_path):
    records = [record(), record(runner=CAND, outcome="inconclusive", reason="POST /user/repos: 502 after 3 tries")]
    done = _finish(tmp_path, records, [cell_test(), cell_test(runner=CAND, failed=("call",))], EXIT_TESTS_FAILED)
    assert [f.kind for f in done.findings] == [INCONCLUSIVE] and done.exit_status == EXIT_TESTS_FAILED


def test_a_golden_baseline_scenario_missing_from_the_run_is_inconclusive(tmp_path):
    golden = report.save_baseline(tmp_path / "golden.json", [record(), record("docker-checkout")])
    write_cells(tmp_path / "run", record(runner=CAND))
    done = report.finish(tmp_path / "run", [cell_test(runner=CAND)], EXIT_OK,
                         gate=GateRequest(candidate=CAND, golden=golden))
    assert done.baseline == BASE
    assert {f.scenario: f.kind for f in done.findings} == {"docker-checkout": INCONCLUSIVE, "native-checkout": SAME}
    assert done.exit_status == EXIT_TESTS_FAILED


@pytest.mark.parametrize("current", [2, 3, 4, 5])  # interrupted, internal error, usage error, nothing collected
def test_pytest_statuses_other_than_ok_and_failed_are_left_alone(tmp_path, current):
    done = _finish(tmp_path, [record(), record(runner=CAND)], [cell_test(), cell_test(runner=CAND)], current)
    assert done.exit_status == current


def test_no_gate_leaves_the_status_to_pytest(tmp_path):
    write_cells(tmp_path, record())
    done = report.finish(tmp_path, [cell_test()], EXIT_TESTS_FAILED, save=tmp_path / "golden.json")
    assert done.exit_status is None and done.findings is None and done.gate_line is None
    assert (tmp_path / "golden.json").is_file() and not (tmp_path / "gate.json").exists()


def test_a_failure_pytest_counted_without_a_test_report_keeps_the_session_failed(tmp_path):
    done = _finish(tmp_path, [record(), record(runner=CAND)], [cell_test(), cell_test(runner=CAND)], EXIT_TESTS_FAILED)
    assert done.exit_status == EXIT_TESTS_FAILED


def test_summary_lines(tmp_path):
    done = _finish(tmp_path, [record(), record(runner=CAND, outcome="fail")], [cell_test(), cell_test(runner=CAND)],
                   EXIT_OK)
    lines = report.summary_lines(done, CAND, None)
    assert lines[0] == "upgrade gate: 11.3.1 → 12.1.2"
    assert lines[1].strip().startswith("regression: native-checkout — 11.3.1 passed, 12.1.2 failed")
    assert lines[-1] == "gate FAILED (regressed: native-checkout)"
    assert report.summary_lines(report.SessionReport(), CAND, None) == []


# -- cold / warm figures and the cache store per runner -------------------------------------------------------


def _stores(cache_after, growth, at):
    return {"stores_after": {"cache_server": {"mb": cache_after, "entries": 1}},
            "store_growth_mb": {"cache_server": growth, "tool_cache": 0.0, "action_clones": 0.0, "home": 0.0},
            "stores_measured_at": at, "runner_from_log": {"name": "runner-12", "version": "v12.1.2"}}


def _warm_record():
    warm_up = {"repos": 3, "setup_seconds_cold": 9.5, "setup_seconds_warm": 1.2, "cpu_setup_pct_cold": 58.0,
               "cpu_setup_pct_warm": 12.0, "per_repo_mb": {"cache_server": 48.2},
               "runs": [{"repo": "o/q1", "stores": _stores(48.2, 48.2, 1.0)},
                        {"repo": "o/q2", "stores": _stores(96.4, 48.2, 2.0)}]}
    return record("qemu-buildx", CAND, repo="o/q3", observations={**_stores(144.6, 48.2, 3.0), "warm_up": warm_up})


def test_report_json_carries_cold_and_warm_figures_and_the_runner_cache(tmp_path):
    cold_only = record(verdict={"job": "success", "violations": [], "setup_seconds": 4.0, "cold": True},
                       observations={"cpu": {"setup": {"runner_pct": 50.0}}})
    report.write_reports(tmp_path, [cold_only, _warm_record()])
    by_runner = {r["runner"]: r for r in json.loads((tmp_path / "report.json").read_text())}
    old, new = by_runner[BASE], by_runner[CAND]
    assert (old["setup_seconds_cold"], old["setup_seconds_warm"], old["cpu_setup_pct_cold"]) == (4.0, None, 50.0)
    assert old["runner_cache"] is None  # no store measured (not a lab runner)
    assert [new[k] for k in report.COLD_WARM] == [9.5, 1.2, 58.0, 12.0]
    assert new["runner_cache"]["cache_store_after_repo_mb"] == [48.2, 96.4, 144.6]
    assert new["runner_cache"]["repos"] == ["o/q1", "o/q2", "o/q3"]
    table = (tmp_path / "report.md").read_text()
    assert "setup=2.0s(warm; cold 9.5s)" in table and "(48.2MB/repo ×3)" in table
    assert "setup=4.0s(cold)" in table
    assert "## Cache store per runner" in table
    assert "- 12.1.2 (runner-12): cache store after each of 3 repositories: 48.2, 96.4, 144.6 MB" in table


def test_no_cache_section_without_measured_stores(tmp_path):
    report.write_reports(tmp_path, [record()])
    assert "Cache store" not in (tmp_path / "report.md").read_text()


def test_no_cache_section_when_every_store_stayed_empty(tmp_path):
    empty = record("native-checkout", CAND, repo="o/n1", observations=_stores(0.0, 0.0, 1.0))
    empty["observations"]["stores_after"]["home"] = {"mb": 4.2, "entries": 30}  # HOME always holds a little
    report.write_reports(tmp_path, [empty])
    assert "Cache store" not in (tmp_path / "report.md").read_text()
    report.write_reports(tmp_path, [empty, _warm_record()])
    assert "cache store after each of 4 repositories: 0.0, 48.2, 96.4, 144.6 MB" in (tmp_path / "report.md").read_text()


def test_one_repository_reads_singular(tmp_path):
    report.write_reports(tmp_path, [record("qemu-buildx", CAND, repo="o/q1", observations=_stores(48.2, 48.2, 1.0))])
    assert "cache store after the repository: 48.2 MB" in (tmp_path / "report.md").read_text()
