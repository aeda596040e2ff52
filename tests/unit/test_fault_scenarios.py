"""The ``fault:`` block of expect.yml, the fault scenarios, and the faults table."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.faults.proxy import Fault, Trigger
from harness.faults.table import fault_lines
from harness.scenarios import Expect, load, scenario_names

FAULTS = [n for n in scenario_names() if load(n).expect.fault is not None and load(n).expect.fault.decides_class]
CONDITIONS = [n for n in scenario_names() if load(n).expect.fault is not None and not load(n).expect.fault.decides_class]


def parse(fault: object, marker: str = "faults") -> Expect:
    return Expect.parse({"kind": "native", "marker": marker, "fault": fault}, "expect.yml")


def test_the_three_fault_scenarios_name_a_class_for_each_runner_and_the_lines_they_rest_on() -> None:
    assert sorted(FAULTS) == ["500-updatelog-complete", "blackhole-during-post", "reset-during-setup"]
    for name in FAULTS:
        spec = load(name).expect.fault
        assert spec is not None
        assert {"11.3.1", "12.1.2", "12.1.2-retry"} <= set(spec.expect)
        assert spec.expected_for("12.1.2-retry", "12.1.2") == spec.expect["12.1.2-retry"] != ()
        assert {"11.3.1", "12.1.2"} <= set(spec.rests_on)
    assert [n for n in FAULTS if load(n).expect.fault.ci] == ["blackhole-during-post"]  # type: ignore[union-attr]


def test_the_slow_forgejo_scenarios_expect_the_job_s_own_result_and_name_the_known_bug() -> None:
    """late-reports-during-post: no expected class per runner, the workflow's success is the expectation; 12.x's loss
    is the known bug of >=12.0.0, spared where a config axis sets FORGEJO_CLIENT_TIMEOUT."""
    assert sorted(CONDITIONS) == ["late-reports-during-post", "late-reports-during-post-70s"]
    for name in CONDITIONS:
        expect = load(name).expect
        assert expect.fault is not None and expect.fault.fault.mode == "abort-upstream"
        assert str(expect.job) == "success" and expect.known_bug is not None
        assert expect.known_bug.failure_class == "finalization-lost" and {"11.3.1", "12.1.2"} <= set(expect.fault.rests_on)
    short = load("late-reports-during-post").expect.fault
    assert short is not None and short.ci and short.runner_env == {"FORGEJO_CLIENT_TIMEOUT": "5"}
    assert float(short.runner_env["FORGEJO_CLIENT_TIMEOUT"]) < short.fault.delay  # the hold outlasts the timeout
    long = load("late-reports-during-post-70s").expect.fault
    assert long is not None and not long.ci and long.runner_env == {} and long.fault.delay > 60  # the real 60 s


def test_fault_block_parses_mode_trigger_and_expectation() -> None:
    spec = parse({"mode": "answer", "status": 503, "rpc": "UpdateTask", "at": {"step": "build", "seconds": 5},
                  "expect": {"12.1.2": "finalization-lost"}}).fault
    assert spec is not None
    assert spec.fault == Fault("answer", 0.0, 503, "UpdateTask")
    assert spec.trigger == Trigger("step", "build", 5.0)
    assert spec.trigger.needle == "⭐ Run Main build".encode()
    assert spec.expected_for("12.1.2-x", "12.1.2") == ("finalization-lost",)
    assert spec.expected_for("11.3.1", "11.3.1") == ()
    either = parse({"mode": "reset", "at": {"first_report": True},
                    "expect": {"12.1.2": ["finalization-lost", "unexplained"]}}).fault
    assert either is not None and either.expected_for("12.1.2", "12.1.2") == ("finalization-lost", "unexplained")


def test_a_fault_without_expect_is_a_condition_on_the_scenario_s_own_expectation() -> None:
    spec = parse({"mode": "abort-upstream", "delay": 12, "at": {"log": "⭐ Run Post x"},
                  "runner_env": {"FORGEJO_CLIENT_TIMEOUT": 5}}).fault
    assert spec is not None and not spec.decides_class and spec.expect == {}
    assert spec.fault == Fault("abort-upstream", 12.0, rpcs=("UpdateLog", "UpdateTask"))
    assert spec.fault.hits("UpdateLog") and spec.fault.hits("UpdateTask") and not spec.fault.hits("FetchTask")
    assert spec.fault.describe() == "abort-upstream 12s"
    assert spec.runner_env == {"FORGEJO_CLIENT_TIMEOUT": "5"}
    only = parse({"mode": "slow-answer", "delay": 3, "rpcs": "UpdateTask", "at": {"complete_job": True}}).fault
    assert only is not None and only.fault.rpcs == ("UpdateTask",) and not only.fault.hits("UpdateLog")
    assert only.fault.describe() == "slow-answer 3s on UpdateTask"


@pytest.mark.parametrize(("fault", "message"), [
    ({"mode": "flood", "at": {"complete_job": True}, "expect": {"a": "b"}}, "fault.mode"),
    ({"mode": "delay", "at": {"complete_job": True}, "expect": {"a": "b"}}, "needs delay"),
    ({"mode": "answer", "at": {"complete_job": True}, "expect": {"a": "b"}}, "needs rpc"),
    ({"mode": "reset", "at": {"log": "x", "step": "y"}, "expect": {"a": "b"}}, "fault.at takes one of"),
    ({"mode": "reset", "at": {"log": "x", "seconds": 3}, "expect": {"a": "b"}}, "goes with step"),
    ({"mode": "reset", "at": {"first_report": True}, "expect": {"12.1.2": []}}, "fault.expect"),
    ({"mode": "abort-upstream", "at": {"first_report": True}}, "needs delay"),
    ({"mode": "slow-answer", "delay": 5, "rpcs": ["FetchTask"], "at": {"first_report": True}}, "FetchTask cannot"),
    ({"mode": "delay", "delay": 5, "rpcs": ["Ping"], "at": {"first_report": True}}, "unknown"),
    ({"mode": "answer", "status": 500, "rpc": "UpdateLog", "rpcs": ["UpdateLog"], "at": {"first_report": True}},
     "goes with the timing modes"),
    ({"mode": "delay", "delay": 5, "at": {"first_report": True}, "runner_env": ["X=1"]}, "runner_env"),
    ({"mode": "delay", "delay": 5, "at": {"first_report": True}, "runner_env": {"X": True}}, "runner_env"),
    ({"mode": "reset", "on": {"first_report": True}, "expect": {"a": "b"}}, "unknown keys"),
])
def test_fault_block_errors_name_the_key(fault: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(fault)


def test_a_fault_block_goes_with_marker_faults() -> None:
    with pytest.raises(ConfigError, match="goes with marker: faults"):
        parse({"mode": "reset", "at": {"first_report": True}, "expect": {"a": "b"}}, marker="regression")


def test_fault_lines_one_per_fault_cell_sorted() -> None:
    records = [
        {"scenario": "reset-during-setup", "runner": "12.1.2", "outcome": "fail",
         "observations": {"fault": {"fault": "reset", "fired": True, "class": "step-failed",
                                    "expected_class": "finalization-lost", "time_to_verdict": 41.2,
                                    "behaviour": {"sentence": "first reaction after 0s"}, "aftermath_end": "quiet"}}},
        {"scenario": "blackhole-during-post", "runner": "11.3.1", "outcome": "pass",
         "observations": {"fault": {"fault": "blackhole", "fired": True, "class": "finalization-lost",
                                    "expected_class": "finalization-lost", "time_to_verdict": 38.0,
                                    "behaviour": {"sentence": "logged nothing about it"}}}},
        {"scenario": "native-checkout", "runner": "11.3.1", "outcome": "pass", "observations": {}},
        {"scenario": "500-updatelog-complete", "runner": "11.3.1", "outcome": "fail",
         "observations": {"fault": {"fault": "answer 500 to UpdateLog", "fired": False, "class": "pass",
                                    "expected_class": "finalization-lost"}}},
        {"scenario": "500-updatelog-complete", "runner": "12.1.2", "outcome": "pass",
         "observations": {"fault": {"fault": "answer 500 to UpdateLog", "fired": True, "class": "unexplained",
                                    "expected_class": "finalization-lost or unexplained", "time_to_verdict": 5.2}}},
    ]
    assert fault_lines(records) == [
        "500-updatelog-complete × 11.3.1 → pass (EXPECTED finalization-lost); verdict - after the fault "
        "(answer 500 to UpdateLog); then: no fault injected",
        "500-updatelog-complete × 12.1.2 → unexplained (as expected); verdict 5s after the fault "
        "(answer 500 to UpdateLog); then: -",
        "blackhole-during-post × 11.3.1 → finalization-lost (as expected); verdict 38s after the fault (blackhole); "
        "then: logged nothing about it",
        "reset-during-setup × 12.1.2 → step-failed (EXPECTED finalization-lost); verdict 41s after the fault (reset); "
        "then: first reaction after 0s [quiet]",
    ]
    assert fault_lines([records[2]]) == []


def test_fault_lines_of_a_condition_cell_name_the_scenario_s_own_expectation() -> None:
    record = {"scenario": "late-reports-during-post", "runner": "12.1.2", "outcome": "fail",
              "observations": {"fault": {"fault": "abort-upstream 12s", "fired": True, "class": "finalization-lost",
                                         "expected_class": None, "time_to_verdict": 44.0}}}
    assert fault_lines([record]) == [
        "late-reports-during-post × 12.1.2 → finalization-lost (fail against the scenario's own expectation); "
        "verdict 44s after the fault (abort-upstream 12s); then: -"]
