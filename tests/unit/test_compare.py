"""harness.compare: the side-by-side table and the upgrade gate, on outcomes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace

import pytest

from harness.compare import (
    FIXED,
    GATE_FAILED,
    GATE_INCONCLUSIVE,
    GATE_PASSED,
    INCONCLUSIVE,
    KNOWN_FAILURE,
    REGRESSION,
    SAME,
    Cell,
    gate,
    gate_failed,
    gate_line,
    gate_verdict,
    load_baseline,
    load_cells,
    markdown_table,
    rate,
)
from harness.outcome import Outcome

BASE, CAND = "11.3.1", "12.1.2"
P, F, I, S = Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE, Outcome.SKIPPED  # noqa: E741


def cell(scenario="native-checkout", runner=BASE, outcome=P, *, violations=(), setup=1.0, cache=None, cpu=None,
         leftovers=0, error=None, job=None, shared=False, reason=""):
    return Cell(scenario=scenario, runner=runner, outcome=outcome,
                job=job or ("success" if outcome is P else "failure"), violations=tuple(violations),
                setup_seconds=setup, cache_growth_mb=cache, cpu_setup_pct=cpu, leftovers=leftovers, error=error,
                reason=reason, shared=shared)


def kinds(findings):
    return {f.scenario: f.kind for f in findings}


# -- table -----------------------------------------------------------------------------------------------


def _row(table: str, scenario: str) -> str:
    return next(line for line in table.splitlines()[2:] if line.split("|")[1].strip() in (scenario, f"{scenario} ◆"))


def test_markdown_table_marks_differing_rows():
    table = markdown_table([
        cell("same", BASE), cell("same", CAND),
        cell("differs", BASE), cell("differs", CAND, F, violations=["green-steps-failed-job"]),
    ])
    assert table.splitlines()[0] == f"| scenario | {BASE} | {CAND} |"
    assert "◆" in _row(table, "differs")
    assert "◆" not in _row(table, "same")
    assert "[green-steps-failed-job]" in _row(table, "differs")


def test_markdown_table_mark_compares_outcomes_not_pass_flags():
    """Inconclusive and fail are both "not passed"; the table still tells them apart."""
    table = markdown_table([cell("s", BASE, F), cell("s", CAND, I, reason="API 502 after retries")])
    assert "◆" in _row(table, "s")
    assert "◆" not in _row(markdown_table([cell("s", BASE, S), cell("s", CAND, S)]), "s")


def test_markdown_table_missing_runner_is_na():
    table = markdown_table([cell("only-base", BASE), cell("other", CAND)])
    assert _row(table, "only-base").endswith("| n/a |")
    assert "◆" not in _row(table, "only-base")


def test_markdown_table_repeats():
    table = markdown_table([cell("s", BASE), cell("s", BASE), cell("s", CAND), cell("s", CAND, F)])
    row = _row(table, "s")
    assert "◆" in row
    assert "pass 2/2" in row and "flaky 1/2" in row


@pytest.mark.parametrize(
    ("outcomes", "words"),
    [
        ((P,), "pass"), ((F,), "FAIL"), ((I,), "INCONCLUSIVE"), ((S,), "skipped"), ((P, P, P), "pass 3/3"),
        ((P, F, P), "flaky 2/3"), ((P, F, I), "flaky 1/3, INCONCLUSIVE 1/3"), ((P, I), "pass 1/2, INCONCLUSIVE 1/2"),
        ((F, F, S), "FAIL 2/3, skipped 1/3"),
    ],
)
def test_rate_words(outcomes, words):
    assert rate([cell(outcome=o) for o in outcomes]) == words


def test_markdown_table_values_and_reason_of_non_pass_cells():
    row = _row(markdown_table([cell("s", BASE, setup=12.34, cache=5.0, cpu=80.0, leftovers=2)]), "s")
    assert row.startswith("| s | pass job=success") and "setup=12.3s" in row and "cpu=80.0%" in row
    assert "cache+=5.0MB" in row and "left=2" in row and "[-]" in row and "—" not in row
    row = _row(markdown_table([cell("s", BASE, I, reason="POST /repos → 502 | after 3 tries")]), "s")
    assert "INCONCLUSIVE" in row and "— POST /repos → 502 / after 3 tries" in row  # no stray column
    assert row.count("|") == 3


def test_markdown_table_all_failed():
    row = _row(markdown_table([cell("s", BASE, F, reason="unexpected-job-result: job failure")]), "s")
    assert "FAIL" in row and "unexpected-job-result: job failure" in row


# -- gate ------------------------------------------------------------------------------------------------


def test_gate_regression():
    findings = gate([cell(runner=BASE), cell(runner=CAND, outcome=F, violations=["green-steps-failed-job"])],
                    BASE, CAND)
    assert kinds(findings) == {"native-checkout": REGRESSION}
    assert "green-steps-failed-job" in findings[0].why and "failed" in findings[0].why
    assert gate_failed(findings) and gate_verdict(findings) == GATE_FAILED
    assert gate_line(findings) == "gate FAILED (regressed: native-checkout)"


def test_gate_regression_uses_reason_when_no_rule():
    findings = gate([cell(runner=BASE), cell(runner=CAND, outcome=F, reason="marker missing")], BASE, CAND)
    assert findings[0].kind == REGRESSION and "marker missing" in findings[0].why


def test_harness_error_on_candidate_is_inconclusive_never_a_regression():
    """The old gate used `passed`: an API error on our side read as a runner regression."""
    findings = gate([cell(runner=BASE), cell(runner=CAND, outcome=I, error="POST /api/v1/user/repos: 502 Bad Gateway",
                                               reason="POST /api/v1/user/repos: 502 Bad Gateway")], BASE, CAND)
    assert kinds(findings) == {"native-checkout": INCONCLUSIVE}
    assert "12.1.2 is inconclusive" in findings[0].why and "502 Bad Gateway" in findings[0].why
    assert not gate_failed(findings) and gate_verdict(findings) == GATE_INCONCLUSIVE
    assert gate_line(findings).startswith("gate INCONCLUSIVE (no evidence for: native-checkout")


@pytest.mark.parametrize(
    ("base", "cand", "says"),
    [
        ([P], [S], "12.1.2 is skipped: needs a Docker engine"),
        ([P], [], "no result on 12.1.2"),
        ([I], [P], "11.3.1 is inconclusive"),
        ([], [P], "no result on 11.3.1"),
        ([I], [F], "11.3.1 is inconclusive"),  # a failing candidate is no regression against an unknown baseline
        ([F], [I], "12.1.2 is inconclusive"),
        ([P, P], [P, I], "12.1.2 is inconclusive (1 of 2 repeats)"),
    ],
)
def test_gate_without_evidence_on_either_side_is_inconclusive(base, cand, says):
    cells = ([cell(runner=BASE, outcome=o, reason="lab did not boot") for o in base]
             + [cell(runner=CAND, outcome=o, reason="needs a Docker engine") for o in cand])
    findings = gate(cells, BASE, CAND)
    assert kinds(findings) == {"native-checkout": INCONCLUSIVE}
    assert says in findings[0].why
    assert gate_verdict(findings) == GATE_INCONCLUSIVE


def test_gate_failed_outweighs_inconclusive():
    cells = [cell("a", BASE), cell("a", CAND, F), cell("b", BASE), cell("b", CAND, I)]
    findings = gate(cells, BASE, CAND)
    assert kinds(findings) == {"a": REGRESSION, "b": INCONCLUSIVE}
    assert gate_verdict(findings) == GATE_FAILED


def test_gate_candidate_failing_some_repeats_with_others_inconclusive_is_a_regression():
    findings = gate([cell(runner=BASE), cell(runner=CAND, outcome=F, violations=["runner-stalled"]),
                     cell(runner=CAND, outcome=I)], BASE, CAND)
    assert kinds(findings) == {"native-checkout": REGRESSION}
    assert "is flaky (1 of 2 failed)" in findings[0].why


def test_gate_known_failure():
    findings = gate([cell(runner=BASE, outcome=F), cell(runner=CAND, outcome=F)], BASE, CAND)
    assert kinds(findings) == {"native-checkout": KNOWN_FAILURE}
    assert gate_verdict(findings) == GATE_PASSED


def test_gate_fixed():
    findings = gate([cell(runner=BASE, outcome=F), cell(runner=CAND)], BASE, CAND)
    assert kinds(findings) == {"native-checkout": FIXED}
    assert findings[0].why == f"fails on {BASE}, passes on {CAND}"
    assert gate_verdict(findings) == GATE_PASSED and gate_line(findings) == "gate passed (nothing regressed)"


def test_gate_flaky_candidate_is_a_regression():
    cells = [cell(runner=BASE), cell(runner=BASE), cell(runner=BASE),
             cell(runner=CAND), cell(runner=CAND, outcome=F, violations=["runner-stalled"]), cell(runner=CAND)]
    findings = gate(cells, BASE, CAND)
    assert kinds(findings) == {"native-checkout": REGRESSION}
    assert "is flaky" in findings[0].why and "runner-stalled" in findings[0].why
    assert gate_failed(findings)


def test_gate_flaky_baseline_failing_candidate_is_known_failure():
    cells = [cell(runner=BASE), cell(runner=BASE, outcome=F), cell(runner=CAND, outcome=F)]
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


def test_gate_on_cache_compares_the_per_repository_figure_of_warm_up_cells():
    """--warm-up: the growth per repository (the cache server's, over K repositories) is what is compared."""
    base = dataclasses.replace(cell(runner=BASE, cache=48.2), cache_per_repo_mb=0.0, repos=3)
    cand = dataclasses.replace(cell(runner=CAND, cache=48.2), cache_per_repo_mb=48.2, repos=3)
    findings = gate([base, cand], BASE, CAND, ["cache"])
    assert findings[0].kind == REGRESSION and findings[0].why == "cache growth 48.2MB vs 0.0MB per repository"
    same = dataclasses.replace(base, cache_per_repo_mb=48.2)
    assert kinds(gate([same, cand], BASE, CAND, ["cache"])) == {"native-checkout": SAME}
    one_sided = dataclasses.replace(base, cache_growth_mb=1.0, cache_per_repo_mb=None)  # falls back on one job's
    assert gate([one_sided, cand], BASE, CAND, ["cache"])[0].why == "cache growth 48.2MB vs 1.0MB"


def test_cold_and_warm_figures_from_a_record():
    warm_up = {"repos": 3, "setup_seconds_cold": 9.5, "setup_seconds_warm": 1.2, "cpu_setup_pct_cold": 58.0,
               "cpu_setup_pct_warm": 12.0, "per_repo_mb": {"cache_server": 48.2}}
    c = Cell.from_json({"scenario": "q", "runner": CAND, "outcome": "pass", "observations": {"warm_up": warm_up}})
    assert (c.setup_seconds_cold, c.setup_seconds_warm, c.cpu_setup_pct_cold, c.cpu_setup_pct_warm) == (
        9.5, 1.2, 58.0, 12.0)
    assert (c.cache_per_repo_mb, c.repos) == (48.2, 3)
    one = {"scenario": "q", "runner": CAND, "outcome": "pass", "verdict": {"setup_seconds": 0.4, "cold": False},
           "observations": {"cpu": {"setup": {"runner_pct": 9.0}}}}
    c = Cell.from_json(one)
    assert (c.setup_seconds_cold, c.setup_seconds_warm, c.cpu_setup_pct_cold, c.cpu_setup_pct_warm) == (
        None, 0.4, None, 9.0)
    unknown = Cell.from_json({**one, "verdict": {"setup_seconds": 0.4, "cold": None}})
    assert (unknown.setup_seconds_cold, unknown.setup_seconds_warm) == (None, None)
    assert "setup=0.4s " in _row(markdown_table([unknown]), "q")  # no cache state: the figure is not named


def test_table_names_cold_and_warm():
    warm = dataclasses.replace(cell("s", CAND, setup=1.2, cpu=12.0, cache=48.2), setup_seconds_cold=9.5,
                               setup_seconds_warm=1.2, cpu_setup_pct_cold=58.0, cpu_setup_pct_warm=12.0,
                               cache_per_repo_mb=48.2, repos=3)
    row = _row(markdown_table([warm]), "s")
    assert "setup=1.2s(warm; cold 9.5s) cpu=12.0%(warm; cold 58.0%) cache+=48.2MB (48.2MB/repo ×3)" in row
    cold = dataclasses.replace(cell("s", CAND, setup=9.5), setup_seconds_cold=9.5)
    assert "setup=9.5s(cold)" in _row(markdown_table([cold]), "s")


def test_gate_uses_last_repeat_for_deltas():
    cells = [cell(runner=BASE, setup=10), cell(runner=CAND, setup=100), cell(runner=CAND, setup=10)]
    assert kinds(gate(cells, BASE, CAND, ["setup"])) == {"native-checkout": SAME}


def test_gate_scenario_on_one_side_only_is_inconclusive():
    findings = gate([cell("a", BASE), cell("b", CAND), cell("c", "12.0.1")], BASE, CAND)
    assert kinds(findings) == {"a": INCONCLUSIVE, "b": INCONCLUSIVE}  # c: on neither gate runner, not compared
    assert "no result on 12.1.2" in findings[0].why and "no result on 11.3.1" in findings[1].why


def test_gate_with_nothing_compared_is_inconclusive():
    findings = gate([cell("c", "12.0.1")], BASE, CAND)
    assert kinds(findings) == {"*": INCONCLUSIVE}
    assert "nothing was compared" in findings[0].why
    assert gate_verdict(gate([], BASE, CAND)) == GATE_INCONCLUSIVE


def test_gate_failed_any_regression():
    findings = gate([cell("a", BASE), cell("a", CAND), cell("b", BASE), cell("b", CAND, F)], BASE, CAND)
    assert kinds(findings) == {"a": SAME, "b": REGRESSION}
    assert gate_failed(findings)
    assert not gate_failed([])


# -- cell records ----------------------------------------------------------------------------------------


def test_cell_from_json_reads_shared():
    data = {"scenario": "s", "runner": CAND, "passed": True, "observations": {"shared_runner_with": ["x-12.1.2"]}}
    assert Cell.from_json(data).shared and not Cell.from_json({**data, "observations": {}}).shared


def test_cell_from_json_and_load(tmp_path):
    record = {
        "scenario": "qemu-buildx", "runner": CAND, "outcome": "fail", "reason": "setup-over-budget: 12.5s",
        "passed": False,
        "verdict": {"job": "failure", "setup_seconds": 12.5,
                    "violations": [{"rule": "setup-over-budget"}, {"rule": "marker-missing"}]},
        "observations": {"cpu": {"setup": {"runner_pct": 55.0}}, "store_growth_mb": {"cache_server": 3.5},
                         "leftovers": ["container x", "network y"]},
        "error": "",
    }
    (tmp_path / "a.json").write_text(json.dumps(record))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "partial.json").write_text(json.dumps({"runner": CAND}))
    (tmp_path / "bad-outcome.json").write_text(json.dumps({**record, "outcome": "maybe"}))
    cells = load_cells(tmp_path)
    assert cells == [Cell("qemu-buildx", CAND, F, "failure", ("setup-over-budget", "marker-missing"), 12.5, 3.5,
                          55.0, 2, None, "setup-over-budget: 12.5s")]


def test_records_from_before_outcomes_fall_back_on_passed():
    old = {"scenario": "s", "runner": "r", "passed": False, "error": "the target could not be set up\nmore"}
    c = Cell.from_json(old)
    assert c.outcome is F and c.reason == "the target could not be set up"
    assert Cell.from_json({**old, "passed": True, "error": None}).outcome is P
    assert Cell.from_json({**old, "outcome": "inconclusive"}).outcome is I


def test_cell_from_json_minimal():
    c = Cell.from_json({"scenario": "s", "runner": "r"})
    assert (c.outcome, c.job, c.violations, c.setup_seconds, c.leftovers, c.error) == (F, None, (), None, 0, None)


def test_golden_baseline_round_trip_and_refusals(tmp_path):
    record = {"scenario": "qemu-buildx", "runner": "11.3.1", "passed": True,
              "verdict": {"job": "success", "violations": [], "setup_seconds": 1.0}, "observations": {}}
    good = tmp_path / "golden.json"
    good.write_text(json.dumps({"schema": "forgejo-runner-regress/baseline/1", "cells": [record]}))
    (golden,) = load_baseline(good)
    assert golden.scenario == "qemu-buildx" and golden.runner == "11.3.1" and golden.passed
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"cells": [record]}))
    with pytest.raises(ValueError, match="not a forgejo-runner-regress baseline"):
        load_baseline(foreign)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not readable JSON"):
        load_baseline(broken)
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"schema": "forgejo-runner-regress/baseline/1", "cells": [{**record, "outcome": "?"}]}))
    with pytest.raises(ValueError, match="malformed cell"):
        load_baseline(odd)


# -- failure classes ---------------------------------------------------------------------------------------


def test_the_class_of_a_failed_cell_is_in_its_table_cell_and_the_gate_lines():
    stale = replace(cell("moved-tag", BASE, F, violations=["stale-action"]), failure_class="stale-action")
    table = markdown_table([stale, cell("moved-tag", CAND)])
    assert "| FAIL [stale-action] job=failure" in _row(table, "moved-tag")
    assert "[stale-action]" not in _row(table, "moved-tag").split("|")[3]  # the passing candidate has none
    (fixed,) = gate([stale, cell("moved-tag", CAND)], BASE, CAND)
    assert fixed.kind == FIXED and fixed.why == f"fails on {BASE} [stale-action], passes on {CAND}"
    lost = replace(cell("blackhole", CAND, F), failure_class="finalization-lost")
    (regressed,) = gate([cell("blackhole", BASE), lost], BASE, CAND)
    assert regressed.why.startswith(f"{BASE} passed, {CAND} failed [finalization-lost]:")


def test_an_inconclusive_cell_shows_no_class_word_beside_its_outcome():
    ours = replace(cell("s", CAND, I, error="502"), failure_class="inconclusive")
    assert "INCONCLUSIVE job=" in _row(markdown_table([ours]), "s")


def test_cell_from_json_reads_the_class():
    record = {"scenario": "s", "runner": CAND, "outcome": "fail", "class": "finalization-lost",
              "class_evidence": {"why": "…", "lines": [], "timings": {}}}
    assert Cell.from_json(record).failure_class == "finalization-lost"
    assert Cell.from_json({"scenario": "s", "runner": CAND, "outcome": "pass"}).failure_class is None


def test_gate_and_table_use_the_whole_key_of_a_patched_build():
    fix = "12.1.2+fix"
    cells = [cell(runner=CAND), cell(runner=fix, outcome=F, violations=["post-step-failed"]),
             cell("docker-checkout", runner=CAND, outcome=F, violations=["unexpected-job-result"]),
             cell("docker-checkout", runner=fix)]
    findings = gate(cells, CAND, fix)
    assert kinds(findings) == {"native-checkout": REGRESSION, "docker-checkout": FIXED}
    native = next(f for f in findings if f.scenario == "native-checkout")
    assert native.why.startswith("12.1.2 passed, 12.1.2+fix failed"), native.why
    header = markdown_table(cells).splitlines()[0]
    assert "| 12.1.2 |" in header and "| 12.1.2+fix |" in header


def test_gate_fixed_names_the_baselines_failure():
    base = replace(cell(runner=BASE, outcome=F, violations=["stale-action", "signature:git-refs-not-updated"],
                        reason="[stale-action] phase C: job log 'some refs were not updated', then …"),
                   failure_class="stale-action")
    findings = gate([base, cell(runner=CAND)], BASE, CAND)
    assert findings[0].why == (f"fails on {BASE} [stale-action], passes on {CAND} ({BASE}: [stale-action] phase C: "
                               "job log 'some refs were not updated', then …)")
    assert gate_verdict(findings) == GATE_PASSED


# -- conditions ------------------------------------------------------------------------------------------


def test_a_condition_is_its_own_row_table_and_gate_finding_never_the_runner_key():
    plain = [cell(runner=BASE), cell(runner=CAND)]
    slow = [replace(cell(runner=BASE), condition="slow"),
            replace(cell(runner=CAND, outcome=F, violations=["runner-stalled"]), condition="slow",
                    failure_class="finalization-lost")]
    findings = gate([*plain, *slow], BASE, CAND)
    assert [(f.scenario, f.condition, f.kind) for f in findings] == [
        ("native-checkout", "", SAME), ("native-checkout", "slow", REGRESSION)]
    assert gate_line(findings) == "gate FAILED (regressed under slow: native-checkout)"
    table = markdown_table([*plain, *slow])
    first, _, under = table.partition("\n### under slow\n")
    assert "| native-checkout | pass" in first and "FAIL" not in first
    assert "| native-checkout ◆ | pass" in under and "FAIL [finalization-lost]" in under
    assert {c.runner for c in slow} == {BASE, CAND}


def test_the_gate_line_names_plain_and_conditioned_regressions_apart():
    cells = [cell("a", BASE), cell("a", CAND, F), replace(cell("b", BASE), condition="slow"),
             replace(cell("b", CAND, F), condition="slow"), replace(cell("a", BASE), condition="slow"),
             replace(cell("a", CAND, F), condition="slow")]
    assert gate_line(gate(cells, BASE, CAND)) == "gate FAILED (regressed: a; regressed under slow: a, b)"


def test_a_record_s_condition_and_late_reports_are_read():
    record = {"scenario": "native-checkout", "runner": CAND, "condition": "slow", "outcome": "pass",
              "verdict": {"job": "success", "violations": [{"rule": "report-late", "severity": "report"}]},
              "observations": {"report_late": {"seconds": 10.7, "step": "Complete job"}}}
    parsed = Cell.from_json(record)
    assert (parsed.condition, parsed.row, parsed.late) == ("slow", "native-checkout under slow",
                                                           "10.7s in 'Complete job'")
    assert "| pass reports late 10.7s in 'Complete job' job=success" in markdown_table([parsed])
    assert Cell.from_json({**record, "condition": None}).condition == ""
