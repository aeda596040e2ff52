"""A maintainer's build seen from pytest: ``--runner-binary 12.1.2+fix=PATH`` is checked against 12.1.2's
``--version`` (the real resolution, with fake binaries), and the cell ids, the table, report.json and the gate
use the whole key, so ``--baseline 12.1.2 --candidate 12.1.2+fix`` compares the patched build with its
release. The lab itself is stubbed (the project of tests/plugin/test_gate.py, its runners from the plan)."""

from __future__ import annotations

import json

import pytest

from .test_gate import CONFTEST, TESTS

STUB_PLAN = "plugin.plan_lab = lambda settings, versions: SimpleNamespace(not_applicable=())\n"
STUB_RUNNERS = 'runners={k: SimpleNamespace(key=k) for k in ("11.3.1", "12.1.2")})'


def fake(path, prints):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{prints}"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def project(pytester, monkeypatch, tmp_path):
    """Real binary resolution (plan_lab not stubbed), fake forgejo/runner executables; runs pytest."""
    for name in ("REGRESS_RUNNER_VERSION", "REGRESS_FORGEJO_URL", "REGRESS_EVIDENCE", "REGRESS_EVIDENCE_DIR",
                 "REGRESS_BASELINE", "REGRESS_CANDIDATE", "REGRESS_COMPARE_BASELINE", "REGRESS_RUNNER_BINARY"):
        monkeypatch.delenv(name, raising=False)
    bindir = tmp_path / "bin"
    fake(bindir / "forgejo-11.0.15", "Forgejo version 11.0.15+gitea-1.22.0")
    fake(bindir / "forgejo-runner-12.1.2", "forgejo-runner version v12.1.2")
    monkeypatch.setenv("REGRESS_BIN_DIR", str(bindir))
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path / "cache"))
    assert STUB_PLAN in CONFTEST and STUB_RUNNERS in CONFTEST
    pytester.makeconftest(CONFTEST.replace(STUB_PLAN, "").replace(
        STUB_RUNNERS, 'runners={k: SimpleNamespace(key=k) for k in ("12.1.2", "12.1.2+fix")})'))
    pytester.makeini("[pytest]\nmarkers =\n    unrelated: a test of the user's own\n")

    def run(table, patched_prints, *args):
        patched = fake(tmp_path / "build" / "forgejo-runner", patched_prints)
        monkeypatch.setenv("FAKE_CELLS", json.dumps(table))
        pytester.makepyfile(test_cells=TESTS.replace("UNRELATED_PASSES", "True"))
        return pytester.runpytest_subprocess("-rfEs", "-p", "no:cacheprovider", "-m", "regression",
                                             "-k", "native-checkout", f"--runner-binary=12.1.2+fix={patched}",
                                             "--baseline", "12.1.2", "--candidate", "12.1.2+fix", *args)

    return run


def test_a_patched_build_is_gated_against_the_release_it_patches(project, pytester):
    result = project({"native-checkout@12.1.2+fix": "fail"}, "forgejo-runner version v12.1.2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_scenario[[]native-checkout-12.1.2+fix[]]*"])
    result.stdout.fnmatch_lines(["*regression: native-checkout — 12.1.2 passed, 12.1.2+fix failed*",
                                 "gate FAILED (regressed: native-checkout)"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    (run,) = (pytester.path / "artifacts" / "evidence").iterdir()
    report = json.loads((run / "report.json").read_text())
    assert sorted(c["runner"] for c in report) == ["12.1.2", "12.1.2+fix"], report
    gate = json.loads((run / "gate.json").read_text())
    assert (gate["verdict"], gate["candidate"]) == ("FAILED", "12.1.2+fix"), gate


def test_a_build_reporting_another_release_stops_the_run(project):
    result = project({}, "forgejo-runner version v12.1.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*reports version 12.1.1, not 12.1.2 (the release of the build 12.1.2+fix)*"])
