"""--warm-up on a real lab: cold then warm on one runner, and the cache store growing by one copy per repository;
before the session's lab is torn down, ``diagnose`` on the runner's real stores names the cache server's entries per
repository and setup-qemu's image saved once per repository (tests/lab/diagnose_at_teardown.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.versions import Version

from .conftest import resolve_or_skip
from .test_product_flows import ROOT, run_pytest

pytestmark = [pytest.mark.lab, pytest.mark.docker]


def test_warm_up_measures_cold_and_warm_and_the_growth_per_repository(tmp_path):
    resolve_or_skip("forgejo-runner", Version(12, 1, 2))
    resolve_or_skip("forgejo", Version(13, 0, 5))
    diagnosed = tmp_path / "diagnose"
    proc = run_pytest("-m", "regression", "-k", "qemu-buildx or native-checkout", "--runner-version", "12.1.2",
                      "--warm-up", "--evidence", "always", "--evidence-dir", str(tmp_path),
                      "-p", "tests.lab.diagnose_at_teardown", env={"REGRESS_DIAGNOSE_OUT": str(diagnosed)})
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    assert "cache store after each of 6 repositories" in out, out[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("*/report.json")]
    records = {r["scenario"]: r for r in json.loads((run_dir / "report.json").read_text())}
    qemu = records["qemu-buildx"]
    warm_up = qemu["observations"]["warm_up"]
    first, second = warm_up["runs"]
    assert warm_up["repos"] == 3 and (first["cold"], second["cold"], qemu["verdict"]["cold"]) == (True, False, False)
    assert qemu["setup_seconds_cold"] == first["setup_seconds"] and qemu["setup_seconds_warm"] is not None
    assert qemu["cpu_setup_pct_cold"] is not None and qemu["cpu_setup_pct_warm"] is not None
    assert first["stores"]["store_growth_mb"]["action_clones"] > 0  # the cold run cloned the actions ...
    assert qemu["observations"]["store_growth_mb"]["action_clones"] == 0  # ... the warm one did not
    for run in (first, second):  # the warm-up runs' evidence is kept under the cell
        assert (run_dir / run["bundle"].split(run_dir.name + "/", 1)[1] / "manifest.json").is_file()
    growth = [v for v in qemu["verdict"]["violations"] if v["message"].startswith("3 repositories using")]
    assert len(growth) == 1 and growth[0]["rule"] == "cache-growth" and growth[0]["severity"] == "report"
    series = qemu["runner_cache"]
    assert series == records["native-checkout"]["runner_cache"]  # one runner, one series over the session
    sizes = dict(zip(series["repos"], series["cache_store_after_repo_mb"], strict=True))
    mine = [sizes[r["repo"]] for r in (first, second)] + [sizes[warm_up["measured_repo"]]]
    assert mine[0] < mine[1] < mine[2], series  # every new repository saved its own copy
    assert set(series["after_repo_mb"]) == {"cache_server", "tool_cache", "action_clones", "home"}
    assert not any(v["message"].startswith("3 repositories using")
                   for v in records["native-checkout"]["verdict"]["violations"])  # checkout saves nothing

    # diagnose on the runner's real stores, before the lab's teardown: per repository, and the image saved 3 times
    found = json.loads((diagnosed / "12.1.2.json").read_text())
    report = (diagnosed / "12.1.2.txt").read_text()
    print(report)
    per_repo = found["cache_entries"]["per_repository"]
    qemu_repos = [r["repo"] for r in (first, second)] + [warm_up["measured_repo"]]
    assert all(any(repo.endswith(r) or r.endswith(repo) for repo in per_repo) for r in qemu_repos), (per_repo, qemu_repos)
    (image,) = [s for s in found["cache_entries"]["same_key"] if s["copies"] == 3]
    assert image["extra_bytes"] > 0 and image["bytes"] >= image["extra_bytes"] * 3 / 2, image
    (finding,) = [f for f in found["findings"] if f["kind"] == "same-key-per-repository"]
    assert finding["bytes"] == image["extra_bytes"] and "rm -rf -- " in finding["command"], finding
    assert finding["stop_runner_first"] and "stop the runner first" in report
    assert (diagnosed / "12.1.2.rc").read_text() == "1"

    # a re-run of a warm-up cell is warm again: its K from the bundle's warm-up.json, on one runner of a new lab
    bundle = run_dir / records["native-checkout"]["bundle"]  # relative to its run
    again = subprocess.run([sys.executable, "-m", "harness", "rerun", str(bundle)], capture_output=True, text=True,
                           cwd=ROOT, timeout=900, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert "--warm-up-repos 3 (from the bundle)" in again.stdout and "after 2 warm-up runs" in again.stdout
    assert "same verdict" in again.stdout
    found = re.search(r"^new bundle: (\S+)$", again.stdout, re.M)
    assert found, again.stdout[-2000:]
    rerun_warm_up = json.loads((Path(found.group(1)) / "warm-up.json").read_text())
    assert rerun_warm_up["repos"] == 3 and [r["cold"] for r in rerun_warm_up["runs"]] == [True, False]
