"""The product flows end to end on real labs: the upgrade gate, an existing instance, re-run, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.lab.lab import Lab, lab_dir_for

pytestmark = [pytest.mark.lab, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]


def run_pytest(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "tests/scenarios", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=1500, check=False,
                          env={**os.environ, **(env or {})})
    problems = [line for line in proc.stdout.splitlines() if "could not be set up" in line or "Error" in line]
    if problems:  # repeated at the end: assertion messages keep only the tail of the output
        proc.stdout = proc.stdout + "\n(problems seen above:)\n" + "\n".join(problems[:20])
    return proc


def test_gate_exits_zero_when_nothing_regressed(binaries_present, tmp_path):
    proc = run_pytest("-m", "regression", "--baseline", "11.3.1", "--candidate", "12.1.2",
                      "--evidence-dir", str(tmp_path))
    out = proc.stdout
    assert "upgrade gate: 11.3.1 → 12.1.2" in out, out[-3000:]
    assert "gate passed (nothing regressed)" in out, out[-3000:]
    assert proc.returncode == 0, out[-3000:]
    assert "| qemu-buildx |" in out and "| native-checkout |" in out and "| docker-checkout |" in out


def test_gate_fails_on_a_real_regression_and_the_bundle_reruns(binaries_present, tmp_path):
    proc = run_pytest("-m", "regression", "-k", "docker-checkout", "--baseline", "11.3.1", "--candidate", "12.1.2",
                      "--runner-without", "11.3.1=git", "--runner-without", "12.1.2=git",
                      "--evidence-dir", str(tmp_path))
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    assert "regression: docker-checkout — 11.3.1 passed, 12.1.2 failed" in out, out[-3000:]
    assert "signature:worktree-error" in out
    bundles = [p.parent for p in tmp_path.rglob("manifest.json") if "12.1.2" in p.parent.name]
    assert len(bundles) == 1, bundles
    bundle = bundles[0]
    repro = (bundle / "repro.md").read_text()
    assert repro.startswith("class: step-failed — 'Set up job' failed and the runner reported it"), repro[:300]
    assert "FAIL [step-failed]" in out and "git worktree add error" in repro
    for needed in ("## What was run", "## Expected", "## Observed", "## How to re-run", "worktree"):
        assert needed in repro, needed
    for name in ("job.log", "runner.log", "job-view.json", "api-transcript.jsonl", "workflow.yml",
                 "reproducer/setup.sh", "reproducer/runner-config.yaml"):
        assert (bundle / name).is_file(), name
    rerun = subprocess.run([sys.executable, "-m", "harness", "rerun", str(bundle)], capture_output=True, text=True,
                           cwd=ROOT, timeout=900, check=False)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-2000:]
    assert "same verdict" in rerun.stdout


def runner_files(runner_dir: Path) -> dict[str, float]:
    """Every file under a runner's dir with its mtime (what the suite might have written there)."""
    return {str(p.relative_to(runner_dir)): p.stat().st_mtime for p in runner_dir.rglob("*") if p.is_file()}


def stand_ins(bin_dir: Path, pid: int, log: Path) -> None:
    """A stand-in ``systemctl`` (the unit's MainPID is the lab runner's) and ``journalctl`` (its log file): this
    machine has no systemd."""
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(
        "#!/bin/sh\n"
        "[ \"$1 $2 $3 $4 $5\" = 'show -p MainPID --value forgejo-runner' ] || exit 4\n"
        f"echo {pid}\n")
    (bin_dir / "journalctl").write_text(
        "#!/bin/sh\n"
        "[ \"$1 $2\" = '-u forgejo-runner' ] || exit 4\n"
        f"cat {log}\n")
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)


def test_existing_instance_and_no_secret_anywhere(binaries_present, tmp_path):
    """The lab's runner addressed as an admin's own: its label, its process as a systemd unit (stand-in
    systemctl and journalctl), observed from /proc without a signal; no secret anywhere, nothing written into its
    directories."""
    lab_id = f"existing-{uuid.uuid4().hex[:6]}"
    up = subprocess.run([sys.executable, "-m", "harness", "lab", "up", "--lab", lab_id, "--runner-version", "12.1.2"],
                        capture_output=True, text=True, cwd=ROOT, timeout=900, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    lab = Lab.load(lab_dir_for(lab_id))
    try:
        runner = lab.runners["12.1.2"]
        secrets = {lab.token(), lab.password(), runner.secret or json.loads((runner.dir / ".runner").read_text())["token"]}
        secrets |= {line.split(":", 1)[1].strip() for line in (runner.dir / "cache-server.yaml").read_text().splitlines()
                    if line.strip().startswith("secret:")}
        secrets = {s for s in secrets if s}
        labels = [f"12.1.2:{kind}={label.split(':', 1)[0]}" for kind, label in runner.labels.items()]
        args = ["-m", "regression or selfcheck", "--forgejo-url", lab.forgejo.url,
                "--forgejo-token-file", str(lab.forgejo.token_file), "--forgejo-user", "regress-admin",
                "--forgejo-password-file", str(lab.forgejo.password_file), "--evidence", "always",
                "--evidence-dir", str(tmp_path / "evidence"), "--junitxml", str(tmp_path / "junit.xml"), "-rs", "-v",
                "--runner-process", "12.1.2=unit:forgejo-runner"]
        for label in labels:
            args += ["--runner-label", label]
        stand_ins(tmp_path / "bin", runner.verified_pid(), runner.log_file)
        before = runner_files(runner.dir)
        proc = run_pytest(*args, env={"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        assert "test_scenario[qemu-buildx-12.1.2] PASSED" in out
        assert "test_scenario[docker-checkout-12.1.2] PASSED" in out
        assert "only lab runners allow" in out  # runner-control selfchecks are never run on foreign runners
        for scenario in ("native-checkout", "docker-checkout", "qemu-buildx"):
            row = next(line for line in out.splitlines() if line.startswith(f"| {scenario}"))
            assert "| pass" in row and "(existing runner)" in row and "cpu=-" not in row and "cache+=-" not in row, row
            assert "observation-unavailable" not in row, row  # the runner log came from the unit's journal
        report_file = next((tmp_path / "evidence").glob("*/report.json"))
        records = json.loads(report_file.read_text())
        observed = [r for r in records if r["outcome"] == "pass" and r["scenario"] != "leftover-container"]
        for record in observed:
            seen = record["observations"]
            assert seen["existing_runner"]["name"] == runner.name and seen["existing_runner"]["source"].startswith(
                "unit forgejo-runner"), seen["existing_runner"]
            assert seen["cpu"] and "store_growth_mb" in seen and seen["diagnose"].get("stores"), record["scenario"]
            repro = (report_file.parent / record["bundle"] / "repro.md").read_text()  # relative to its run
            assert "## Your runner (--runner-process)" in repro and "diagnose after the cell" in repro
        after = runner_files(runner.dir)
        stores = ("work/", "cache/", "home/", "runner.log", "cache-server.log")  # the runner's own writing
        new = sorted(p for p in set(after) - set(before) if not p.startswith(stores))
        assert new == [], f"the suite wrote into the runner's dir: {new}"
        assert not (runner.dir / "activity").exists()  # the overlap ledger lives in the suite's cache now
        junit = (tmp_path / "junit.xml").read_text()
        assert 'name="runner_version" value="12.1.2"' in junit
        written = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert len(written) > 20
        for secret in secrets:
            assert secret not in out, "a secret reached the terminal"
            for path in written:
                assert secret not in path.read_text(errors="replace"), f"a secret reached {path}"
    finally:
        lab.down()


def test_config_axes_are_columns_and_unknown_keys_are_not_applicable(binaries_present, tmp_path):
    configs = ROOT / "examples" / "runner-configs"
    proc = run_pytest("-m", "regression", "-k", "native-checkout or qemu-buildx-12", "-rs",
                      "--runner-config", f"cacheoff={configs / 'cache-off.yaml'}",
                      "--runner-config", f"retry={configs / 'report-retry.yaml'}", "--evidence-dir", str(tmp_path))
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    header = next(line for line in out.splitlines() if line.startswith("| scenario |"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "scenario", "11.3.1", "11.3.1-cacheoff", "11.3.1-retry", "12.1.2", "12.1.2-cacheoff", "12.1.2-retry"]
    assert "n/a: runner.report_retry unknown to runner 11.3.1" in out
    qemu = [c.strip() for c in next(line for line in out.splitlines() if line.startswith("| qemu-buildx")).strip(
        "|").split("|")]
    assert "cache+=102.7MB" in qemu[4] and "cache+=0.0MB" in qemu[5], qemu  # cache on vs off, same version
    native = [c.strip() for c in next(line for line in out.splitlines() if line.startswith("| native-checkout")).strip(
        "|").split("|")]
    assert native[3].startswith("skipped"), native  # the n/a cell is in the table, as skipped with its reason
