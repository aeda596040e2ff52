"""--warm-up seen from pytest, without a lab: every run of a cell on one handle, in serial, --lanes and xdist runs;
disruptive cells skipped with the reason; report.json and the table name cold and warm.

The project under test stubs the lab away: ``run_cell`` returns a real :class:`harness.cell.CellResult` whose
cache store grows by one image per call and whose first call per runner is cold; every call is logged.
"""

from __future__ import annotations

import json

import pytest

from tests.plugin.stub_lab import SCENARIO_TEST, STUB_LAB, isolate

CONFTEST = '''
import json
import os
import threading
from types import SimpleNamespace

import pytest

import harness.pytest_plugin as plugin
from harness.cell import CellResult
from harness.forgejo.models import Status
from harness.verdict import Verdict

LOG = os.environ["FAKE_CALLS"]
LOCK = threading.Lock()
SEEN = {}


def fake_run_cell(target, scenario, handle, out, **kwargs):
    with LOCK:
        n = SEEN[handle.key] = SEEN.get(handle.key, 0) + 1
        with open(LOG, "a") as f:
            f.write(json.dumps({"scenario": scenario.name, "key": handle.key, "handle": id(handle), "pid": os.getpid(),
                                "out": str(out), "evidence": kwargs["evidence"]}) + "\\n")
    cold = n == 1
    verdict = Verdict((), Status.SUCCESS, (), (), 9.0 if cold else 1.0, 60.0, cold)
    obs = {"cpu": {"setup": {"runner_pct": 50.0 if cold else 10.0}},
           "store_growth_mb": {"cache_server": 48.2, "tool_cache": 0.0, "action_clones": 0.0, "home": 0.0},
           "stores_after": {"cache_server": {"mb": 48.2 * n, "entries": n}}, "stores_measured_at": float(n),
           "runner_from_log": {"name": f"runner-{handle.key}", "version": handle.key}}
    return CellResult(scenario.name, handle.key, handle.key, f"regress-{handle.key}-native", verdict,
                      repo=f"o/{scenario.name}-{n}", observations=obs)

''' + STUB_LAB



@pytest.fixture
def project(pytester, monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path, ("REGRESS_WARM_UP", "REGRESS_WARM_UP_REPOS"))
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.jsonl"))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_cells=SCENARIO_TEST)

    def run(*args):
        result = pytester.runpytest_subprocess("-rfEs", "-p", "no:cacheprovider", "--runner-version=11.3.1",
                                               "--runner-version=12.1.2", "--warm-up", *args)
        lines = (tmp_path / "calls.jsonl").read_text().splitlines() if (tmp_path / "calls.jsonl").exists() else []
        return result, [json.loads(line) for line in lines]

    return run


def _report(pytester):
    (run_dir,) = (pytester.path / "artifacts" / "evidence").iterdir()
    return json.loads((run_dir / "report.json").read_text()), (run_dir / "report.md").read_text()


@pytest.mark.parametrize("mode", [(), ("--lanes=2",), ("-n", "2")], ids=["serial", "lanes", "xdist"])
def test_every_run_of_a_cell_on_one_handle(project, pytester, mode):
    result, calls = project("-k", "qemu-buildx", "--warm-up-repos=3", *mode)
    result.assert_outcomes(passed=2)
    for key in ("11.3.1", "12.1.2"):
        mine = [c for c in calls if c["key"] == key]
        assert len(mine) == 3 and len({(c["handle"], c["pid"]) for c in mine}) == 1  # the same runner, all three
        assert [c["out"].rsplit("/", 2)[-2:] for c in mine[:2]] == [["warm-up", "repo-1"], ["warm-up", "repo-2"]]
        assert [c["evidence"] for c in mine] == ["always", "always", "on-failure"]
    records, table = _report(pytester)
    for record in records:
        assert (record["setup_seconds_cold"], record["setup_seconds_warm"]) == (9.0, 1.0)
        assert (record["cpu_setup_pct_cold"], record["cpu_setup_pct_warm"]) == (50.0, 10.0)
        assert record["runner_cache"]["cache_store_after_repo_mb"] == [48.2, 96.4, 144.6]
    assert "setup=1.0s(warm; cold 9.0s) cpu=10.0%(warm; cold 50.0%)" in table
    assert "cache store after each of 3 repositories: 48.2, 96.4, 144.6 MB" in table


def test_a_disruptive_cell_is_skipped_with_the_reason(project, pytester):
    result, calls = project("-k", "killed-during-post")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*--warm-up does not apply to killed-during-post: it disturbs its runner*"])
    assert calls == []
