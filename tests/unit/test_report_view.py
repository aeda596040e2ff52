"""harness.report_view: a cell record parsed once into what report.html shows."""

from __future__ import annotations

from pathlib import Path

from harness.report_view import Event, Rule, Step, anchor, cell_view

FAULT = {"fault": "abort-upstream 12s", "trigger": "job-log line 'Run Post' reported", "fired": True,
         "fired_at": 1000.0, "released_at": 1057.1, "time_to_verdict": 57.1, "aftermath_seconds": 40.3,
         "aftermath_end": "the runner gave up its final report", "class": "finalization-lost", "expected_class": None,
         "behaviour": {"first_reaction_s": 5.3, "first_reaction": "ReportLog error", "sentence": "gave up"},
         "traffic": {"requests": {"UpdateLog": {"forwarded": 5, "dropped": 8}}}}


def record(**extra):
    return {"scenario": "slow-post-job", "runner": "12.1.2", "condition": "abort-12", "version": "12.1.2",
            "outcome": "fail", "reason": "[post-step-cut-off] cut", "class": "finalization-lost",
            "class_evidence": {"why": "the runner stopped reporting", "lines": ["last log line: x"]},
            "verdict": {"job": "failure", "setup_seconds": 0.05, "setup_budget": 60.0, "cold": True,
                        "steps": [{"name": "Set up job", "status": "success", "duration": 0.0},
                                  {"name": "Complete job", "status": "failure", "duration": 5.0}],
                        "post_steps": [{"name": "regress/slow-post@v1", "outcome": "cancelled"}],
                        "violations": [{"rule": "post-step-cut-off", "message": "cut", "severity": "fail"}]},
            "timings": {"pickup": 1.85, "done_seen": 59.98, "flag": True},
            "observations": {"fault": FAULT, "cpu": {"complete": {"samples": 9, "runner_pct": 0.1, "tree_pct": 0.2},
                                                     "setup": {"samples": 2, "runner_pct": 9.8, "tree_pct": 9.8}},
                             "signatures": [{"name": "final-report-lost", "meaning": "lost", "line": "level=error"}],
                             "store_growth_mb": {"cache_server": 1.5, "tool_cache": 0.0},
                             "stores_after": {"cache_server": {"mb": 2.0}, "tool_cache": {"mb": 0.0}}},
            "bundle": "/runs/r1/test_scenario_slow-post-job-12.1.2_abort-12", **extra}


def test_a_fault_cell_record_is_parsed_at_one_edge():
    view = cell_view(record(), 3, Path("/runs/r1"))
    assert view.anchor == "cell-3-slow-post-job-12.1.2-abort-12" and view.title == "slow-post-job × 12.1.2 under abort-12"
    assert (view.outcome, view.failure_class, view.job) == ("fail", "finalization-lost", "failure")
    assert view.rules == (Rule("post-step-cut-off", "fail", "cut"),)
    assert view.steps[1] == Step("Complete job", "failure", 5.0) and view.post_steps == (
        Step("regress/slow-post@v1", "cancelled"),)
    assert (view.setup.cold, view.setup.warm, view.setup.budget) == (0.05, None, 60.0)
    assert [p.phase for p in view.cpu] == ["setup", "complete"]  # in the job's order
    assert view.repos[0].growth_mb["cache_server"] == 1.5
    assert view.timings == (("pickup", 1.85), ("done_seen", 59.98))  # a bool is no timing
    assert view.bundle_href == "test_scenario_slow-post-job-12.1.2_abort-12"
    assert view.repro_href == "test_scenario_slow-post-job-12.1.2_abort-12/repro.md"
    assert view.signatures[0].name == "final-report-lost"
    fault = view.fault
    assert fault is not None and fault.got == "finalization-lost" and fault.behaviour == "gave up"
    assert fault.events == (Event(0.0, "fault", "abort-upstream 12s at job-log line 'Run Post' reported"),
                            Event(5.3, "first reaction", "ReportLog error"), Event(57.1, "verdict", "fail"),
                            Event(57.1, "released", "the proxy forwards again"),
                            Event(97.4, "aftermath ends", "the runner gave up its final report"))
    assert fault.traffic == (("UpdateLog", "forwarded", 5), ("UpdateLog", "dropped", 8))


def test_a_bundle_outside_the_report_is_an_absolute_file_link_and_a_sparse_record_shows_empty():
    view = cell_view(record(), 0, Path("/elsewhere"))
    assert view.bundle_href == "../runs/r1/test_scenario_slow-post-job-12.1.2_abort-12"
    assert cell_view(record(), 0).bundle_href == "file:///runs/r1/test_scenario_slow-post-job-12.1.2_abort-12"
    bare = cell_view({"scenario": "x", "runner": "11.3.1", "outcome": "skipped", "reason": "no runner"}, 1)
    assert (bare.outcome, bare.reason, bare.job, bare.bundle_href) == ("skipped", "no runner", "-", "")
    assert bare.steps == bare.rules == bare.cpu == bare.repos == () and bare.fault is None
    assert (bare.setup.measured, bare.setup.cold, bare.setup.warm) == (None, None, None)


def test_warm_up_gives_cold_and_warm_and_every_repository():
    run = {"repo": "o/r-1", "cold": True, "stores": {"stores_after": {"cache_server": {"mb": 100.0}},
                                                    "store_growth_mb": {"cache_server": 100.0}}}
    warm_up = {"runs": [run], "measured_repo": "o/r-2", "setup_seconds_cold": 9.1, "setup_seconds_warm": 0.4}
    view = cell_view(record(observations={"warm_up": warm_up, "stores_after": {"cache_server": {"mb": 200.0}},
                                          "store_growth_mb": {"cache_server": 100.0}}), 0)
    assert (view.setup.cold, view.setup.warm, view.setup.measured) == (9.1, 0.4, 0.05)
    assert [r.repo for r in view.repos] == ["o/r-1", "o/r-2"]


def test_anchor_keeps_only_safe_characters():
    assert anchor({"scenario": "a b", "runner": "<x>"}, 2) == "cell-2-a-b--x-"
