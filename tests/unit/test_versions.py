"""harness.versions: parsing, ordering and finding versions in --version output."""

from __future__ import annotations

import pytest

from harness.versions import Version, find_version


@pytest.mark.parametrize(
    ("text", "version"),
    [("12.1.2", Version(12, 1, 2)), ("v12.1.2", Version(12, 1, 2)), ("11.0.15+gitea-1.22.0", Version(11, 0, 15)),
     ("13.0.5-rc1", Version(13, 0, 5)), ("  v11.3.1\n", Version(11, 3, 1)), ("1.2.3~dev", Version(1, 2, 3))],
)
def test_parse(text, version):
    assert Version.parse(text) == version


@pytest.mark.parametrize("text", ["", "12", "12.1", "12.1.x", "version 12.1.2", "12.1.2.4", "V12.1.2", "latest"])
def test_parse_rejects(text):
    with pytest.raises(ValueError, match="not a version"):
        Version.parse(text)


def test_str_drops_prefix_and_metadata():
    assert str(Version.parse("v11.0.15+gitea-1.22.0")) == "11.0.15"


def test_ordering_is_numeric():
    assert Version(12, 1, 10) > Version(12, 1, 9)
    assert Version(11, 3, 1) < Version(12, 0, 0) < Version(13, 0, 0)
    assert sorted([Version.parse("12.1.2"), Version.parse("v9.9.9"), Version.parse("11.0.15")]) == [
        Version(9, 9, 9), Version(11, 0, 15), Version(12, 1, 2)]


def test_hashable_and_equal_across_spellings():
    assert {Version.parse("v12.1.2"), Version.parse("12.1.2")} == {Version(12, 1, 2)}


@pytest.mark.parametrize(
    ("text", "version"),
    [("forgejo-runner version v12.1.2", Version(12, 1, 2)),
     ("Forgejo version 11.0.15+gitea-1.22.0 built with GNU Make 4.4, go1.24.1 : bindata, sqlite", Version(11, 0, 15)),
     ("runner: r12-f11, with version: v12.1.2, with labels", Version(12, 1, 2))],
)
def test_find_version(text, version):
    assert find_version(text) == version


def test_find_version_none():
    assert find_version("no version here 1.2") is None
    assert find_version("") is None


def test_recorded_server_versions(recording):
    answer = recording.api("/api/v1/version")[0]["response_body"]["version"]
    assert str(Version.parse(answer)) == recording.forgejo == recording.meta["forgejo_version"]


def test_runner_key_with_a_suffix_is_another_runner_of_that_release():
    fix = Version.key("12.1.2+fix")
    assert fix == Version(12, 1, 2, "fix") and str(fix) == "12.1.2+fix"
    assert fix != Version(12, 1, 2) and fix.release == Version(12, 1, 2) and Version(12, 1, 2).release == Version(12, 1, 2)
    assert Version(12, 1, 2) < fix < Version(12, 1, 3)
    assert Version.key("v11.3.1") == Version(11, 3, 1) and Version.key("12.1.2+pr_123.2").suffix == "pr_123.2"
    assert len({fix, Version.key("12.1.2+fix"), Version(12, 1, 2)}) == 2


@pytest.mark.parametrize("text", ["12.1.2-fix", "12.1.2+", "12.1.2+a-b", "12.1.2+gitea-1.22.0", "12.1", "fix"])
def test_runner_key_rejects(text):
    with pytest.raises(ValueError, match=r"not a version.*or a runner build of it"):
        Version.key(text)


def test_parse_still_drops_build_metadata():
    assert Version.parse("11.0.15+gitea-1.22.0") == Version(11, 0, 15)
    assert Version.parse("12.1.2+fix").suffix == ""
