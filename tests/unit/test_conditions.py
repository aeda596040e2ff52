"""harness.conditions: --condition NAME=FILE parsed, applied to a scenario, its budgets and the lab's zombie timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import conditions
from harness.budgets import Budgets
from harness.errors import ConfigError
from harness.lab.forgejo import ZombieSettings
from harness.scenarios import SLOW_ACTIONS_PLACEHOLDER, load
from harness.target import raised_zombie
from harness.versions import Version

EXAMPLES = Path(__file__).parents[2] / "examples" / "conditions"


def parse(block: object, name: str = "slow") -> conditions.Condition:
    return conditions.parse(name, block, "c.yml")


def test_every_shipped_condition_parses_and_applies_to_the_report_s_three_scenarios() -> None:
    shipped = sorted(p.stem for p in EXAMPLES.glob("*.yml"))
    assert shipped == ["late-forward", "slow-action-server", "slow-answers", "slow-forgejo", "slow-forgejo-ci"]
    for file in EXAMPLES.glob("*.yml"):
        condition = conditions.load(file.stem, file)
        for name in ("native-checkout", "docker-checkout", "qemu-buildx"):
            under = condition.apply(load(name))
            assert under.condition == file.stem and under.name == name
            assert str(under.expect.job) == "success" and under.expect.marker == "regression"


def test_a_fault_condition_puts_its_fault_and_known_bug_on_the_scenario() -> None:
    condition = conditions.load("ci", EXAMPLES / "slow-forgejo-ci.yml")
    assert condition.describe() == "fault abort-upstream 12s from first UpdateLog of the task ('Set up job')"
    under = condition.apply(load("native-checkout"))
    fault = under.expect.fault
    assert fault is not None and not fault.decides_class and fault.runner_env == {"FORGEJO_CLIENT_TIMEOUT": "5"}
    bug = under.expect.known_bug
    assert bug is not None and bug.applies_to(Version(12, 1, 2), {}) and not bug.applies_to(Version(11, 3, 1), {})
    assert under.template == load("native-checkout").template  # a fault changes nothing in the workflow
    assert load("native-checkout").expect.fault is None  # the catalogue's scenario is left as it was


def test_a_slow_actions_condition_fetches_every_remote_action_through_the_slow_server() -> None:
    condition = parse({"slow_actions": {"delay": 2, "bandwidth_kbps": 256}})
    under = condition.apply(load("qemu-buildx"))
    uses = [line.strip() for line in under.template.splitlines() if "uses:" in line]
    assert uses and all(f"uses: {SLOW_ACTIONS_PLACEHOLDER}/" in line for line in uses), uses
    assert (under.expect.slow_actions, under.expect.slow_bandwidth) == (2.0, 256.0)
    assert under.render("lbl", "http://127.0.0.1:1/") .count("http://127.0.0.1:1/") == len(uses)
    assert condition.describe() == "slow actions: +2s a request, 256 KB/s"


def test_what_a_condition_cannot_apply_to_is_said() -> None:
    slow = parse({"slow_actions": {"delay": 1}})
    with pytest.raises(ConfigError, match="fetches its actions slowly already"):
        slow.apply(load("slow-action-fetch"))
    fault = parse({"fault": {"mode": "delay", "delay": 3, "at": {"first_report": True}}})
    with pytest.raises(ConfigError, match="has a fault of its own"):
        fault.apply(load("blackhole-during-post"))


@pytest.mark.parametrize(("block", "says"), [
    ({"fault": {"mode": "delay", "delay": 3, "at": {"first_report": True}, "expect": {"12.1.2": "x"}}},
     "takes no expect"),
    ({"fault": {"mode": "delay", "delay": 3, "at": {"first_report": True}}, "slow_actions": {"delay": 1}},
     "exactly one of"),
    ({}, "exactly one of"),
    ({"about": "x"}, "exactly one of"),
    ({"slow_actions": {"delay": "soon"}}, "are numbers"),
    ({"slow_actions": {"bandwidth_kbps": 5}}, "slow_actions takes delay"),
    ({"fault": {"mode": "abort-upstream", "at": {"log": "x"}}}, "needs delay"),
    ({"fault": {"mode": "delay", "delay": 3, "at": {"first_report": True}}, "phases": []}, "unknown keys"),
    ({"slow_actions": {"delay": 1}, "known_bug": {"versions": "12", "class": "x"}}, "known_bug.versions"),
    (["fault"], "not a YAML mapping"),
])
def test_bad_blocks_are_one_line_naming_the_file(block: object, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as raised:
        parse(block)
    assert str(raised.value).startswith("--condition slow=c.yml: ") and "\n" not in str(raised.value)


def test_bad_names_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NAME must be a-z"):
        parse({"slow_actions": {"delay": 1}}, name="Slow Forgejo")
    bad = tmp_path / "bad.yml"
    bad.write_text("fault: [unclosed\n")
    with pytest.raises(ConfigError, match=r"--condition x=.*bad.yml: "):
        conditions.load("x", bad)
    with pytest.raises(ConfigError, match="No such file"):
        conditions.load("x", tmp_path / "missing.yml")


def test_budgets_that_would_fire_before_the_hold_are_raised_and_said() -> None:
    condition = conditions.load("slowforgejo", EXAMPLES / "slow-forgejo.yml")
    assert condition.hold == 70.0
    raised = condition.budgets(Budgets())
    assert raised.runner_stalled == 75.0 and raised.fault_quiet == 100.0 and raised.final_log == 85.0
    assert raised.fault_aftermath == 270.0 and raised.job_done == Budgets().job_done
    assert condition.raised(Budgets()) == ["fault_aftermath 120→270s", "fault_quiet 30→100s",
                                           "runner_stalled 15→75s", "final_log 20→85s"]
    assert parse({"slow_actions": {"delay": 2}}).budgets(Budgets()) == Budgets()
    assert parse({"fault": {"mode": "blackhole", "at": {"first_report": True}}}).raised(Budgets()) == []


def test_the_lab_zombie_timeout_is_raised_above_two_holds_never_lowered() -> None:
    ci = conditions.load("ci", EXAMPLES / "slow-forgejo-ci.yml")
    long = conditions.load("long", EXAMPLES / "slow-forgejo.yml")
    assert ci.zombie_timeout() == 54.0 and long.zombie_timeout() == 170.0
    assert raised_zombie(ZombieSettings(), [ci]).zombie_timeout == "54s"
    assert raised_zombie(ZombieSettings(), [ci, long]).zombie_timeout == "170s"
    assert raised_zombie(ZombieSettings(zombie_timeout="10m"), [long]).zombie_timeout == "10m"
    assert raised_zombie(ZombieSettings(), [parse({"slow_actions": {"delay": 2}})]) == ZombieSettings()


def test_to_json_keeps_what_rerun_needs() -> None:
    condition = conditions.load("ci", EXAMPLES / "slow-forgejo-ci.yml")
    data = condition.to_json()
    assert data["name"] == "ci" and data["source"].endswith("slow-forgejo-ci.yml")
    assert conditions.parse("ci", data["block"], "bundle").describe() == condition.describe()


def test_slow_actions_keep_each_step_s_name_so_its_row_and_expectations_match() -> None:
    """A step row is named after its ``uses:`` string, which now holds the slow server's URL: a step named only by
    it gets that text as its name (measured: without it every report scenario failed ``missing-step``)."""
    under = parse({"slow_actions": {"delay": 1}}).apply(load("native-checkout"))
    assert "- name: actions/checkout@v4\n        uses: __SLOW_ACTIONS_URL__/actions/checkout@v4\n" in under.template
    text = ("jobs:\n  a:\n    steps:\n      - uses: a/b@v1\n        name: named\n      - name: x\n        uses: 'c/d@v2'\n"
            "      - uses: ./local\n      - uses: e/f@v3\n        with:\n          k: v\n")
    assert conditions.through_slow_server(text) == (
        "jobs:\n  a:\n    steps:\n      - uses: __SLOW_ACTIONS_URL__/a/b@v1\n        name: named\n      - name: x\n"
        "        uses: '__SLOW_ACTIONS_URL__/c/d@v2'\n      - uses: ./local\n      - name: e/f@v3\n"
        "        uses: __SLOW_ACTIONS_URL__/e/f@v3\n        with:\n          k: v\n")
