"""The upgrade gate seen from pytest: exit statuses and gate lines, without a lab.

The project under test stubs the lab away in its conftest: ``regress_target`` is two fake runners
(11.3.1, 12.1.2) and ``run_cell`` answers from the table in env ``FAKE_CELLS``
(``scenario@runner`` → pass | fail | stale | late | lost | inconclusive | not-runnable | die; ``stale`` fails with
the rule ``stale-action``, the class of moved-tag's known bug; ``late`` passes with the report-only ``report-late``;
``lost`` fails ``finalization-lost``, late-reports-during-post's known bug on >=12.0.0). The cell records, the
report, the gate and the exit status are the plugin's own.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tests.plugin.stub_lab import SCENARIO_TEST, STUB_LAB, isolate

CONFTEST = '''
import json
import os
from types import SimpleNamespace

import pytest

import harness.pytest_plugin as plugin
from harness.cell import NotRunnable
from harness.classify import Classification
from harness.outcome import Outcome
from harness.versions import Version

TABLE = json.loads(os.environ.get("FAKE_CELLS", "{}"))
RULE = "unexpected-job-result"


class FakeVerdict:
    def __init__(self, failed, rule=RULE, late=False):
        self.failed, self.rule, self.late = failed, rule, late
        self.job_status = "failure" if failed else "success"

    def rules(self):
        return (self.rule,) if self.failed else ("report-late",) if self.late else ()

    def table(self):
        return f"job: {self.job_status}\\nviolations:\\n  {self.rule}: job failure, expected success" if self.failed else ""

    def to_json(self):
        late = [{"rule": "report-late", "severity": "report"}] if self.late else []
        return {"job": self.job_status, "setup_seconds": 1.5,
                "violations": [{"rule": self.rule}] if self.failed else late}


class FakeResult:
    def __init__(self, scenario, key, answer, bug=None, condition=""):
        self.scenario, self.runner_key, self.version, self.label = scenario, key, key, f"regress-{key}-native"
        self.condition = condition
        self.known_bug = bug if bug is not None and bug.applies(Version.parse(key)) else None
        self.rule = {"stale": "stale-action", "lost": "runner-stalled"}.get(answer, RULE)
        self.klass = {"stale": "stale-action", "lost": "finalization-lost"}.get(answer)
        self.late = answer == "late"
        answer = "fail" if answer in ("stale", "lost") else "pass" if answer == "late" else answer
        self.outcome = Outcome(answer)
        self.error = "POST /api/v1/user/repos: 502 Bad Gateway after 3 tries" if answer == "inconclusive" else None
        self.reason = {"pass": "", "fail": f"{self.rule}: job failure, expected success"}.get(answer, self.error)
        self.verdict = None if answer == "inconclusive" else FakeVerdict(answer == "fail", self.rule, self.late)
        self.selfcheck_problem, self.bundle, self.timings = None, None, {"total": 2.0}
        self.classification = Classification("inconclusive", "our own side failed") if answer == "inconclusive" \
            else None

    def to_json(self):
        return {"scenario": self.scenario, "runner": self.runner_key, "condition": self.condition,
                "version": self.version, "label": self.label,
                "outcome": str(self.outcome), "reason": self.reason, "passed": self.outcome is Outcome.PASS,
                "error": self.error, "selfcheck_problem": None,
                "verdict": self.verdict.to_json() if self.verdict else None, "timings": self.timings,
                "observations": {"report_late": {"seconds": 24.0, "step": "Post regress/slow-post@v1"}} if self.late
                else {}, "bundle": None,
                "class": self.klass if self.outcome is Outcome.FAIL else None}

    def known_bug_reproduced(self):
        return self.known_bug is not None and self.outcome is Outcome.FAIL and self.klass == self.known_bug.failure_class


def fake_run_cell(target, scenario, handle, out, **kwargs):
    under = f"/{scenario.condition}" if scenario.condition else ""
    answer = TABLE.get(f"{scenario.name}@{handle.key}{under}", "pass")
    if answer == "die":
        raise RuntimeError("the fixture died before the cell wrote its record")
    if answer == "not-runnable":
        raise NotRunnable("needs a Docker engine; none answered and none could be started")
    return FakeResult(scenario.name, handle.key, answer, scenario.expect.known_bug, scenario.condition)

''' + STUB_LAB

TESTS = "import pytest\n" + SCENARIO_TEST + '''

@pytest.mark.unrelated
def test_unrelated():
    assert UNRELATED_PASSES
'''

GATE = ("-m", "regression or unrelated", "--baseline", "11.3.1", "--candidate", "12.1.2")


@pytest.fixture
def project(pytester, monkeypatch, tmp_path):
    """A project with the stubbed lab; ``run(table, *args, unrelated=True)`` runs pytest in it."""
    isolate(monkeypatch, tmp_path, ("REGRESS_BASELINE", "REGRESS_CANDIDATE", "REGRESS_COMPARE_BASELINE"))
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    unrelated: a test of the user's own\n")

    def run(table, *args, unrelated=True):
        monkeypatch.setenv("FAKE_CELLS", json.dumps(table))
        pytester.makepyfile(test_cells=TESTS.replace("UNRELATED_PASSES", str(unrelated)))
        return pytester.runpytest_subprocess("-rfEs", "-p", "no:cacheprovider", *args)

    return run


def run_dir(pytester):
    (found,) = (pytester.path / "artifacts" / "evidence").iterdir()
    return found


def gate_json(pytester):
    return json.loads((run_dir(pytester) / "gate.json").read_text())


def last_line(result):
    return [line for line in result.stdout.lines if line.startswith("gate ")][-1]


def test_nothing_regressed_and_nothing_else_failed_exits_0(project, pytester):
    result = project({}, *GATE, "-k", "native-checkout or unrelated")
    result.assert_outcomes(passed=3)
    assert last_line(result) == "gate passed (nothing regressed)"
    assert result.ret == pytest.ExitCode.OK
    assert gate_json(pytester)["verdict"] == "passed"


def test_gate_passed_with_an_unrelated_failing_test_exits_non_zero(project, pytester):
    """The measured problem: `1 failed, 2 passed`, `gate passed (nothing regressed)`, exit 0."""
    result = project({}, *GATE, "-k", "native-checkout or unrelated", unrelated=False)
    result.assert_outcomes(passed=2, failed=1)
    assert last_line(result) == "gate passed (nothing regressed)"
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_known_failure_alone_exits_0(project, pytester):
    """Both versions fail the scenario: their tests fail, and the gate, which compares them, passes."""
    result = project({"native-checkout@11.3.1": "fail", "native-checkout@12.1.2": "fail"}, *GATE,
                     "-k", "native-checkout or unrelated")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*known failure: native-checkout — fails on both versions*"])
    assert result.ret == pytest.ExitCode.OK


def test_a_real_regression_fails_the_gate(project, pytester):
    result = project({"native-checkout@12.1.2": "fail"}, *GATE, "-k", "native-checkout or unrelated")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*regression: native-checkout — 11.3.1 passed, 12.1.2 failed: unexpected-job-result",
                                 "gate FAILED (regressed: native-checkout)"])
    result.stdout.fnmatch_lines(["*test_scenario*native-checkout-12.1.2*", "*job: failure*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert gate_json(pytester)["verdict"] == "FAILED"


def test_an_inconclusive_candidate_is_a_failure_and_the_gate_inconclusive_never_a_regression(project, pytester):
    result = project({"native-checkout@12.1.2": "inconclusive"}, *GATE, "-k", "native-checkout or unrelated",
                     "--junitxml", "junit.xml")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*_ test_scenario[[]native-checkout-12.1.2[]] _*",
                                 "INCONCLUSIVE: POST /api/v1/user/repos: 502 Bad Gateway after 3 tries",
                                 "(native-checkout on runner 12.1.2: our side failed, not the runner)"])
    result.stdout.fnmatch_lines(["*inconclusive: native-checkout — 12.1.2 is inconclusive: POST /api/v1/user/repos*",
                                 "gate INCONCLUSIVE (no evidence for: native-checkout*"])
    assert not [line for line in result.stdout.lines if line.strip().startswith("regression:")]
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    gate = gate_json(pytester)
    assert gate["verdict"] == "INCONCLUSIVE" and gate["findings"][0]["kind"] == "inconclusive"
    props = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(pytester.path / "junit.xml").iter("testcase")}
    cand = props["test_scenario[native-checkout-12.1.2]"]
    assert cand["outcome"] == "inconclusive" and cand["reason"].startswith("POST /api/v1/user/repos: 502")
    assert cand["class"] == "inconclusive" and "class" not in props["test_scenario[native-checkout-11.3.1]"]
    assert props["test_scenario[native-checkout-11.3.1]"]["outcome"] == "pass"


@pytest.mark.parametrize("how", ["fixture died", "deselected"])
def test_a_missing_candidate_makes_the_gate_inconclusive(project, pytester, how):
    if how == "fixture died":
        result = project({"native-checkout@12.1.2": "die"}, *GATE, "-k", "native-checkout or unrelated")
        result.assert_outcomes(passed=2, errors=1)
        why = "*12.1.2 is inconclusive: the test failed (setup) before its cell wrote a record: *RuntimeError*"
    else:
        result = project({}, *GATE, "-k", "native-checkout-11.3.1 or unrelated")
        result.assert_outcomes(passed=2)
        why = "*no result on 12.1.2 (the cell did not run)*"
    result.stdout.fnmatch_lines([f"*inconclusive: native-checkout — {why}",
                                 "gate INCONCLUSIVE (no evidence for: native-checkout*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_skipped_cell_has_a_record_and_makes_the_gate_inconclusive(project, pytester):
    result = project({"docker-checkout@12.1.2": "not-runnable"}, *GATE, "-k", "docker-checkout")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*inconclusive: docker-checkout — 12.1.2 is skipped: docker-checkout is not runnable "
                                 "on runner 12.1.2: needs a Docker engine*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    records = json.loads((run_dir(pytester) / "report.json").read_text())
    skipped = [r for r in records if r["outcome"] == "skipped"]
    assert [(r["scenario"], r["runner"]) for r in skipped] == [("docker-checkout", "12.1.2")]
    assert "needs a Docker engine" in skipped[0]["reason"]
    row = (run_dir(pytester) / "report.md").read_text().splitlines()[-1]
    assert "| skipped job=-" in row and "— docker-checkout is not runnable on runner 12.1.2" in row


def test_the_gate_under_xdist(project, pytester):
    """Workers run the cells; the controller sees each cell's test through its report's properties."""
    result = project({"native-checkout@12.1.2": "die"}, *GATE, "-k", "native-checkout or unrelated", "-n", "2",
                     unrelated=False)
    result.stdout.fnmatch_lines(["gate INCONCLUSIVE (no evidence for: native-checkout*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert {c["runner"]: c["outcome"] for c in json.loads((run_dir(pytester) / "report.json").read_text())} == {
        "11.3.1": "pass", "12.1.2": "inconclusive"}


def test_lanes_run_the_cells_through_the_pool_with_the_same_outcomes(project, pytester):
    """``--lanes``: every cell pushed together and watched from one process; each test gets its own cell's result."""
    table = {"native-checkout@12.1.2": "fail", "docker-checkout@11.3.1": "inconclusive",
             "qemu-buildx@12.1.2": "not-runnable"}
    result = project(table, *GATE, "--lanes=2", "-k", "checkout or qemu-buildx or unrelated")
    result.assert_outcomes(passed=4, failed=2, skipped=1)
    result.stdout.fnmatch_lines(["*regression: native-checkout — 11.3.1 passed, 12.1.2 failed*"])
    result.stdout.fnmatch_lines(["*INCONCLUSIVE: POST /api/v1/user/repos*"])
    cells = {json.loads(p.read_text())["scenario"] + "@" + json.loads(p.read_text())["runner"]:
             json.loads(p.read_text())["outcome"] for p in (run_dir(pytester) / "cells").glob("*.json")}
    assert cells == {"native-checkout@11.3.1": "pass", "native-checkout@12.1.2": "fail",
                     "docker-checkout@11.3.1": "inconclusive", "docker-checkout@12.1.2": "pass",
                     "qemu-buildx@11.3.1": "pass", "qemu-buildx@12.1.2": "skipped"}
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_an_admins_own_workflow_runs_through_the_same_gate(project, pytester):
    """``--scenario-dir``: a folder with workflow.yml only (expect.yml defaults) becomes cells on every runner."""
    own = pytester.path / "my-workflows" / "bitwarden-cli-build"
    own.mkdir(parents=True)
    (own / "workflow.yml").write_text("on: [push]\njobs:\n  build:\n    runs-on: __RUNS_ON__\n"
                                      "    steps:\n      - run: make\n")
    result = project({"bitwarden-cli-build@12.1.2": "fail"}, *GATE, f"--scenario-dir={own.parent}",
                     "-k", "bitwarden or unrelated")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*regression: bitwarden-cli-build — 11.3.1 passed, 12.1.2 failed*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    bad = project({}, "-m", "regression", f"--scenario-dir={pytester.path / 'nowhere'}")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--scenario-dir*is not a directory*"])


def test_a_known_bug_fixed_in_the_candidate_is_an_xfail_and_the_gate_says_fixed(project, pytester):
    """moved-tag declares its known bug (<12.0.0, stale-action): 11.3.1 failing with it is a strict xfail, its record
    stays ``fail``, and the gate calls the scenario fixed in 12.1.2 and exits 0."""
    result = project({"moved-tag@11.3.1": "stale"}, *GATE, "-k", "moved-tag", "-rxX")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*fixed: moved-tag — fails on 11.3.1 [[]stale-action[]], passes on 12.1.2 (11.3.1: "
                                 "stale-action: job failure, expected success)", "gate passed (nothing regressed)"])
    result.stdout.fnmatch_lines(["XFAIL *test_scenario[[]moved-tag-11.3.1[]] - known bug on runner <12.0.0: "
                                 "stale-action (*1156)"])
    assert result.ret == pytest.ExitCode.OK
    outcomes = {r["runner"]: (r["outcome"], r.get("known_bug")) for r in
                json.loads((run_dir(pytester) / "report.json").read_text())}
    assert outcomes["11.3.1"][0] == "fail" and outcomes["12.1.2"] == ("pass", None)
    assert gate_json(pytester)["findings"][0]["kind"] == "fixed"
    row = (run_dir(pytester) / "report.md").read_text().splitlines()[-1]
    assert row.startswith("| moved-tag ◆ | FAIL [stale-action]")


BOTH = ("-m", "regression", "--runner-version", "11.3.1", "--runner-version", "12.1.2")  # no gate


def test_plain_pytest_stays_green_with_the_known_bug(project, pytester):
    result = project({"moved-tag@11.3.1": "stale"}, *BOTH, "-k", "moved-tag")
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize(("answer", "says"), [
    ("pass", "*XPASS(strict)*known bug on runner <12.0.0*"),  # the bug did not reproduce: strict
    ("fail", "*unexpected-job-result*"),  # another failure is not the known bug
    ("inconclusive", "INCONCLUSIVE: *"),  # our own failure is never an expected failure
])
def test_a_known_bug_version_that_passes_or_fails_otherwise_fails_its_test(project, pytester, answer, says):
    result = project({"moved-tag@11.3.1": answer}, *BOTH, "-k", "moved-tag", "-rfX")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([says])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_late_baseline_that_succeeded_makes_the_candidate_s_lost_job_a_regression(project, pytester):
    """Issue 20's measurement: 11.3.1's reports arrive late but the job succeeds (a pass with report-late), 12.1.2
    loses the job (finalization-lost, the scenario's known bug on >=12.0.0): the gate names the regression and
    fails, while the candidate's own test is the known bug's strict xfail."""
    cells = {"late-reports-during-post@11.3.1": "late", "late-reports-during-post@12.1.2": "lost"}
    result = project(cells, "-m", "faults", "--baseline", "11.3.1", "--candidate", "12.1.2",
                     "-k", "late-reports-during-post and not 70s", "-rxX")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*regression: late-reports-during-post — 11.3.1 passed, 12.1.2 failed "
                                 "[[]finalization-lost[]]: runner-stalled*",
                                 "gate FAILED (regressed: late-reports-during-post)"])
    result.stdout.fnmatch_lines(["XFAIL *late-reports-during-post-12.1.2* - known bug on runner >=12.0.0: "
                                 "finalization-lost (*1171)"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert gate_json(pytester)["verdict"] == "FAILED"
    row = next(line for line in (run_dir(pytester) / "report.md").read_text().splitlines()
               if line.startswith("| late-reports-during-post"))
    assert "| pass reports late 24s in 'Post regress/slow-post@v1'" in row and "[report-late]" in row
    assert "FAIL [finalization-lost]" in row and "◆" in row


def test_a_late_success_on_both_versions_is_no_regression(project, pytester):
    cells = {"late-reports-during-post@11.3.1": "late", "late-reports-during-post@12.1.2": "late"}
    result = project(cells, "-m", "faults", "--baseline", "11.3.1", "--candidate", "12.1.2",
                     "-k", "late-reports-during-post and not 70s", "-rxX")
    result.assert_outcomes(passed=1, failed=1)  # 12.1.2 passing is the known bug's XPASS(strict): said, not hidden
    result.stdout.fnmatch_lines(["*XPASS(strict)*known bug on runner >=12.0.0*"])
    result.stdout.fnmatch_lines(["gate passed (nothing regressed)"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


SLOW_FORGEJO = """\
about: a reverse proxy in front of a slow Forgejo
fault:
  mode: abort-upstream
  delay: 12
  at: {log: "⭐ Run Post"}
"""


def test_a_condition_multiplies_the_regression_scenarios_and_its_regression_is_named_with_it(project, pytester):
    """--condition: native-checkout passes on both as it is and under the condition on 11.3.1, fails under it on
    12.1.2: the condition's own table and ``regressed under slow: native-checkout``; the plain row stays the same."""
    (pytester.path / "slow.yml").write_text(SLOW_FORGEJO)
    result = project({"native-checkout@12.1.2/slow": "fail"}, *GATE, f"--condition=slow={pytester.path / 'slow.yml'}",
                     "-k", "native-checkout", "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*condition slow (*slow.yml): fault abort-upstream 12s from job-log line '⭐ Run Post' "
                                 "reported; a reverse proxy in front of a slow Forgejo; raised for its cells: *"])
    result.stdout.fnmatch_lines(["*test_scenario[[]native-checkout-12.1.2@slow[]] FAILED*"])
    result.stdout.fnmatch_lines(["*same: native-checkout — passes on both",
                                 "*regression: native-checkout under slow — 11.3.1 passed, 12.1.2 failed*",
                                 "gate FAILED (regressed under slow: native-checkout)"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    records = json.loads((run_dir(pytester) / "report.json").read_text())
    assert sorted((r["runner"], r["condition"], r["outcome"]) for r in records) == [
        ("11.3.1", "", "pass"), ("11.3.1", "slow", "pass"), ("12.1.2", "", "pass"), ("12.1.2", "slow", "fail")]
    assert {f["condition"] for f in gate_json(pytester)["findings"]} == {"", "slow"}
    md = (run_dir(pytester) / "report.md").read_text()
    assert "### under slow" in md and md.count("| native-checkout") == 2


@pytest.mark.parametrize(("text", "says"), [
    ("fault: {mode: delay, delay: 3, at: {first_report: true}, expect: {12.1.2: finalization-lost}}\n",
     "takes no expect"),
    ("fault: {mode: delay, delay: 3, at: {first_report: true}}\nslow_actions: {delay: 2}\n", "exactly one of"),
    ("[not, a, mapping]\n", "not a YAML mapping"),
])
def test_a_bad_condition_is_a_usage_error_naming_the_file(project, pytester, text, says):
    (pytester.path / "bad.yml").write_text(text)
    result = project({}, "-m", "regression", f"--condition=bad={pytester.path / 'bad.yml'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--condition bad=*bad.yml: *{says}*"])
    assert "Traceback" not in result.stderr.str()


def test_two_sessions_merged_decide_as_one_session_that_ran_both(project, pytester):
    """`report merge` of one run per version gives the outcomes, classes, gate line and exit status of one session
    that ran both (the stubbed lab: docker-checkout regresses on 12.1.2)."""
    import subprocess
    import sys

    table = {"docker-checkout@12.1.2": "fail"}
    pick = ("-k", "checkout")
    both = project(table, "-m", "regression", "--baseline", "11.3.1", "--candidate", "12.1.2", *pick,
                   f"--evidence-dir={pytester.path / 'both'}")
    for version in ("11.3.1", "12.1.2"):
        project(table, "-m", "regression", "--runner-version", version, *pick,
                f"--evidence-dir={pytester.path / version}")
    runs = [str(p) for v in ("11.3.1", "12.1.2") for p in (pytester.path / v).iterdir()]
    merged = subprocess.run([sys.executable, "-m", "harness", "report", "merge", *runs, "--out",
                             str(pytester.path / "merged"), "--baseline", "11.3.1", "--candidate", "12.1.2"],
                            capture_output=True, text=True, check=False)
    line = "gate FAILED (regressed: docker-checkout)"
    assert line in both.stdout.str() and line in merged.stdout, merged.stdout + merged.stderr
    assert both.ret == merged.returncode == 1

    def decided(path):
        return sorted((r["scenario"], r["runner"], r["outcome"], r.get("class")) for r in
                      json.loads((path / "report.json").read_text()))

    (one,) = (pytester.path / "both").iterdir()
    assert decided(one) == decided(pytester.path / "merged")
    assert json.loads((one / "gate.json").read_text())["findings"] == \
        json.loads((pytester.path / "merged" / "gate.json").read_text())["findings"]
    sessions = {json.loads((pytester.path / v).joinpath(p.name, "session.json").read_text())["exit_status"]
                for v in ("11.3.1", "12.1.2") for p in (pytester.path / v).iterdir()}
    assert sessions == {0, 1}  # without a gate, the 12.1.2 run failed its own session: the merge judges it again
