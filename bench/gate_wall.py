"""The gate's wall time and the watch's cost on the server, in one run on this machine.

1. Gate ratio: the README's gate (``pytest -m regression --baseline B --candidate C``, every regression
   scenario × 2 versions) as a user runs it, pytest start → exit (lab boot and lab down included), serial and with
   ``--lanes N``; ÷ (lab boot + the longest cell alone), both measured in this run. Goal ≤ 1.5.
2. Watch economy: one job of ``--long`` seconds (a host job that sleeps): requests (push → done seen) ÷
   watch seconds (goal ≤ 1.0), next to the verdict latency (the runner's last job-log line → verdict,
   and the first poll that saw the job done → verdict; goal ≤ 1 s) over ``--runs`` short jobs.

    python bench/gate_wall.py [--baseline 11.3.1] [--candidate 12.1.2] [--lanes 3] [--long 30] [--runs 5]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

from harness.cell import run_cell
from harness.lab import booting
from harness.lab import lab as labs
from harness.observe import cpu as cpu_obs
from harness.runners import binaries
from harness.scenarios import load, load_all
from harness.target import open_lab
from harness.versions import Version

ROOT = Path(__file__).resolve().parents[1]
LONG_WORKFLOW = """name: bench-long
on: [push]
jobs:
  bench-long:
    runs-on: __RUNS_ON__
    steps:
      - run: echo start
      - run: sleep {seconds}
"""


def gate_command(baseline: str, candidate: str, lanes: int, evidence: Path) -> list[str]:
    """The README's gate command line (evidence kept out of the work tree)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-m", "regression", f"--baseline={baseline}",
           f"--candidate={candidate}", f"--evidence-dir={evidence}"]
    return cmd + ([f"--lanes={lanes}"] if lanes > 1 else [])


def machine_busy() -> float:
    """CPU seconds every core of this machine spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / cpu_obs.TICKS


def part(proc: psutil.Process) -> str | None:
    """Which part of the gate a process is (None: not one of the gate's own)."""
    try:
        exe = Path((proc.cmdline() or [proc.name()])[0]).name
    except psutil.Error:
        return None
    if exe.startswith("forgejo-runner"):
        return "runners"
    if exe.startswith("forgejo"):
        return "forgejo"
    if exe in ("dockerd", "containerd", "containerd-shim-runc-v2", "docker-proxy", "buildkitd"):
        return "docker"
    return None


class CpuAccount:
    """CPU seconds of one gate run: the machine's busy time, the pytest process itself (the harness), and
    Forgejo, the runners and Docker's daemons (each with the children it reaped), sampled every 0.5 s."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[tuple[int, float], tuple[str, float]] = {}
        self.base: dict[tuple[int, float], float] = {}
        self.harness = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.busy0 = machine_busy()
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                self.base[(proc.pid, proc.create_time())] = _total(proc.cpu_times())
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for proc in psutil.process_iter():
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    if proc.pid == self.pid:
                        self.harness = times.user + times.system
                    name = part(proc)
                    if name:
                        self.seen[(proc.pid, proc.create_time())] = (name, _total(times))

    def stop(self) -> dict[str, float]:
        """Seconds per part, ``harness`` (the pytest process), ``machine`` (all busy) and ``rest``."""
        self._stop.set()
        self._thread.join()
        parts: dict[str, float] = collections.Counter()
        for key, (name, total) in self.seen.items():
            parts[name] += total - self.base.get(key, 0.0)
        parts["harness"] = self.harness
        parts["machine"] = machine_busy() - self.busy0
        parts["rest"] = parts["machine"] - sum(v for k, v in parts.items() if k != "machine")
        return dict(parts)


def _total(times: psutil._common.pcputimes) -> float:  # own and reaped children
    return times.user + times.system + times.children_user + times.children_system


def timed_gate(cmd: list[str]) -> tuple[float, str, dict[str, float]]:
    """Wall time of one gate run, its last lines and its CPU account."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))
    account = CpuAccount(proc.pid)
    out, _ = proc.communicate()
    wall = time.monotonic() - t0
    cpu = account.stop()
    tail = "\n".join(out.strip().splitlines()[-3:])
    if proc.returncode != 0:
        raise SystemExit(f"the gate failed (exit {proc.returncode}): {tail}")
    return wall, tail, cpu


def cells_alone(baseline: Version, candidate: Version) -> tuple[float, dict[str, float]]:
    """Lab boot, then each regression cell alone on it: (boot seconds, cell → seconds)."""
    forgejo = binaries.resolve("forgejo", binaries.available("forgejo")[-1])
    specs = [labs.RunnerSpec(binaries.resolve("forgejo-runner", v)) for v in (baseline, candidate)]
    t0 = time.monotonic()
    with booting.boot(f"bench-{uuid.uuid4().hex[:6]}", forgejo, specs) as lab:
        boot = time.monotonic() - t0
        target = open_lab(lab)
        out = Path(tempfile.mkdtemp(prefix="regress-bench-"))
        seconds = {}
        for scenario in [s for s in load_all() if s.expect.marker == "regression"]:
            for key, handle in target.runners.items():
                t = time.monotonic()
                result = run_cell(target, scenario, handle, out / f"{scenario.name}-{key}", evidence="never")
                seconds[f"{scenario.name}-{key}"] = time.monotonic() - t
                if not (result.passed or result.known_bug_reproduced()):  # a known bug is what the gate expects
                    raise SystemExit(f"{scenario.name} on {key} did not pass: {result.reason}")
    return boot, seconds


def economy(version: Version, long_seconds: int, runs: int) -> None:
    """Requests per watch second on a long job; verdict latency on short ones."""
    forgejo = binaries.resolve("forgejo", binaries.available("forgejo")[-1])
    root = Path(tempfile.mkdtemp(prefix="regress-bench-scenario-"))
    (root / "bench-long").mkdir()
    (root / "bench-long" / "workflow.yml").write_text(LONG_WORKFLOW.format(seconds=long_seconds))
    (root / "bench-long" / "expect.yml").write_text("kind: native\nmarker: regression\njob: success\n")
    spec = labs.RunnerSpec(binaries.resolve("forgejo-runner", version))
    with booting.boot(f"bench-{uuid.uuid4().hex[:6]}", forgejo, [spec]) as lab:
        target = open_lab(lab)
        handle = next(iter(target.runners.values()))
        out = Path(tempfile.mkdtemp(prefix="regress-bench-"))
        result = run_cell(target, load("bench-long", root), handle, out / "long", evidence="never")
        req = result.observations["requests"]
        print(f"watch economy, one {long_seconds}s job on runner {version}: {req['push_to_done_seen']} requests over "
              f"{req['watch_seconds']:.1f}s push → done seen = {req['per_second']:.2f} requests/s (goal ≤ 1.0); "
              f"{result.outcome}")
        end, poll = [], []
        for i in range(runs):
            short = run_cell(target, load("native-checkout"), handle, out / str(i), evidence="never")
            end.append(short.timings.get("job_end_to_verdict", float("nan")))
            poll.append(short.timings["verdict_latency"])
        print(f"verdict latency over {runs} native-checkout jobs: job's last log line → verdict median "
              f"{statistics.median(end):.2f}s (max {max(end):.2f}); done seen → verdict median "
              f"{statistics.median(poll):.2f}s (goal ≤ 1 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="11.3.1")
    parser.add_argument("--candidate", default="12.1.2")
    parser.add_argument("--lanes", type=int, default=3)
    parser.add_argument("--long", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-economy", action="store_true")
    args = parser.parse_args()
    base, cand = Version.parse(args.baseline), Version.parse(args.candidate)
    boot, alone = cells_alone(base, cand)
    longest = max(alone, key=alone.__getitem__)
    floor = boot + alone[longest]
    print(f"lab boot {boot:.1f}s; cells alone: " + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(alone.items())))
    print(f"floor = boot + longest cell ({longest}) = {floor:.1f}s; cells one after another would be "
          f"{boot + sum(alone.values()):.1f}s")
    evidence = Path(tempfile.mkdtemp(prefix="regress-bench-evidence-"))
    for lanes in sorted({1, args.lanes}):
        wall, tail, cpu = timed_gate(gate_command(args.baseline, args.candidate, lanes, evidence))
        print(f"gate, lanes={lanes}: {wall:.1f}s wall (pytest start → exit) → ratio {wall / floor:.2f} (goal ≤ 1.5)")
        print("  " + tail.replace("\n", "\n  "))
        cores = os.cpu_count() or 1
        print(f"  CPU: the machine was busy {cpu['machine']:.1f}s of {cores} × {wall:.1f}s "
              f"({cpu['machine'] / (cores * wall):.0%}); harness (the pytest process) {cpu['harness']:.1f}s, "
              + ", ".join(f"{k} {cpu.get(k, 0.0):.1f}s" for k in ("forgejo", "runners", "docker"))
              + f", the rest (job containers, git, kernel, …) {cpu['rest']:.1f}s")
        parts = cpu["machine"] - cpu["harness"]
        print(f"  bound: without the harness's own CPU the parts needed {parts:.1f}s of CPU, so no schedule on "
              f"{cores} cores finishes under {parts / cores:.1f}s → ratio ≥ {parts / cores / floor:.2f} here")
    if not args.skip_economy:
        economy(cand, args.long, args.runs)


if __name__ == "__main__":
    main()
