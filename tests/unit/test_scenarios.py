"""harness.scenarios: the real fixtures/workflows and Expect.parse validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness import scenarios as scenarios_mod
from harness.errors import ConfigError
from harness.forgejo.models import Status
from harness.scenarios import (
    LABEL_PLACEHOLDER,
    WORKFLOWS_DIR,
    Budget,
    Catalogue,
    Expect,
    RunnerControl,
    load,
    load_all,
    scenario_names,
)
from harness.verdict import marker_found

WHERE = "fixtures/workflows/x/expect.yml"

DATA = Path(__file__).resolve().parents[1] / "data" / "recordings"


def parse(**data):
    return Expect.parse({"kind": "native", **data}, WHERE)


# -- the real fixtures -----------------------------------------------------------------------------------


def test_load_all_real_fixtures():
    scenarios = load_all()
    names = [s.name for s in scenarios]
    assert names == sorted(names)
    assert {"native-checkout", "docker-checkout", "qemu-buildx", "post-exit-1", "killed-during-post"} <= set(names)
    assert names == scenario_names()


@pytest.mark.parametrize("name", scenario_names())
def test_each_scenario_is_valid(name):
    scenario = load(name)
    exp = scenario.expect
    assert exp.kind in ("native", "docker")
    assert exp.job.done
    assert all(status.done for status in exp.steps.values())
    assert LABEL_PLACEHOLDER in scenario.template
    assert scenario.workflow_file == f"{name}.yml"
    rendered = yaml.safe_load(scenario.render("regress-12.1.2-native", "http://127.0.0.1:1"))
    jobs = rendered["jobs"]
    assert {job["runs-on"] for job in jobs.values()} == {"regress-12.1.2-native"}
    assert scenario.job_ids == tuple(jobs)
    if len(jobs) == 1:  # a one-job scenario names its job after itself
        assert scenario.job_ids == (name,)


@pytest.mark.parametrize("name", [n for n in scenario_names() if load(n).expect.marker == "regression"])
def test_regression_scenarios_name_their_steps(name):
    scenario = load(name)
    exp = scenario.expect
    assert exp.expected_violations == ()
    step_names = {step.get("name") or step.get("uses") or step.get("run")
                  for job in yaml.safe_load(scenario.render("l"))["jobs"].values() for step in job["steps"]}
    assert set(exp.steps) <= step_names, "expect.yml names a step the workflow does not have"
    assert set(exp.post_steps) <= set(scenario.uses())
    assert exp.job_log_must, "a regression scenario should check the job log"


@pytest.mark.parametrize("name", [n for n in scenario_names() if load(n).expect.marker == "selfcheck"])
def test_selfcheck_scenarios_list_violations(name):
    assert load(name).expect.expected_violations


def test_killed_during_post_expectations():
    exp = load("killed-during-post").expect
    assert exp.marker == "selfcheck"
    assert exp.job is Status.FAILURE
    assert exp.control == RunnerControl("⭐ Run Post regress/slow-post@v1", "KILL")
    assert set(exp.expected_violations) == {"green-steps-failed-job", "post-step-cut-off", "runner-stalled"}


def test_docker_checkout_expectations():
    exp = load("docker-checkout").expect
    assert exp.kind == "docker" and exp.requires == ("docker",)
    assert (exp.setup_cold, exp.setup_warm) == (90.0, 30.0)
    (marker,) = exp.runner_log_must
    assert exp.steps["actions/checkout@v4"] is Status.SUCCESS
    # the runner's own end-of-job INFO line matches; the job logger's set-up line (same words) does not
    recorded = (DATA / "forgejo-11.0.15/runner-12.1.2/docker-ok/runner.log").read_text().splitlines()
    lines = [line for line in recorded if "Cleaning up network for job" in line]
    as_recorded = marker.replace("docker-checkout", "test")
    assert [marker_found(as_recorded, line) for line in lines] == [not line.startswith("[") for line in lines]
    assert any(marker_found(as_recorded, line) for line in lines)


def test_qemu_buildx_observe_budget_and_uses():
    scenario = load("qemu-buildx")
    assert scenario.expect.observe == {"cache_growth_mb": Budget(50.0, "report"), "cpu_setup_pct": Budget(60.0, "report"),
                                       "cpu_setup_pct_warm": Budget(20.0, "report")}
    assert set(scenario.expect.requires) == {"docker", "buildx", "buildkit", "privileged"}
    assert "creating container buildx_buildkit_builder-" in scenario.expect.job_log_must  # the docker-container driver
    assert scenario.uses() == ("actions/checkout@v4", "docker/setup-qemu-action@v3", "docker/setup-buildx-action@v3")


def test_render_replaces_placeholder():
    scenario = load("native-checkout")
    out = scenario.render("my-label")
    assert LABEL_PLACEHOLDER not in out
    assert "runs-on: my-label" in out
    assert scenario.template.count(LABEL_PLACEHOLDER) == out.count("my-label")


def test_uses_on_synthetic_template(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "workflow.yml").write_text(
        "on: [push]\njobs:\n  j:\n    runs-on: __RUNS_ON__\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - name: q\n        uses: 'docker/setup-qemu-action@v3'  # comment\n"
        "      - uses: \"actions/checkout@v4\"\n"
        "      - run: 'echo uses: not-an-action'\n"
    )
    (folder / "expect.yml").write_text("kind: native\n")
    assert load("s", tmp_path).uses() == ("actions/checkout@v4", "docker/setup-qemu-action@v3")


# -- load() errors ---------------------------------------------------------------------------------------


def _scenario(tmp_path, workflow="jobs:\n  j:\n    runs-on: __RUNS_ON__\n", expect="kind: native\n"):
    folder = tmp_path / "sc"
    folder.mkdir()
    (folder / "workflow.yml").write_text(workflow)
    if expect is not None:
        (folder / "expect.yml").write_text(expect)
    return folder


def test_load_unknown_scenario_lists_known(tmp_path):
    _scenario(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown scenario 'nope'; known: sc"):
        load("nope", tmp_path)


def test_load_without_placeholder(tmp_path):
    _scenario(tmp_path, workflow="jobs:\n  j:\n    runs-on: ubuntu\n")
    with pytest.raises(ConfigError, match="no __RUNS_ON__ placeholder"):
        load("sc", tmp_path)


def test_the_suites_own_scenarios_need_an_expect_yml(tmp_path, monkeypatch):
    _scenario(tmp_path, expect=None)
    monkeypatch.setattr(scenarios_mod, "WORKFLOWS_DIR", tmp_path)
    with pytest.raises(ConfigError, match=r"expect\.yml: missing or not a mapping"):
        scenarios_mod.load("sc", tmp_path)


def test_a_users_scenario_without_expect_yml_gets_the_defaults(tmp_path):
    _scenario(tmp_path, expect=None)
    exp = load("sc", tmp_path).expect
    assert (exp.kind, exp.marker, exp.job) == ("native", "regression", Status.SUCCESS)


def test_catalogue_adds_scenario_dirs_and_refuses_clashes(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    own = _scenario(mine, expect=None)  # a folder of scenarios: mine/sc
    single = tmp_path / "bitwarden-cli-build"
    single.mkdir()
    (single / "workflow.yml").write_text("jobs:\n  build:\n    runs-on: __RUNS_ON__\n")  # a scenario folder itself
    catalogue = Catalogue.build([mine, single])
    assert catalogue.roots["sc"] == mine and catalogue.roots["bitwarden-cli-build"] == tmp_path
    assert catalogue.load("bitwarden-cli-build").job_ids == ("build",)
    assert "native-checkout" in catalogue.roots and catalogue.load("sc").path == own
    assert {s.name for s in catalogue.all()} >= {"sc", "bitwarden-cli-build", "native-checkout"}
    with pytest.raises(ConfigError, match=r"scenario 'sc' exists already"):
        Catalogue.build([mine, mine])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"--scenario-dir .*empty: neither a scenario folder"):
        Catalogue.build([empty])
    with pytest.raises(ConfigError, match=r"unknown scenario 'nope'"):
        catalogue.load("nope")


def test_load_invalid_yaml(tmp_path):
    _scenario(tmp_path, expect="kind: [native\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load("sc", tmp_path)


def test_load_error_names_the_expect_file(tmp_path):
    folder = _scenario(tmp_path, expect="kind: windows\n")
    with pytest.raises(ConfigError) as info:
        load("sc", tmp_path)
    assert str(folder / "expect.yml") in str(info.value)


def test_scenario_names_of_missing_root(tmp_path):
    assert scenario_names(tmp_path / "absent") == []
    assert load_all(tmp_path / "absent") == []


def test_default_root_is_fixtures():
    assert WORKFLOWS_DIR.name == "workflows" and WORKFLOWS_DIR.is_dir()


# -- Expect.parse ----------------------------------------------------------------------------------------


def test_parse_defaults():
    exp = parse()
    assert exp.marker == "regression" and exp.job is Status.SUCCESS
    assert exp.steps == {} and exp.post_steps == () and exp.control is None and not exp.dispatch
    assert exp.setup_cold is None and exp.setup_warm is None


def test_parse_full():
    exp = parse(job="failure", steps={"a": "skipped"}, continue_on_error=["a"], post_steps=["x@v1"],
                setup_budget={"cold": 5, "warm": 2}, dispatch=True,
                log_markers={"job_must": ["m"], "job_must_not": ["n"], "runner_must": ["o"], "runner_must_not": ["p"]},
                observe={"cpu": {"limit": "80", "severity": "fail"}}, requires=["docker"],
                runner_control={"on_log": "go", "signal": "STOP"})
    assert exp.job is Status.FAILURE and exp.steps == {"a": Status.SKIPPED}
    assert (exp.setup_cold, exp.setup_warm) == (5.0, 2.0)
    assert (exp.job_log_must, exp.job_log_must_not, exp.runner_log_must, exp.runner_log_must_not) == (
        ("m",), ("n",), ("o",), ("p",))
    assert exp.observe == {"cpu": Budget(80.0, "fail")}
    assert exp.control == RunnerControl("go", "STOP")
    assert exp.dispatch and exp.continue_on_error == ("a",) and exp.post_steps == ("x@v1",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "native", "jbo": "success"}, r"unknown keys \['jbo'\]"),
        ({"kind": "windows"}, "kind must be one of"),
        ({}, "kind must be one of"),
        ({"kind": "native", "marker": "lab"}, "marker must be one of"),
        ({"kind": "native", "observe": {"cpu": {"limit": 1, "severity": "panic"}}}, r"observe\.cpu\.severity"),
        ({"kind": "native", "observe": {"cpu": {"severity": "fail"}}}, r"observe\.cpu needs a limit"),
        ({"kind": "native", "observe": {"cpu": 5}}, r"observe\.cpu needs a limit"),
        ({"kind": "native", "marker": "selfcheck"}, "must list its expected_violations"),
        ({"kind": "native", "job": "running"}, "job: 'running' is not a final status"),
        ({"kind": "native", "job": "green"}, "job: 'green' is not a final status"),
        ({"kind": "native", "steps": {"a": "waiting"}}, r"steps\.a: 'waiting' is not a final status"),
        ({"kind": "native", "requires": ["gpu"]}, r"requires: unknown \['gpu'\]"),
        ({"kind": "native", "runner_control": {"on_log": "x", "signal": "HUP"}}, "runner_control.signal"),
        ({"kind": "native", "slow_actions": 3}, "slow_actions takes delay"),
        ({"kind": "native", "slow_actions": {"delay": 2, "rate": 1}}, "slow_actions takes delay"),
        ({"kind": "native", "slow_actions": {"delay": 0}}, r"slow_actions\.delay: must be positive"),
    ],
)
def test_parse_rejects(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        Expect.parse(data, WHERE)
    assert str(info.value).startswith(f"{WHERE}: ")


def test_parse_rejects_non_numeric_setup_budget():
    with pytest.raises(ConfigError, match=WHERE):
        parse(setup_budget={"cold": "fast"})


def test_parse_rejects_unknown_log_marker_key():
    with pytest.raises(ConfigError, match="job_must_contain"):
        parse(log_markers={"job_must_contain": ["🏁  Job succeeded"]})


# -- the slow action server placeholder ---------------------------------------------------------------------

SLOW_WORKFLOW = ("jobs:\n  j:\n    runs-on: __RUNS_ON__\n    steps:\n"
                 "      - uses: __SLOW_ACTIONS_URL__/regress/fetched-slowly@v1\n      - uses: actions/checkout@v4\n")


def test_slow_actions_render_and_uses(tmp_path):
    _scenario(tmp_path, workflow=SLOW_WORKFLOW, expect="kind: native\nslow_actions: {delay: 2.5}\n")
    scenario = load("sc", tmp_path)
    assert scenario.expect.slow_actions == 2.5
    assert scenario.uses() == ("regress/fetched-slowly@v1", "actions/checkout@v4")  # seeded like the others
    rendered = scenario.render("lbl", "http://127.0.0.1:4321/")
    assert "uses: http://127.0.0.1:4321/regress/fetched-slowly@v1" in rendered and "__" not in rendered
    with pytest.raises(ConfigError, match="needs the slow action server"):
        scenario.render("lbl")


@pytest.mark.parametrize(("workflow", "expect"), [
    (SLOW_WORKFLOW, "kind: native\n"),
    ("jobs:\n  j:\n    runs-on: __RUNS_ON__\n", "kind: native\nslow_actions: {delay: 2}\n"),
])
def test_slow_actions_placeholder_and_key_go_together(tmp_path, workflow, expect):
    _scenario(tmp_path, workflow=workflow, expect=expect)
    with pytest.raises(ConfigError, match="go together"):
        load("sc", tmp_path)


def test_slow_action_fetch_fixture():
    scenario = load("slow-action-fetch")
    assert scenario.expect.slow_actions and scenario.expect.setup_cold
    assert scenario.expect.slow_actions > scenario.expect.setup_cold  # one delayed request already exceeds it
    assert scenario.expect.expected_violations == ("setup-over-budget",)


# -- job ids (the workflow's ``jobs:`` keys) and per-job expectations -------------------------------------------

TWO_JOBS = ("on: [push]\njobs:\n  lint:\n    runs-on: __RUNS_ON__\n    steps: [{run: 'true'}]\n"
            "  unit:\n    name: Unit tests\n    needs: lint\n    runs-on: __RUNS_ON__\n    steps: [{run: 'false'}]\n")


def test_job_ids_in_file_order(tmp_path):
    _scenario(tmp_path, workflow=TWO_JOBS.replace("  lint:", "  zeta:").replace("needs: lint", "needs: zeta"))
    assert load("sc", tmp_path).job_ids == ("zeta", "unit")  # file order, not sorted; the id, not the name


def test_expected_result_per_job(tmp_path):
    _scenario(tmp_path, workflow=TWO_JOBS, expect="kind: native\njob: success\njobs: {unit: failure}\n")
    exp = load("sc", tmp_path).expect
    assert exp.job is Status.SUCCESS and exp.jobs == {"unit": Status.FAILURE}
    assert parse().jobs == {}


def test_expected_job_must_be_in_the_workflow(tmp_path):
    folder = _scenario(tmp_path, workflow=TWO_JOBS, expect="kind: native\njobs: {Unit tests: failure}\n")
    with pytest.raises(ConfigError, match=r"jobs names \['Unit tests'\], which workflow.yml does not define "
                                          r"\(its jobs: \['lint', 'unit'\]\)") as info:
        load("sc", tmp_path)
    assert str(info.value).startswith(str(folder / "expect.yml"))


@pytest.mark.parametrize(("jobs", "message"), [
    ({"unit": "running"}, r"jobs\.unit: 'running' is not a final status"),
    (["unit"], "jobs must map job ids to their expected result"),
])
def test_parse_rejects_bad_jobs(jobs, message):
    with pytest.raises(ConfigError, match=message):
        parse(jobs=jobs)


@pytest.mark.parametrize(("workflow", "found"), [
    ("on: [push]\nname: __RUNS_ON__\n", "missing"),
    ("name: __RUNS_ON__\njobs:\n", "None"),
    ("name: __RUNS_ON__\njobs: {}\n", "{}"),
    ("on: [push]\njobs:\n  - runs-on: __RUNS_ON__\n", "[{'runs-on': 'label'}]"),
    ("- __RUNS_ON__\n", "missing"),
])
def test_load_rejects_workflow_without_a_jobs_mapping(tmp_path, workflow, found):
    folder = _scenario(tmp_path, workflow=workflow)
    with pytest.raises(ConfigError) as info:
        load("sc", tmp_path)
    message = str(info.value)
    assert message.startswith(f"{folder / 'workflow.yml'}: jobs: must be a non-empty mapping")
    assert f"(found: {found})" in message


HEAVY = {"repos": ["h/one", "h/two"], "shape": {"refs": 10, "commits": 3, "bundle_kb": 8}}


def test_heavy_actions_and_relative_budget():
    exp = parse(heavy_actions=HEAVY, setup_budget_relative={"baseline": "single", "factor": 1.4})
    assert exp.heavy is not None
    assert exp.heavy.repos == ("h/one", "h/two") and exp.heavy.shape.refs == 10
    assert (exp.heavy.baseline, exp.heavy.factor) == ("single", 1.4)
    assert parse().heavy is None
    assert parse(heavy_actions=HEAVY).heavy.baseline is None


@pytest.mark.parametrize("data, message", [
    ({"heavy_actions": {"repos": ["h/one"]}}, "heavy_actions takes repos"),
    ({"heavy_actions": {**HEAVY, "repos": ["nope"]}}, "owner/name"),
    ({"heavy_actions": {**HEAVY, "shape": {"refz": 1}}}, "unknown keys"),
    ({"setup_budget_relative": {"baseline": "b", "factor": 2}}, "heavy_actions takes"),
    ({"heavy_actions": HEAVY, "setup_budget_relative": {"baseline": "b"}}, "takes baseline"),
    ({"heavy_actions": HEAVY, "setup_budget_relative": {"baseline": "b", "factor": "x"}}, "positive"),
    ({"slow_actions": {"delay": 1, "bandwidth": 3}}, "bandwidth_kbps"),
    ({"marker": "nope"}, "marker must be one of"),
])
def test_heavy_parse_rejects(data, message):
    with pytest.raises(ConfigError, match=message):
        parse(**data)


def test_relative_budget_baseline_must_exist(tmp_path):
    folder = tmp_path / "h"
    folder.mkdir()
    (folder / "workflow.yml").write_text("on: push\njobs:\n  h:\n    runs-on: __RUNS_ON__\n    steps: [{run: x}]\n")
    (folder / "expect.yml").write_text(yaml.safe_dump({"kind": "native", "heavy_actions": HEAVY,
                                                       "setup_budget_relative": {"baseline": "one", "factor": 2}}))
    with pytest.raises(ConfigError, match=r"names no workflow one\.yml"):
        load("h", tmp_path)
    (folder / "one.yml").write_text("on: push\njobs:\n  o:\n    runs-on: __RUNS_ON__\n    steps: [{run: y}]\n")
    scenario = load("h", tmp_path)
    assert "runs-on: lbl" in (scenario.render_baseline("lbl") or "")


def test_heavy_concurrent_fixture():
    scenario = load("heavy-concurrent")
    exp = scenario.expect
    assert exp.marker == "faults" and exp.heavy is not None and exp.heavy.factor
    assert exp.slow_actions and exp.slow_bandwidth
    assert set(scenario.job_ids) == {"first", "second"}
    baseline = yaml.safe_load(scenario.render_baseline("l", "http://127.0.0.1:1") or "")
    uses = {step["uses"] for job in baseline["jobs"].values() for step in job["steps"]}
    names = {u.rsplit("@", 1)[0].removeprefix("http://127.0.0.1:1/") for u in uses}
    names |= {u.rsplit("@", 1)[0] for u in scenario.uses()}
    # three different heavy actions (each cold): the baseline's and one per concurrent job
    assert names == set(exp.heavy.repos)
