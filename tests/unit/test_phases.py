"""harness.scenarios: expect.yml ``phases`` and ``known_bug``; the moved-tag fixture."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.scenarios import ActionChange, Expect, KnownBug, Phase, load
from harness.versions import Version

TAG = {"kind": "descendant", "action": "regress/movetag", "tags": ["v1"]}


def parse(**data):
    return Expect.parse({"kind": "native", **data}, "expect.yml")


def test_phases_parse_in_order_with_their_changes():
    exp = parse(phases=[{"name": "A"}, {"name": "B", "change": TAG},
                        {"name": "C", "change": [{"kind": "orphan", "action": "o/n"},
                                                 {"kind": "add_refs", "action": "o/n", "count": 3}]}])
    assert exp.phases == (Phase("A"), Phase("B", (ActionChange("descendant", "regress/movetag", ("v1",)),)),
                          Phase("C", (ActionChange("orphan", "o/n", ("v1",)), ActionChange("add_refs", "o/n", ("v1",), 3))))
    assert parse().phases == ()


@pytest.mark.parametrize(("phases", "message"), [
    ([{"name": "A"}], "at least two phases"),
    ("A,B", "at least two phases"),
    ([{"name": "A"}, {"name": "A", "change": TAG}], "must be a unique word"),
    ([{"name": "A", "change": TAG}, {"name": "B", "change": TAG}], "phases\\[0\\] runs on the seeded action"),
    ([{"name": "A"}, {"name": "B"}], "phases\\[1\\] \\(B\\) needs a change"),
    ([{"name": "A"}, {"name": "B", "change": {**TAG, "kind": "rebase"}}], "kind must be one of"),
    ([{"name": "A"}, {"name": "B", "change": {**TAG, "action": "movetag"}}], "must be owner/name"),
    ([{"name": "A"}, {"name": "B", "change": {**TAG, "tags": "v1"}}], "must list tag names"),
    ([{"name": "A"}, {"name": "B", "change": {"kind": "add_refs", "action": "o/n"}}], "count must be a positive"),
    ([{"name": "A"}, {"name": "B", "when": "later", "change": TAG}], "takes a name and"),
])
def test_phases_reject_with_the_key_named(phases, message):
    with pytest.raises(ConfigError, match=f"expect.yml: .*{message}"):
        parse(phases=phases)


@pytest.mark.parametrize(("versions", "has", "hasnt"), [
    ("<12.0.0", ["11.3.1", "11.0.0"], ["12.0.0", "12.1.2"]),
    (">=11.0.0, <12.0.0", ["11.3.1"], ["10.9.9", "12.1.2"]),
    ("==12.1.1", ["12.1.1"], ["12.1.2"]),
    ("> 11.3.1,<= 12.1.2", ["12.0.0", "12.1.2"], ["11.3.1", "12.1.3"]),
])
def test_known_bug_applies_to_its_versions_only(versions, has, hasnt):
    bug = parse(known_bug={"versions": versions, "class": "stale-action", "link": "L"}).known_bug
    assert bug == KnownBug(versions, "stale-action", "L")
    assert all(bug.applies(Version.parse(v)) for v in has)
    assert not any(bug.applies(Version.parse(v)) for v in hasnt)
    assert bug.describe() == f"known bug on runner {versions}: stale-action (L)"


@pytest.mark.parametrize(("data", "message"), [
    ({"versions": "<12.0.0"}, "versions and class required"),
    ({"versions": "12", "class": "x"}, "known_bug.versions: '12' is not <op><version>"),
    ({"versions": "<twelve", "class": "x"}, "not a version"),
    ({"versions": "<12.0.0", "class": "x", "issue": 1}, "takes versions, class, link and fixed_by_env"),
    ({"versions": "<12.0.0", "class": "x", "fixed_by_env": "X"}, "fixed_by_env must list"),
])
def test_known_bug_rejects(data, message):
    with pytest.raises(ConfigError, match=message):
        parse(known_bug=data)


def test_a_phase_may_only_change_an_action_the_workflow_uses(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "workflow.yml").write_text("jobs:\n  s:\n    runs-on: __RUNS_ON__\n    steps:\n      - uses: o/used@v1\n")
    (folder / "expect.yml").write_text("kind: native\nphases:\n  - {name: A}\n  - {name: B, change: {kind: orphan, "
                                       "action: o/other}}\n")
    with pytest.raises(ConfigError, match=r"phases change \['o/other'\], which workflow.yml does not use"):
        load("s", tmp_path)


def test_moved_tag_fixture_and_its_rendering_with_the_cells_copy():
    scenario = load("moved-tag")
    assert [p.name for p in scenario.expect.phases] == ["A", "B", "C"]
    assert [c.kind for p in scenario.expect.phases for c in p.changes] == ["descendant", "orphan"]
    assert scenario.changed_actions() == ("regress/movetag",)
    bug = scenario.expect.known_bug
    assert bug is not None and bug.failure_class == "stale-action"
    assert bug.applies(Version(11, 3, 1)) and not bug.applies(Version(12, 1, 2))
    rendered = scenario.render("lbl", None, {"regress/movetag": "admin/movetag-12-1-2-abc"})
    assert "uses: admin/movetag-12-1-2-abc@v1" in rendered and "regress/movetag" not in rendered
    assert scenario.render("lbl") == scenario.template.replace("__RUNS_ON__", "lbl")


def test_a_known_bug_fixed_by_an_environment_variable_spares_the_axis_that_sets_it():
    scenario = load("late-reports-during-post")
    bug = scenario.expect.known_bug
    assert bug is not None and bug.failure_class == "finalization-lost" and bug.fixed_by_env == ("FORGEJO_CLIENT_TIMEOUT",)
    assert bug.applies_to(Version(12, 1, 2), {}) and bug.applies_to(Version(12, 1, 2), {"LANG": "C"})
    assert not bug.applies_to(Version(12, 1, 2), {"FORGEJO_CLIENT_TIMEOUT": "90"})
    assert not bug.applies_to(Version(11, 3, 1), {})
    from harness.pytest_plugin import _known_bug_marks

    assert [m.kwargs["reason"] for m in _known_bug_marks(bug, "12.1.2-retry", {})] == [bug.describe()]
    assert _known_bug_marks(bug, "12.1.2-ct90", {"FORGEJO_CLIENT_TIMEOUT": "90"}) == []
    assert _known_bug_marks(bug, "11.3.1", {}) == []
