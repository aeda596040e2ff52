"""Bundle reading for re-runs and the bisect search (the lab part is replaced by a table of outcomes)."""

from __future__ import annotations

import json
import shutil

import pytest

from harness import rerun
from harness.cell import CellResult
from harness.errors import ConfigError, HarnessError
from harness.scenarios import WORKFLOWS_DIR
from harness.versions import Version


def make_bundle(tmp_path, **manifest):
    bundle = tmp_path / "bundle"
    shutil.copytree(WORKFLOWS_DIR / "native-checkout", bundle / "scenario" / "native-checkout")
    data = {"schema": "forgejo-runner-regress/bundle/1", "scenario": "native-checkout", "outcome": "failed",
            "runner": {"version": "12.1.2", "without_tools": ["git"]}, "forgejo": {"version": "13.0.5"},
            "verdict": {"violations": [{"rule": "unexpected-job-result"}]}}
    data.update(manifest)
    (bundle / "manifest.json").write_text(json.dumps(data))
    return bundle


def test_read_bundle(tmp_path):
    info = rerun.read_bundle(make_bundle(tmp_path))
    assert info.scenario.name == "native-checkout"
    assert info.runner_version == Version(12, 1, 2) and info.forgejo_version == Version(13, 0, 5)
    assert info.rules == ("unexpected-job-result",) and info.without_tools == ("git",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "someone-else/1"}, "not a forgejo-runner-regress bundle"),
        ({"scenario": "missing"}, "lacks scenario/missing/"),
        ({"runner": {}}, "is incomplete"),
    ],
)
def test_foreign_or_incomplete_bundles_are_refused(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        rerun.read_bundle(make_bundle(tmp_path, **change))


def test_not_a_bundle_and_corrupt_manifest(tmp_path):
    with pytest.raises(ConfigError, match=r"no manifest\.json"):
        rerun.read_bundle(tmp_path)
    bundle = make_bundle(tmp_path)
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is corrupt"):
        rerun.read_bundle(bundle)


def _result(passed_rules):
    from harness.forgejo.models import Status
    from harness.verdict import Verdict, Violation

    verdict = Verdict(tuple(Violation(r, "m") for r in passed_rules), Status.SUCCESS, (), (), None, None, None)
    return CellResult("native-checkout", "12.1.2", "12.1.2", "x", verdict=verdict)


def test_same_verdict_compares_rule_sets(tmp_path):
    info = rerun.read_bundle(make_bundle(tmp_path))
    assert rerun.same_verdict(info, _result(["unexpected-job-result"]))[0]
    same, why = rerun.same_verdict(info, _result([]))
    assert not same and "different verdict" in why


@pytest.mark.parametrize(
    ("bad_from", "expected"),
    [("12.0.1", "12.0.1"), ("12.1.2", "12.1.2"), ("11.4.0", "11.4.0"), ("99.0.0", None)],
)
def test_bisect_finds_the_first_bad_version(monkeypatch, bad_from, expected):
    versions = [Version.parse(v) for v in ("11.3.1", "11.4.0", "12.0.1", "12.1.0", "12.1.2")]
    calls = []

    def fake_run_on_lab(settings, scenario, vs, notify):
        (v,) = vs
        calls.append(v)
        result = _result([] if v < Version.parse(bad_from) else ["unexpected-job-result"])
        result.observations["selfcheck"] = False
        return {str(v): result}

    monkeypatch.setattr(rerun, "run_on_lab", fake_run_on_lab)
    first_bad, _tested = rerun.bisect(None, None, versions, notify=lambda s: None)
    assert first_bad == (Version.parse(expected) if expected else None)
    assert len(calls) == len(set(calls)) <= 4  # binary search, each version at most once


def test_bisect_refuses_a_failing_good_version(monkeypatch):
    monkeypatch.setattr(rerun, "run_on_lab", lambda settings, scenario, vs, notify: {
        str(vs[0]): _result(["unexpected-job-result"])})
    with pytest.raises(HarnessError, match=r"the good version 11\.3\.1 fails"):
        rerun.bisect(None, type("S", (), {"name": "x"})(), [Version(11, 3, 1), Version(12, 1, 2)],
                     notify=lambda s: None)
