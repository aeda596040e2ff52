"""What a heavy action costs the runner in "Set up job": refs × history × runner version × cold / warm /
two jobs at once (K=2), with the runner's CPU (its process tree and cache server, % of one core) in
each job's "Set up job" window.

Heavy stand-ins (``harness/faults/heavy_action.py``: N tags spread over a history of an ~800 KB
``dist/index.js``) are built once into the actions cache and seeded into a lab of its own. Per
(shape, version) a fresh private runner (empty action cache) runs, in order:

- cold: one job using action A;
- warm: the same workflow again (A is in the runner's action cache now);
- concurrent: two jobs at once, using B and C (both cold: v11 clones them one at a time behind its
  global mutex, v12 at once with a lock per repository).

Figures only, no verdict: this prints a table (markdown; with ``--repeat N`` the median seconds, their
range and the median CPU), the machine's core count and its load average before and after (other work
on a shared machine inflates the seconds; say so with them).

    python bench/heavy_actions.py [--runner-version 11.3.1 --runner-version 12.1.2] [--refs 100,3000]
        [--history small=20,large=400] [--delay 0 --bandwidth-kbps 0] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.faults.heavy_action import HeavySpec, heavy_repo
from harness.faults.slow_http import SlowHttpProxy
from harness.forgejo.models import Status
from harness.lab import lab as labs
from harness.lab.seed import seed_heavy
from harness.observe import cpu as cpu_obs
from harness.observe.heavy import OneRun, run_once
from harness.runners import binaries
from harness.target import open_lab, private_handle
from harness.versions import Version

ONE_JOB = """name: heavy-{mode}
on: [push]
jobs:
  heavy:
    runs-on: {label}
    steps:
      - uses: {prefix}{repo}@v1
"""
TWO_JOBS = """name: heavy-concurrent
on: [push]
jobs:
  first:
    runs-on: {label}
    steps:
      - uses: {prefix}{one}@v1
  second:
    runs-on: {label}
    steps:
      - uses: {prefix}{two}@v1
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner-version", action="append", default=[])
    parser.add_argument("--refs", default="100,3000", help="comma-separated ref counts")
    parser.add_argument("--history", default="small=20,large=400", help="name=commits, comma-separated")
    parser.add_argument("--bundle-kb", type=int, default=800)
    parser.add_argument("--delay", type=float, default=0.0, help="slow action server: seconds per request (0: none)")
    parser.add_argument("--bandwidth-kbps", type=float, default=0.0, help="slow action server: KB/s (0: unlimited)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per shape and version (a fresh runner each); the "
                        "table shows medians and the range of the seconds")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    return parser.parse_args(argv)


def cell(runs: list[OneRun]) -> str:
    """Per job (``+``-joined): the median seconds, their range over the repeats, the median CPU: ``7.4s (6.9–8.1) 88%``."""
    failed = [str(r.status) for r in runs if r.status is not Status.SUCCESS]
    if failed:
        return f"job {', '.join(failed)}"
    parts = []
    for job in range(len(runs[0].figures)):
        seconds = [r.figures[job].seconds for r in runs if r.figures[job].seconds is not None]
        cpu = [r.figures[job].cpu_pct for r in runs if r.figures[job].cpu_pct is not None]
        if not seconds:
            parts.append("n/a")
            continue
        spread = f" ({min(seconds):.1f}–{max(seconds):.1f})" if len(seconds) > 1 else ""
        parts.append(f"{statistics.median(seconds):.1f}s{spread}" + (f" {statistics.median(cpu):.0f}%" if cpu else ""))
    return " + ".join(parts)


def measure(target: Any, lab: labs.Lab, key: str, repos: list[str], prefix: str) -> dict[str, OneRun]:
    """cold, warm and concurrent on a fresh private runner of ``key``."""
    runs: dict[str, OneRun] = {}
    with contextlib.ExitStack() as stack:
        handle = private_handle(target, stack, key, lambda s: None)
        runner = handle.lab_runner
        assert runner is not None
        label = handle.runs_on("native")
        sampler = cpu_obs.CpuSampler(runner.pid, [runner.cache_pid]).start()
        stack.callback(sampler.stop)
        one = ONE_JOB.format(mode="one", label=label, prefix=prefix, repo=repos[0])
        two = TWO_JOBS.format(label=label, prefix=prefix, one=repos[1], two=repos[2])
        for mode, workflow in (("cold", one), ("warm", one), ("concurrent", two)):
            runs[mode] = run_once(target, label or "", workflow, f"bench-heavy-{mode}-{key}", sampler)
            with contextlib.suppress(Exception):
                target.client.delete_repo(*runs[mode].repo.split("/", 1))
    return runs


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    versions = [Version.parse(v) for v in args.runner_version] or [Version.parse("11.3.1"), Version.parse("12.1.2")]
    refs = [int(r) for r in args.refs.split(",")]
    history = [(n, int(c)) for n, c in (h.split("=") for h in args.history.split(","))]
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    shapes = {(r, name): HeavySpec(refs=r, commits=c, bundle_kb=args.bundle_kb) for r in refs for name, c in history}
    built = {k: heavy_repo(spec) for k, spec in shapes.items()}  # once per shape, in the actions cache
    forgejo = binaries.resolve("forgejo", binaries.available("forgejo")[-1])
    specs = [labs.RunnerSpec(binaries.resolve("forgejo-runner", v)) for v in versions]
    rows: list[dict[str, Any]] = []
    print("| refs | history | runner | cold: setup, CPU | warm | concurrent K=2: each job |")
    print("|---|---|---|---|---|---|", flush=True)
    with labs.boot(f"bench-heavy-{uuid.uuid4().hex[:6]}", forgejo, specs) as lab:
        target = open_lab(lab)
        proxy = SlowHttpProxy(target.url, args.delay, bandwidth=args.bandwidth_kbps * 1024 or None) \
            if args.delay or args.bandwidth_kbps else None
        prefix = (proxy.start().url + "/") if proxy else ""
        try:
            for (r, name), spec in shapes.items():
                repos = [f"regress-heavy/bench-{spec.key[:8]}-{x}" for x in "abc"]
                t0 = time.monotonic()
                seed_heavy(lab.client(), lab.forgejo.work / "data" / "repos", repos, spec, lab.dir / "heavy-seed.lock")
                seeded = time.monotonic() - t0
                for key in [str(v) for v in versions]:
                    repeats = []
                    for _ in range(args.repeat):
                        runs = measure(target, lab, key, repos, prefix)
                        repeats.append(runs)
                        rows.append({"refs": r, "history": name, "commits": spec.commits,
                                     "pack_mb": round(built[(r, name)].pack_bytes / 1e6, 1), "version": key,
                                     "seed_seconds": round(seeded, 2), "load": os.getloadavg()[0],
                                     **{mode: [f.to_json() for f in run.figures] for mode, run in runs.items()},
                                     **{f"{mode}_status": str(run.status) for mode, run in runs.items()}})
                    pack = round(built[(r, name)].pack_bytes / 1e6, 1)
                    print(f"| {r} | {name} ({spec.commits} commits, {pack} MB) | {key} | "
                          + " | ".join(cell([runs[mode] for runs in repeats]) for mode in ("cold", "warm", "concurrent"))
                          + " |", flush=True)
        finally:
            if proxy:
                proxy.stop()
    load_after = os.getloadavg()
    print(f"\nmeasured {started:%Y-%m-%d %H:%M} UTC, {args.repeat} run(s) each, on {os.cpu_count()} cores; "
          "load average (1/5/15 min) before "
          f"{'/'.join(f'{x:.1f}' for x in load_before)}, after {'/'.join(f'{x:.1f}' for x in load_after)}; "
          f"slow action server: {'none (loopback)' if not proxy else f'{args.delay:g}s, {args.bandwidth_kbps:g} KB/s'}")
    if args.json:
        args.json.write_text(json.dumps({"started": started.isoformat(), "cores": os.cpu_count(),
                                         "load_before": load_before, "load_after": load_after, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
