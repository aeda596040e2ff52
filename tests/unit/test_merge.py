"""harness.merge: one gate over several run dirs, by the session's own functions; every refusal one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import merge, report
from harness.errors import ConfigError

GATE = report.GateRequest(candidate="12.1.2", baseline="11.3.1")


def record(scenario: str, runner: str, outcome: str = "pass", *, session: str = "s1", repeat: int = 0,
           repeats: int = 1, digest: str = "sha256:aa", condition: str = "", **extra: object) -> dict[str, object]:
    failed = outcome != "pass"
    return {"scenario": scenario, "runner": runner, "version": runner, "condition": condition, "outcome": outcome,
            "passed": not failed, "reason": "unexpected-job-result: job failure" if failed else "",
            "verdict": {"job": "failure" if failed else "success", "setup_seconds": 1.0,
                        "violations": [{"rule": "unexpected-job-result"}] if failed else []},
            "observations": {}, "class": "step-failed" if failed else None, "nodeid": f"t[{scenario}-{runner}]",
            "session": session, "host": f"host-{session}", "repeat": repeat, "repeats": repeats,
            "scenario_hash": digest, "bundle": f"test_{scenario}-{runner}", **extra}


def run_dir(root: Path, name: str, records: list[dict[str, object]], *, failures: list[dict[str, object]] = (),
            status: int = 0) -> Path:
    path = root / name
    (path / "cells").mkdir(parents=True)
    for i, r in enumerate(records):
        (path / "cells" / f"c{i}.json").write_text(json.dumps(r))
    (path / "session.json").write_text(json.dumps({"schema": report.SESSION_SCHEMA, "session": name, "host": "h",
                                                   "exit_status": status, "failures": list(failures)}))
    return path


def test_two_runs_one_per_version_are_gated_like_one_session(tmp_path):
    a = run_dir(tmp_path, "a", [record("native-checkout", "11.3.1", session="a"),
                                record("docker-checkout", "11.3.1", session="a")])
    b = run_dir(tmp_path, "b", [record("native-checkout", "12.1.2", session="b"),
                                record("docker-checkout", "12.1.2", "fail", session="b")])
    merged = merge.merge([a, b], tmp_path / "out", GATE)
    assert merged.gate_line == "gate FAILED (regressed: docker-checkout)" and merged.exit_status == 1
    one = report.decide_gate([report.compare.Cell.from_json(r) for r in merged.records], GATE)[0]
    assert [(f.scenario, f.kind) for f in merged.findings or ()] == [(f.scenario, f.kind) for f in one]
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {"report.md", "report.json", "index.md", "gate.json", "report.html"}
    page = (out / "report.html").read_text()
    assert page.index("gate FAILED (regressed: docker-checkout)") < page.index("native-checkout")
    assert 'href="../a/test_native-checkout-11.3.1/repro.md"' in page
    joined = json.loads((out / "report.json").read_text())
    assert {r["bundle"] for r in joined} == {f"../{d}/test_{s}-{v}" for d, v in (("a", "11.3.1"), ("b", "12.1.2"))
                                             for s in ("native-checkout", "docker-checkout")}
    assert "regression: docker-checkout — 11.3.1 passed, 12.1.2 failed" in "\n".join(merge.summary(merged, GATE))


def test_a_missing_candidate_record_is_inconclusive_and_non_zero(tmp_path):
    a = run_dir(tmp_path, "a", [record("native-checkout", "11.3.1", session="a")])
    b = run_dir(tmp_path, "b", [record("docker-checkout", "12.1.2", session="b")])
    merged = merge.merge([a, b], tmp_path / "out", GATE)
    assert merged.gate_line.startswith("gate INCONCLUSIVE (no evidence for: docker-checkout, native-checkout")
    assert merged.exit_status == 1


def test_a_failed_session_fails_the_merge_whatever_the_gate_says(tmp_path):
    a = run_dir(tmp_path, "a", [record("native-checkout", "11.3.1", session="a")],
                failures=[{"nodeid": "tests/scenarios/test_scenarios.py::test_scenario[post-exit-1-11.3.1]",
                           "phases": ["call"], "message": "selfcheck post-exit-1: expected hidden-post-failure"}])
    b = run_dir(tmp_path, "b", [record("native-checkout", "12.1.2", session="b")])
    merged = merge.merge([a, b], tmp_path / "out", GATE)
    assert merged.gate_line == "gate passed (nothing regressed)" and merged.exit_status == 1
    said = "\n".join(merge.summary(merged, GATE))
    assert "session failure: " in said and "post-exit-1" in said and "merge FAILED" in said


def test_a_scenario_changed_between_the_runs_is_refused(tmp_path):
    a = run_dir(tmp_path, "a", [record("native-checkout", "11.3.1", session="a", digest="sha256:aa")])
    b = run_dir(tmp_path, "b", [record("native-checkout", "12.1.2", session="b", digest="sha256:bb")])
    with pytest.raises(ConfigError, match="scenario native-checkout differs between the runs"):
        merge.merge([a, b], tmp_path / "out", GATE)


def test_the_same_cell_twice_is_refused_unless_both_are_repeats(tmp_path):
    a = run_dir(tmp_path, "a", [record("native-checkout", "12.1.2", session="a")])
    b = run_dir(tmp_path, "b", [record("native-checkout", "12.1.2", session="b")])
    with pytest.raises(ConfigError, match=r"the cell native-checkout × 12.1.2 is in more than one run"):
        merge.merge([a, b], tmp_path / "out1", None)
    c = run_dir(tmp_path, "c", [record("native-checkout", "12.1.2", session="c", repeats=2)])
    d = run_dir(tmp_path, "d", [record("native-checkout", "12.1.2", "fail", session="d", repeats=2)])
    merged = merge.merge([c, d], tmp_path / "out2", None)
    assert "flaky 1/2" in (tmp_path / "out2" / "report.md").read_text() and merged.exit_status == 1


@pytest.mark.parametrize(("make", "says"), [
    (lambda root: root / "nowhere", "not a directory"),
    (lambda root: (root / "plain").mkdir() or root / "plain", r"not a run dir of this suite \(no session.json"),
    (lambda root: run_dir(root, "old", [{k: v for k, v in record("x", "12.1.2").items() if k != "scenario_hash"}]),
     r"has no scenario_hash \(a run of an older suite"),
    (lambda root: run_dir(root, "empty", []), "the runs hold no cell record"),
])
def test_bad_input_is_one_line(tmp_path, make, says):
    with pytest.raises(ConfigError, match=says) as raised:
        merge.merge([make(tmp_path)], tmp_path / "out", None)
    assert "\n" not in str(raised.value)


def test_a_record_that_does_not_parse_is_refused(tmp_path):
    path = run_dir(tmp_path, "a", [record("native-checkout", "12.1.2")])
    (path / "cells" / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json: not a cell record"):
        merge.merge([path], tmp_path / "out", None)


def test_cache_series_of_two_hosts_are_never_spliced(tmp_path):
    def stores(session: str, at: float) -> dict[str, object]:
        return {"stores_after": {"cache_server": {"mb": 100.0}}, "store_growth_mb": {"cache_server": 100.0},
                "stores_measured_at": at, "private_runner": "regress-12.1.2"}

    a = run_dir(tmp_path, "a", [record("qemu-buildx", "11.3.1", session="a", observations=stores("a", 1.0))])
    b = run_dir(tmp_path, "b", [record("qemu-buildx", "12.1.2", session="b", observations=stores("b", 2.0))])
    merge.merge([a, b], tmp_path / "out", None)
    joined = json.loads((tmp_path / "out" / "report.json").read_text())
    names = {r["runner_cache"]["runner_name"] for r in joined}
    assert names == {"regress-12.1.2 (session a)", "regress-12.1.2 (session b)"}
    assert all(len(r["runner_cache"]["repos"]) == 1 for r in joined)
