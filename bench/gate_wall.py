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
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness.cell import run_cell
from harness.lab import lab as labs
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


def timed_gate(cmd: list[str]) -> tuple[float, str]:
    """Wall time of one gate run and its last lines."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=dict(os.environ))
    wall = time.monotonic() - t0
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    if proc.returncode != 0:
        raise SystemExit(f"the gate failed (exit {proc.returncode}): {tail}")
    return wall, tail


def cells_alone(baseline: Version, candidate: Version) -> tuple[float, dict[str, float]]:
    """Lab boot, then each regression cell alone on it: (boot seconds, cell → seconds)."""
    forgejo = binaries.resolve("forgejo", binaries.available("forgejo")[-1])
    specs = [labs.RunnerSpec(binaries.resolve("forgejo-runner", v)) for v in (baseline, candidate)]
    t0 = time.monotonic()
    with labs.boot(f"bench-{uuid.uuid4().hex[:6]}", forgejo, specs) as lab:
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
    with labs.boot(f"bench-{uuid.uuid4().hex[:6]}", forgejo, [spec]) as lab:
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
        wall, tail = timed_gate(gate_command(args.baseline, args.candidate, lanes, evidence))
        print(f"gate, lanes={lanes}: {wall:.1f}s wall (pytest start → exit) → ratio {wall / floor:.2f} (goal ≤ 1.5)")
        print("  " + tail.replace("\n", "\n  "))
    if not args.skip_economy:
        economy(cand, args.long, args.runs)


if __name__ == "__main__":
    main()
