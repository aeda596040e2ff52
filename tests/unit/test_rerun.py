"""Bundle reading for re-runs and the bisect search (the lab part is replaced by a table of outcomes)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import pytest

from harness import rerun
from harness.cell import CellResult
from harness.errors import ConfigError, HarnessError
from harness.outcome import Outcome
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


def _result(passed_rules, reported=()):
    from harness.forgejo.models import Status
    from harness.verdict import Verdict, Violation

    verdict = Verdict(tuple(Violation(r, "m") for r in passed_rules) + tuple(Violation(r, "m", "report")
                                                                             for r in reported),
                      Status.SUCCESS, (), (), None, None, None)
    return CellResult("native-checkout", "12.1.2", "12.1.2", "x", verdict=verdict)


def test_same_verdict_compares_rule_sets(tmp_path):
    info = rerun.read_bundle(make_bundle(tmp_path))
    assert rerun.same_verdict(info, _result(["unexpected-job-result"]))[0]
    same, why = rerun.same_verdict(info, _result([]))
    assert not same and "different verdict" in why


def test_a_report_only_finding_is_said_but_is_no_different_verdict(tmp_path):
    """Measured in CI: a warm re-run's CPU over its report-only budget on a busier machine said 'different verdict'."""
    info = rerun.read_bundle(make_bundle(tmp_path))
    same, why = rerun.same_verdict(info, _result(["unexpected-job-result"], reported=["cpu-over-budget"]))
    assert same and why == "same verdict: ['unexpected-job-result'] (report-only this time: ['cpu-over-budget'])"


@dataclass(frozen=True)
class FakeCell:
    """What bisect reads from a cell result."""

    outcome: Outcome
    reason: str = ""


VERSIONS = [Version.parse(v) for v in ("11.3.1", "11.4.0", "12.0.1", "12.1.0", "12.1.2")]


def fake_runner(answers, calls):
    """A cell runner answering from a table: version → list of outcomes, one per run (the last repeats)."""

    def run(version):
        calls.append(str(version))
        script = answers(version)
        if isinstance(script, Exception):
            raise script
        outcome = script[min(calls.count(str(version)), len(script)) - 1]
        return FakeCell(outcome, "" if outcome in (Outcome.PASS, Outcome.FAIL) else "POST /repos: 502")

    return run


@pytest.mark.parametrize(
    ("bad_from", "expected"),
    [("12.0.1", "12.0.1"), ("12.1.2", "12.1.2"), ("11.4.0", "11.4.0"), ("99.0.0", None)],
)
def test_bisect_finds_the_first_bad_version(bad_from, expected):
    calls = []
    run = fake_runner(lambda v: [Outcome.PASS if v < Version.parse(bad_from) else Outcome.FAIL], calls)
    found = rerun.bisect_versions(run, "native-checkout", VERSIONS, notify=lambda s: None)
    assert found.first_bad == (Version.parse(expected) if expected else None)
    assert found.exact == (expected is not None)
    assert len(calls) == len(set(calls)) <= 4  # binary search, each version at most once


def test_bisect_through_a_lab_run(monkeypatch):
    """bisect() runs each version on a lab of its own (run_on_lab replaced by the fake)."""
    calls = []
    run = fake_runner(lambda v: [Outcome.PASS if v < Version(12, 1, 0) else Outcome.FAIL], calls)
    monkeypatch.setattr(rerun, "run_on_lab", lambda settings, scenario, vs, notify: {str(vs[0]): run(vs[0])})
    scenario = type("S", (), {"name": "native-checkout"})()
    assert rerun.bisect(None, scenario, VERSIONS, notify=lambda s: None).first_bad == Version(12, 1, 0)


def test_an_inconclusive_version_is_rerun_once_then_left_out_never_bad():
    """12.0.1 is inconclusive twice (our side failed): re-run once, then skipped like git bisect skip."""
    calls, said = [], []

    def answers(v):
        if v == Version(12, 0, 1):
            return [Outcome.INCONCLUSIVE]
        return [Outcome.PASS if v < Version(12, 1, 2) else Outcome.FAIL]

    found = rerun.bisect_versions(fake_runner(answers, calls), "native-checkout", VERSIONS, notify=said.append)
    assert calls.count("12.0.1") == 2
    assert found.tested["12.0.1"].outcome is Outcome.INCONCLUSIVE and found.tested["12.0.1"].runs == 2
    assert "502" in found.tested["12.0.1"].reason
    assert found.first_bad == Version(12, 1, 2) and found.unsure == () and found.exact  # 12.1.0 passed after it
    assert "12.0.1: inconclusive (POST /repos: 502); running it once more" in said
    assert not any(line.startswith("12.0.1: bad") for line in said)


def test_an_inconclusive_version_next_to_the_first_bad_one_leaves_the_answer_unsure():
    def answers(v):
        if v == Version(12, 0, 1):
            return [Outcome.INCONCLUSIVE]
        return [Outcome.PASS if v < Version(12, 0, 1) else Outcome.FAIL]

    found = rerun.bisect_versions(fake_runner(answers, []), "native-checkout", VERSIONS, notify=lambda s: None)
    assert found.first_bad == Version(12, 1, 0) and found.unsure == (Version(12, 0, 1),) and not found.exact
    assert "one of 12.0.1 (inconclusive) or 12.1.0" in found.note


def test_an_inconclusive_run_that_passes_on_the_rerun_counts():
    calls = []

    def answers(v):
        if v == Version(12, 0, 1):
            return [Outcome.INCONCLUSIVE, Outcome.FAIL]
        return [Outcome.PASS if v < Version(12, 0, 1) else Outcome.FAIL]

    found = rerun.bisect_versions(fake_runner(answers, calls), "native-checkout", VERSIONS, notify=lambda s: None)
    assert found.first_bad == Version(12, 0, 1) and found.exact
    assert found.tested["12.0.1"].runs == 2 and found.tested["12.0.1"].reason == ""


@pytest.mark.parametrize("end", ["good", "bad"])
def test_an_inconclusive_end_stops_the_bisect_without_a_bad_version(end):
    inconclusive = VERSIONS[0] if end == "good" else VERSIONS[-1]

    def answers(v):
        if v == inconclusive:
            return HarnessError("lab did not boot: forgejo exited 1\nlog: /x")
        return [Outcome.PASS if v < Version(12, 0, 1) else Outcome.FAIL]

    calls = []
    found = rerun.bisect_versions(fake_runner(answers, calls), "native-checkout", VERSIONS, notify=lambda s: None)
    assert found.first_bad is None and not found.exact
    assert f"the {end} version {inconclusive} is inconclusive: the lab run failed: lab did not boot" in found.note
    assert calls.count(str(inconclusive)) == 2


def test_bisect_refuses_a_failing_good_version():
    with pytest.raises(HarnessError, match=r"the good version 11\.3\.1 fails"):
        rerun.bisect_versions(fake_runner(lambda v: [Outcome.FAIL], []), "x", [Version(11, 3, 1), Version(12, 1, 2)],
                              notify=lambda s: None)


SHAPED = {"rerun": {"runner_version": "12.1.2", "runner_key": "12.1.2-cacheoff", "forgejo_version": "11.0.15",
                    "runner_binary": None, "seed_action": [], "runner_config": {"cacheoff": "runner-config-overrides.yaml"},
                    "actions_url": "http://127.0.0.1:9/git", "runner_without": ["git"]},
          "actions": [{"uses": "actions/checkout@v4", "commit": "aaa"}, {"uses": "x/y@v1", "commit": None}]}


def test_bundle_options_are_taken_by_default(tmp_path):
    info = rerun.read_bundle(make_bundle(tmp_path, **SHAPED))
    assert info.runner_key == "12.1.2-cacheoff"
    values = rerun.rerun_values(info, {})
    assert values == {"forgejo-version": "11.0.15", "runner-binary": [], "seed-action": [],
                      "runner-config": [f"cacheoff={info.path / 'runner-config-overrides.yaml'}"],
                      "actions-url": "http://127.0.0.1:9/git", "runner-without": ["12.1.2=git"],
                      "warm-up-repos": None, "warm-up": False, "condition": []}


def test_a_condition_cell_is_re_run_under_its_condition(tmp_path):
    shaped = {"rerun": {**SHAPED["rerun"], "condition": {"slowforgejo": "condition.yml"}}}
    info = rerun.read_bundle(make_bundle(tmp_path, **shaped))
    assert rerun.rerun_values(info, {})["condition"] == [f"slowforgejo={info.path / 'condition.yml'}"]


def test_an_option_given_replaces_the_bundles(tmp_path):
    info = rerun.read_bundle(make_bundle(tmp_path, **SHAPED))
    values = rerun.rerun_values(info, {"actions-url": "http://other.test", "runner-config": ["x=/c.yaml"]})
    assert values["actions-url"] == "http://other.test" and values["runner-config"] == ["x=/c.yaml"]
    assert values["runner-without"] == ["12.1.2=git"]


def test_old_bundle_options_from_runner_and_forgejo(tmp_path):
    info = rerun.read_bundle(make_bundle(tmp_path))
    assert info.runner_key == "12.1.2"
    assert rerun.rerun_values(info, {}) == {"forgejo-version": "13.0.5", "runner-binary": [], "seed-action": [],
                                            "runner-config": [], "actions-url": None,
                                            "runner-without": ["12.1.2=git"], "warm-up-repos": None,
                                            "warm-up": False, "condition": []}


def test_a_seeded_copy_that_is_gone_is_named_with_the_fix(tmp_path):
    shaped = {"rerun": {**SHAPED["rerun"], "seed_action": [f"actions/checkout={tmp_path / 'gone'}"]}}
    info = rerun.read_bundle(make_bundle(tmp_path, **shaped))
    with pytest.raises(ConfigError, match=r"seeded copy of actions/checkout is gone .* give "
                                          r"--seed-action=actions/checkout=PATH .*actions/actions/checkout"):
        rerun.rerun_values(info, {})
    assert rerun.rerun_values(info, {"seed-action": ["actions/checkout=/elsewhere"]})["seed-action"] == [
        "actions/checkout=/elsewhere"]


def test_changed_actions_names_a_different_commit(tmp_path):
    info = rerun.read_bundle(make_bundle(tmp_path, **SHAPED))
    new = tmp_path / "new"
    new.mkdir()
    (new / "manifest.json").write_text(json.dumps({"actions": [{"uses": "actions/checkout@v4", "commit": "bbb"},
                                                               {"uses": "x/y@v1", "commit": "ccc"}]}))
    assert rerun.changed_actions(info, new) == ["actions/checkout@v4: aaa then, bbb now"]
    (new / "manifest.json").write_text(json.dumps({"actions": [{"uses": "actions/checkout@v4", "commit": "aaa"}]}))
    assert rerun.changed_actions(info, new) == [] and rerun.changed_actions(info, None) == []


def test_a_warm_up_cell_is_re_run_warm_with_its_k_unless_told_otherwise(tmp_path):
    bundle = make_bundle(tmp_path)
    (bundle / "warm-up.json").write_text(json.dumps({"outcome": "pass", "repos": 3, "runs": []}))
    info = rerun.read_bundle(bundle)
    assert info.options["warm-up-repos"] == 3
    values = rerun.rerun_values(info, {})
    assert values["warm-up"] is True and values["warm-up-repos"] == 3
    assert rerun.rerun_values(info, {"warm-up-repos": "4"})["warm-up-repos"] == "4"
    cold = rerun.rerun_values(info, {"no-warm-up": True})
    assert cold["warm-up"] is False and cold["warm-up-repos"] is None


def test_a_cell_without_warm_up_is_re_run_without(tmp_path):
    info = rerun.read_bundle(make_bundle(tmp_path))
    values = rerun.rerun_values(info, {})
    assert values["warm-up"] is False and values["warm-up-repos"] is None
    (tmp_path / "bundle" / "warm-up.json").write_text("{not json")
    assert rerun.read_bundle(tmp_path / "bundle").options["warm-up-repos"] is None


@pytest.mark.parametrize(("given", "warm", "repos"), [({}, True, 3), ({"no-warm-up": True}, False, 3)])
def test_the_settings_of_a_re_run_carry_the_warm_up(tmp_path, given, warm, repos):
    from harness import config

    bundle = make_bundle(tmp_path)
    (bundle / "warm-up.json").write_text(json.dumps({"repos": 3}))
    values = rerun.rerun_values(rerun.read_bundle(bundle), given)
    settings = config.build(config.resolve_raw(lambda dest: values.get(dest.removeprefix("regress_").replace("_", "-"))))
    assert settings.warm_up is warm and settings.warm_up_repos == repos
