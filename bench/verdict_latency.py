"""Verdict latency: the server says the job is done → the test has its verdict (median of N runs).

Two clocks, one run: (a) ``job_end_to_verdict``: the runner's last job-log line (sub-second UTC
timestamp, sent with the final result) to the verdict; (b) ``verdict_latency``: the first poll
that saw the run done to the verdict (the suite's own work). Goal: (a) median ≤ 1 s.

    python bench/verdict_latency.py [--runs 7] [--scenario native-checkout] [--runner-version 12.1.2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from pathlib import Path

from harness.cell import run_cell
from harness.lab import booting
from harness.lab import lab as labs
from harness.runners import binaries
from harness.scenarios import load
from harness.target import open_lab
from harness.versions import Version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--scenario", default="native-checkout")
    parser.add_argument("--runner-version", default="12.1.2")
    args = parser.parse_args()
    forgejo = binaries.resolve("forgejo", binaries.available("forgejo")[-1])
    runner = binaries.resolve("forgejo-runner", Version.parse(args.runner_version))
    scenario = load(args.scenario)
    lab = booting.boot(f"bench-{uuid.uuid4().hex[:6]}", forgejo, [labs.RunnerSpec(runner)])
    end_to_verdict, poll_to_verdict = [], []
    try:
        target = open_lab(lab)
        handle = next(iter(target.runners.values()))
        out = Path(tempfile.gettempdir()) / "regress-bench-unused"  # evidence="never": nothing is written
        for i in range(args.runs):
            result = run_cell(target, scenario, handle, out / str(i), evidence="never")
            if not result.passed:
                raise SystemExit(f"run {i} did not pass: {result.error or (result.verdict and result.verdict.table())}")
            end_to_verdict.append(result.timings["job_end_to_verdict"])
            poll_to_verdict.append(result.timings["verdict_latency"])
    finally:
        lab.down()
    print(f"{args.scenario} on runner {args.runner_version}, {args.runs} runs")
    print(f"  job end (last log line) → verdict: median {statistics.median(end_to_verdict):.2f}s "
          f"(min {min(end_to_verdict):.2f}, max {max(end_to_verdict):.2f}) — goal ≤ 1 s")
    print(f"  done seen by poll → verdict:       median {statistics.median(poll_to_verdict):.2f}s")


if __name__ == "__main__":
    main()
