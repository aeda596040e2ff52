"""In-place upgrade, the upgrade report's own path: a private 11.3.1 runner warmed by a phase (action clones,
cache store, ``.runner``), stopped, 12.1.2 started on the same files, then phases that move the action's tag.

The answer (does 12.x cope with v11's clones beside its own bare clones, what does the store hold afterwards)
is recorded in the test's properties and in the bundle (``inplace-upgrade.json``); the test fails when 12.x
does not run the current action code or v11's state is not what it started from. Before the runner is torn
down, ``diagnose`` on its real stores names 11.x's work trees as unused by 12.x, with their size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from harness.cell import run_cell
from harness.lab.booting import boot
from harness.lab.lab import RunnerSpec
from harness.lab.private import private_runner
from harness.runners.upgrade import store_inventory, upgrade_in_place
from harness.scenarios import load
from harness.target import RunnerHandle, open_lab
from harness.versions import Version

from .conftest import newest_forgejo, resolve_or_skip
from .diagnose_helper import ROOT, keep_copy, run_diagnose

pytestmark = [pytest.mark.lab]
OLD, NEW = Version(11, 3, 1), Version(12, 1, 2)

WORKFLOW = """name: inplace-upgrade
on: [push]
jobs:
  inplace-upgrade:
    runs-on: __RUNS_ON__
    steps:
      - uses: actions/checkout@v4
      - name: movetag
        uses: regress/movetag@v1
      - name: cache
        uses: regress/cache-roundtrip@v1
"""
EXPECT = """kind: native
job: success
steps: {movetag: success, cache: success}
phases:
  - {name: A}   # 11.3.1, cold: clones checkout, movetag, cache-roundtrip; fills the cache store
  - {name: B, change: {kind: descendant, action: regress/movetag}}   # 12.1.2 on the same files
  - {name: C, change: {kind: orphan, action: regress/movetag}}   # the tag move 11.3.1 cannot follow
"""


def summary(seen: dict) -> str:
    """The measured answer in a few lines."""
    before, after = seen.get("v11_left") or {}, seen.get("after") or {}
    printed = {p["phase"]: (p.get("runner_from_log") or {}).get("version", "?") + " printed "
               + ",".join(line for a in p.get("actions") or [] for line in a.get("printed") or []) + f" ({p['job']})"
               for p in seen.get("phases") or []}
    return (f"phases: {printed}\n"
            f"action cache with 11.3.1's files: {before.get('kinds')}; afterwards: {after.get('kinds')}\n"
            f"cache store: {before.get('cache_store')} → {after.get('cache_store')}")


@pytest.fixture(scope="module")
def target():
    forgejo = newest_forgejo()
    lab = boot(f"upg-{uuid.uuid4().hex[:6]}", forgejo, [RunnerSpec(resolve_or_skip("forgejo-runner", OLD))],
               use_docker=False)
    yield open_lab(lab)
    assert not lab.down()


def test_v12_started_on_a_warm_v11_runner_s_files(target, tmp_path, record_property):
    new = resolve_or_skip("forgejo-runner", NEW)
    folder = tmp_path / "scenarios" / "inplace-upgrade"
    folder.mkdir(parents=True)
    (folder / "workflow.yml").write_text(WORKFLOW)
    (folder / "expect.yml").write_text(EXPECT)
    scenario = load("inplace-upgrade", folder.parent)
    seen: dict[str, object] = {}
    with private_runner(target.lab, str(OLD)) as runner:
        handle = RunnerHandle(str(OLD), OLD, dict(runner.labels), runner)

        def upgrade(phase, _handle):
            if phase.name == "B":
                seen["v11_left"] = store_inventory(runner)
                seen["upgrade"] = upgrade_in_place(runner, new)

        result = run_cell(target, scenario, handle, tmp_path / "bundle", evidence="always", own_runner=True,
                          before_phase=upgrade)
        seen["after"] = store_inventory(runner)
        code, found, report = run_diagnose(runner.workdir, runner.cache_dir, runner.home)
        from_config = subprocess.run([sys.executable, "-m", "harness", "diagnose", "--config", str(runner.config_file),
                                      "--home", str(runner.home), "--json"], capture_output=True, text=True, cwd=ROOT,
                                     timeout=600, check=False)
        keep_copy("inplace-upgrade-11.3.1-12.1.2", runner.workdir, runner.cache_dir)
        seen["runner_log_errors"] = [line for line in runner.log_file.read_text(errors="replace").splitlines()
                                     if "level=error" in line or "level=warn" in line][-20:]
    record_property("diagnose", report)
    print(report)
    phases = result.observations.get("phases", [])
    seen["phases"] = [{k: p.get(k) for k in ("phase", "runner_from_log", "job", "rules", "setup_seconds", "actions")}
                      for p in phases]
    answer = json.dumps(seen, indent=1, default=str)
    (tmp_path / "bundle" / "inplace-upgrade.json").write_text(answer)
    record_property("inplace_upgrade", answer)
    record_property("inplace_upgrade_summary", summary(seen))
    print(summary(seen))
    assert result.error is None, f"{result.error}\n{answer}"
    ran = [(p["phase"], (p.get("runner_from_log") or {}).get("version")) for p in phases]
    assert ran == [("A", str(OLD)), ("B", str(NEW)), ("C", str(NEW))], ran
    v11 = seen["v11_left"]
    assert v11["kinds"].get("clone (work tree)", 0) >= 3 and v11["runner_files"][".runner"], answer
    assert v11["cache_store"]["files"] > 0, f"phase A left nothing in the cache store:\n{answer}"
    after = seen["after"]  # the measured answer, kept as a check: 12.x keys its clones apart and leaves v11's alone
    assert after["kinds"].get("clone (work tree)") == v11["kinds"]["clone (work tree)"], answer
    assert after["kinds"].get("bare clone", 0) >= 3, answer
    assert after["cache_store"]["files"] > v11["cache_store"]["files"], answer  # 12.x wrote into v11's store
    assert result.passed, f"12.1.2 on v11's files:\n{result.verdict.table() if result.verdict else ''}\n{answer}"

    # diagnose on the upgraded runner's real stores: 12.x owns them, 11.x's work trees are named unused with their size
    assert found["owner"] == "12.x", report
    kinds = [c["kind"] for c in found["clones"]]
    v11_clones = [c for c in found["clones"] if c["kind"] == "v11-worktree"]
    assert len(v11_clones) == v11["kinds"]["clone (work tree)"] and kinds.count("v12-bare") >= 3, report
    assert not any(c["used_by_owner"] for c in v11_clones) and all(c["used_by_owner"] for c in found["clones"]
                                                                   if c["kind"] == "v12-bare"), report
    assert all(c["ref"] != "unknown" for c in v11_clones), report  # each one's uses: found by hashing candidates
    unused = {f["command"]: f for f in found["findings"] if f["kind"] == "unused-clone"}
    assert set(unused) == {f"rm -rf -- {c['path']}" for c in v11_clones}, found["findings"]
    assert all(unused[f"rm -rf -- {c['path']}"]["bytes"] == c["bytes"] > 0 for c in v11_clones)
    assert code == 1 and "NOT READ by 12.x" in report and "[unused-clone]" in report, report
    assert found["stores"]["cache_server"]["entries"] >= 1 and found["cache_entries"]["per_repository"], report
    configured = json.loads(from_config.stdout)  # the same runner read from its config: cache.external_server is set
    assert from_config.returncode == 1 and not configured["stores"]["cache_server"]["used"], from_config.stderr
    assert [c["path"] for c in configured["clones"]] == [c["path"] for c in found["clones"]]
    for secret in (runner.secret, runner.cache_secret):  # .runner's token, the config's cache.secret
        assert secret not in from_config.stdout and secret not in report
