"""`report merge` on real runs: one lab session per runner version, merged, decides as one session that ran both; a
missing candidate record, a scenario changed between the runs and a failed selfcheck each change the answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import chromium

from .test_product_flows import ROOT, run_pytest

pytestmark = [pytest.mark.lab]
PICK = ("-k", "native-checkout or docker-checkout or own-workflow")
GATE = ("--baseline", "11.3.1", "--candidate", "12.1.2")
OWN = "on: [push]\njobs:\n  build:\n    runs-on: __RUNS_ON__\n    steps:\n      - run: echo {word}\n"
BROKEN_SELFCHECK = ("kind: native\nmarker: selfcheck\njob: success\n"
                    "expected_violations: [setup-over-budget]   # nothing makes it fire: the selfcheck fails\n")


def own_scenario(root: Path, word: str) -> Path:
    folder = root / "own-workflow"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workflow.yml").write_text(OWN.format(word=word))
    return root


def merge(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "report", "merge", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False)


def run_dir(evidence: Path) -> Path:
    (found,) = [p for p in evidence.iterdir() if (p / "session.json").is_file()]
    return found


def decided(path: Path) -> list[tuple[str, str, str, str | None]]:
    return sorted((r["scenario"], r["runner"], r["outcome"], r.get("class"))
                  for r in json.loads((path / "report.json").read_text()))


def test_one_run_per_version_merged_decides_as_one_session(binaries_present, tmp_path):
    scenarios = own_scenario(tmp_path / "scenarios", "built")
    both = run_pytest("-m", "regression", *PICK, *GATE, f"--scenario-dir={scenarios}",
                      f"--evidence-dir={tmp_path / 'both'}")
    runs = {}
    for version in ("11.3.1", "12.1.2"):
        proc = run_pytest("-m", "regression", *PICK, "--runner-version", version, f"--scenario-dir={scenarios}",
                          f"--evidence-dir={tmp_path / version}")
        assert proc.returncode == 0, proc.stdout[-3000:]
        runs[version] = run_dir(tmp_path / version)
    merged = merge(runs["11.3.1"], runs["12.1.2"], "--out", tmp_path / "merged", *GATE)
    print("one session:\n" + both.stdout[-1500:] + "\nmerge:\n" + merged.stdout[-1500:])
    one = run_dir(tmp_path / "both")
    gate_line = json.loads((one / "session.json").read_text())["gate"]["line"]
    assert gate_line == "gate passed (nothing regressed)", both.stdout[-3000:]
    assert gate_line in merged.stdout and both.returncode == merged.returncode == 0, merged.stdout + merged.stderr
    assert decided(one) == decided(tmp_path / "merged")
    assert len(decided(one)) == 6

    # one candidate record removed: no evidence for that scenario, never a pass
    partial = tmp_path / "partial"
    shutil.copytree(runs["12.1.2"], partial)
    (record,) = [p for p in (partial / "cells").glob("*.json") if "native-checkout" in p.name]
    record.unlink()
    gap = merge(runs["11.3.1"], partial, "--out", tmp_path / "merged-gap", *GATE)
    assert gap.returncode == 1 and "gate INCONCLUSIVE (no evidence for: native-checkout" in gap.stdout, gap.stdout

    # the scenario changed between the runs: refused, naming it
    changed = own_scenario(tmp_path / "changed", "built differently")
    proc = run_pytest("-m", "regression", "-k", "own-workflow", "--runner-version", "12.1.2",
                      f"--scenario-dir={changed}", f"--evidence-dir={tmp_path / 'changed-run'}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    refused = merge(runs["11.3.1"], run_dir(tmp_path / "changed-run"), "--out", tmp_path / "merged-changed", *GATE)
    assert refused.returncode == 2 and "scenario own-workflow differs between the runs" in refused.stderr, \
        refused.stdout + refused.stderr

    # a session whose selfcheck failed: the merge fails, whatever its gate says
    selfcheck = tmp_path / "selfcheck" / "broken-selfcheck"
    selfcheck.mkdir(parents=True)
    (selfcheck / "workflow.yml").write_text(OWN.format(word="fine"))
    (selfcheck / "expect.yml").write_text(BROKEN_SELFCHECK)
    proc = run_pytest("-m", "regression or selfcheck", "-k", "native-checkout or broken-selfcheck",
                      "--runner-version", "12.1.2", f"--scenario-dir={selfcheck.parent}",
                      f"--evidence-dir={tmp_path / 'selfcheck-run'}")
    assert proc.returncode == 1, proc.stdout[-3000:]
    failed = merge(runs["11.3.1"], run_dir(tmp_path / "selfcheck-run"), "--out", tmp_path / "merged-selfcheck",
                   "--baseline", "11.3.1", "--candidate", "12.1.2", "--gate-on", "setup")
    assert failed.returncode == 1 and "session failure:" in failed.stdout and "broken-selfcheck" in failed.stdout, \
        failed.stdout + failed.stderr

    # the merge's report.html in headless chromium: a failing selfcheck cell (real), the gate line, every chart
    if chromium.find() is not None:
        merged_dir = tmp_path / "merged-selfcheck"
        records = json.loads((merged_dir / "report.json").read_text())
        broken = [r for r in records if r["scenario"] == "broken-selfcheck"]
        assert broken and broken[0]["outcome"] == "fail" and broken[0]["observations"].get("selfcheck"), broken
        verdict = json.loads((merged_dir / "gate.json").read_text())["verdict"]
        gate_line = next(text for text in failed.stdout.splitlines() if text.startswith("gate "))
        assert verdict in gate_line
        chromium.check_report(merged_dir / "report.html", records, gate_line, tmp_path / "merged.png")
