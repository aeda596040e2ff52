"""harness.diagnose (and its findings and report) on real stores made by real runners (tests/data/diagnose/):
classification, sizes, findings with their commands, the JSON keys and the exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.diagnose import cache_entries, diagnose, layout
from harness.diagnose.render import as_json, text

from .test_bolt import extract


@pytest.fixture
def upgraded(tmp_path) -> Path:
    """The stores of an 11.3.1 runner upgraded in place to 12.1.2 (its cache data files left out)."""
    root = extract("inplace-upgrade-11.3.1-12.1.2.tar.gz", tmp_path)
    (root / "home").mkdir()
    return root


def test_an_upgraded_store_names_11x_s_work_trees_unused(upgraded):
    found = diagnose(layout.from_dirs(upgraded / "work", upgraded / "cache", upgraded / "home"))
    assert found.owner == "12.x"
    assert sorted(c.kind for c in found.clones) == ["v11-worktree"] * 3 + ["v12-bare"] * 3
    v11 = [c for c in found.clones if c.kind == "v11-worktree"]
    assert sorted(c.ref.split("@")[0].rsplit("/", 1)[-1].split("-11-")[0] for c in v11) == [
        "cache-roundtrip", "checkout", "movetag"]  # the uses: string each serves, from its path's hash
    assert all(c.confirmed for c in found.clones)  # every path is sha256 of its uses: / of its URL
    unused = [f for f in found.findings if f.kind == "unused-clone"]
    assert sorted(f.bytes for f in unused) == sorted(c.bytes for c in v11) and all(f.bytes > 0 for f in unused)
    assert {f.command for f in unused} == {f"rm -rf -- {c.path}" for c in v11}
    assert not any(f.stop_runner_first for f in unused) and found.exit_code == 1
    assert [(t["entries"], t["bytes"]) for t in found.to_json()["cache_entries"]["per_repository"].values()] == [
        (1, 262144)] * 3  # the data files are not in the fixture: the declared size counts
    assert found.stores["cache_server"].entries == 3 and found.stores["action_clones"].entries == 6


def test_the_json_names_its_checks_and_the_keys_of_the_issue(upgraded):
    found = json.loads(as_json(diagnose(layout.from_dirs(upgraded / "work", upgraded / "cache", upgraded / "home"))))
    assert found["checks"] == ["stores", "clones", "cache_entries", "findings"] and found["upstream"] is None
    assert set(found["stores"]) == {"cache_server", "tool_cache", "action_clones", "home"}
    assert all({"bytes", "entries"} <= set(s) for s in found["stores"].values())
    assert all({"kind", "remote", "ref", "bytes", "used_by_owner"} <= set(c) for c in found["clones"])
    assert all({"kind", "bytes", "command"} <= set(f) for f in found["findings"])
    assert {"per_repository", "same_key", "entries"} <= set(found["cache_entries"])


def test_the_report_reads_without_the_code(upgraded):
    report = text(diagnose(layout.from_dirs(upgraded / "work", upgraded / "cache", upgraded / "home")))
    assert "owner: 12.x (12.x clones present)" in report and report.count("NOT READ by 12.x") == 3
    assert "findings: 3 (" in report and report.count("[unused-clone]") == 3
    assert "regress-admin/inplace-upgrade-11-3-1-dde28112: 1 entries, 262.1 kB" in report


def test_a_v11_store_has_nothing_to_clean_offline(tmp_path):
    root = extract("moved-tag-11.3.1.tar.gz", tmp_path)
    found = diagnose(layout.from_dirs(root / "work", root / "cache", root / "cache"))
    (clone,) = found.clones
    assert (found.owner, clone.kind, clone.used_by_owner) == ("11.x", "v11-worktree", True)
    assert clone.ref.startswith("regress-admin/movetag-11-3-1-") and clone.ref.endswith("@v1")
    assert found.findings == () and found.exit_code == 0 and "nothing to clean" in text(found)


def test_home_is_reported_without_the_stores_nested_in_it(tmp_path):
    root = extract("moved-tag-11.3.1.tar.gz", tmp_path / "home" / ".cache")
    (root / "work").rename(root / "act")
    (root / "cache").rename(root / "actcache")
    (tmp_path / "home" / "notes").write_text("x" * 10)
    config = tmp_path / "config.yaml"
    config.write_text("log: {level: info}\n")
    found = diagnose(layout.from_config(config, home=tmp_path / "home"))
    home = found.stores["home"]
    assert (home.bytes, home.files) == (10, 1) and "nested stores, measured apart" in home.note
    assert found.stores["action_clones"].bytes > 0 and found.stores["cache_server"].files == 1


def test_same_key_per_repository_and_a_cache_store_not_used(upgraded):
    db = upgraded / "cache" / "bolt.db"
    entries = cache_entries.read_entries(db.parent)
    assert [e.key for e in entries] == ["roundtrip-1-f5d297fa", "roundtrip-2-8e1d2026", "roundtrip-3-f0c6750e"]
    assert cache_entries.same_key(entries) == []  # one key per repository here; the warm-up fixture has the image
    config = upgraded / "config.yaml"
    config.write_text(f"cache: {{dir: {db.parent}, external_server: 'http://10.0.0.1:1/'}}\n"
                      f"host: {{workdir_parent: {upgraded / 'work'}}}\n")
    found = diagnose(layout.from_config(config, home=upgraded / "home"))
    assert not found.stores["cache_server"].used and "NOT USED: cache.external_server" in text(found)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "diagnose", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_cli_exit_codes_and_one_line_errors(upgraded, tmp_path):
    dirs = ["--workdir", str(upgraded / "work"), "--cache-dir", str(upgraded / "cache"), "--home", str(upgraded / "home")]
    found = cli(*dirs, "--json")
    assert found.returncode == 1 and json.loads(found.stdout)["exit_code"] == 1
    (tmp_path / "fresh").mkdir()
    fresh = str(tmp_path / "fresh")
    assert cli("--workdir", fresh, "--cache-dir", fresh, "--home", fresh).returncode == 0
    (tmp_path / "junk.db").write_text("junk")
    (tmp_path / "junkcache").mkdir()
    (tmp_path / "junkcache" / "bolt.db").write_text("not bbolt")
    for args, message in [
        ((), "give --config FILE (a runner's config), or --workdir DIR --cache-dir DIR --home DIR"),
        ((str(upgraded),), "unrecognized arguments"),
        (("--config", str(tmp_path / "nope.yaml")), "nope.yaml: no such file"),
        (("--config", str(tmp_path / "junk.db")), "not a runner's config"),
        (("--config", str(tmp_path / "junk.db"), "--workdir", fresh), "exclude each other"),
        (("--workdir", fresh), "--cache-dir --home missing"),
        (("--workdir", "/etc", "--cache-dir", fresh, "--home", fresh), "--workdir /etc: not a runner's store"),
        (("--workdir", fresh, "--cache-dir", str(tmp_path / "junkcache"), "--home", fresh),
         "junkcache/bolt.db: not a bbolt database"),
    ]:
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == ""
