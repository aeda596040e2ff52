"""Lab orchestration overhead: ``lab up`` wall time ÷ the sum of its unavoidable parts, in one run.

Unavoidable parts, each measured alone in this same run: ``forgejo migrate`` on a fresh database,
``forgejo web`` start to ``/api/v1/version`` answering, and each runner's start to its declare
line and first poll. Goal: ratio ≤ 1.5 on a prepared machine. Needs the lab binaries.

Each figure is the median of ``--rounds`` rounds (one ``lab up`` + ``down`` and one of each part per
round), so one slow moment of a shared machine does not decide the ratio; every round is printed.
Besides the goal's figure (boot to every runner polling) it prints when the boot returned (the
actions seeded too), the start of a private runner (``Lab.private_runner``) and the wall time of
the ``python -m harness lab up`` command as a user runs it (interpreter start, imports and the
binaries' ``--version`` checks included).

    python bench/lab_boot.py [--rounds 5] [--forgejo-version 13.0.5] [--runner-version 11.3.1 ...]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness.lab import lab as labs
from harness.lab.forgejo import ForgejoServer, ZombieSettings, free_port
from harness.runners import binaries
from harness.runners.binaries import Binary
from harness.versions import Version


def lab_round(forgejo: Binary, specs: list[labs.RunnerSpec]) -> tuple[float, float, dict[str, float], float]:
    """``lab up`` on a prepared machine: to every runner polling, and to its return (actions seeded
    too); then each runner restarted alone, and one private runner started and stopped (its
    registration, config, cache server, firewall jumps and declare)."""
    t0 = time.monotonic()
    with labs.boot(f"bench-{uuid.uuid4().hex[:6]}", forgejo, specs) as lab:  # down on exit; leaks raise
        full = time.monotonic() - t0
        polling = lab.boot_phases["runners_polling"]
        runner_parts = {}
        for key, runner in lab.runners.items():
            runner.stop()
            t = time.monotonic()
            runner.start()
            runner.wait_online()
            runner_parts[key] = time.monotonic() - t
        t = time.monotonic()
        with lab.private_runner(next(iter(lab.runners))):
            private = time.monotonic() - t
    return polling, full, runner_parts, private


def cli_round(forgejo: Binary, specs: list[labs.RunnerSpec]) -> float:
    """Wall time of ``python -m harness lab up`` (then ``lab down``)."""
    lab_id = f"bench-cli-{uuid.uuid4().hex[:6]}"
    cmd = [sys.executable, "-m", "harness", "lab"]
    args = ["--lab", lab_id, "--forgejo-version", str(forgejo.version)]
    for spec in specs:
        args += ["--runner-version", str(spec.binary.version)]
    t = time.monotonic()
    try:
        up = subprocess.run([*cmd, "up", *args], capture_output=True, text=True, timeout=600, check=False)
        wall = time.monotonic() - t
    finally:
        down = subprocess.run([*cmd, "down", "--lab", lab_id], capture_output=True, text=True, timeout=600,
                              check=False)
    if up.returncode != 0 or down.returncode != 0:
        raise SystemExit(f"lab up/down by the CLI failed:\n{up.stdout}{up.stderr}{down.stdout}{down.stderr}")
    return wall


def forgejo_round(forgejo: Binary) -> tuple[float, float]:
    """``forgejo migrate`` and ``web`` → ``/api/v1/version``, alone, on a fresh work dir."""
    work = Path(tempfile.mkdtemp(prefix="regress-bench-"))
    server = ForgejoServer(forgejo, work / "forgejo", "127.0.0.1", free_port("127.0.0.1"), "bench-alone",
                           ZombieSettings())
    try:
        server.configure()
        t = time.monotonic()
        server.migrate()
        migrate = time.monotonic() - t
        t = time.monotonic()
        server.start()
        server.wait_ready()
        web = time.monotonic() - t
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return migrate, web


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--forgejo-version")
    parser.add_argument("--runner-version", action="append")
    args = parser.parse_args()
    forgejo_version = Version.parse(args.forgejo_version) if args.forgejo_version else binaries.available("forgejo")[-1]
    runner_versions = [Version.parse(v) for v in args.runner_version] if args.runner_version else \
        binaries.available("forgejo-runner")
    forgejo = binaries.resolve("forgejo", forgejo_version)
    specs = [labs.RunnerSpec(binaries.resolve("forgejo-runner", v)) for v in runner_versions]

    ups: list[float] = []
    fulls: list[float] = []
    clis: list[float] = []
    migrates: list[float] = []
    webs: list[float] = []
    runners: dict[str, list[float]] = {}
    privates: list[float] = []
    print(f"Forgejo {forgejo_version}, runners {', '.join(map(str, runner_versions))}; {args.rounds} rounds")
    for n in range(1, args.rounds + 1):
        up, full, runner_parts, private = lab_round(forgejo, specs)
        privates.append(private)
        migrate, web = forgejo_round(forgejo)
        cli = cli_round(forgejo, specs)
        ups.append(up)
        fulls.append(full)
        clis.append(cli)
        migrates.append(migrate)
        webs.append(web)
        for key, seconds in runner_parts.items():
            runners.setdefault(key, []).append(seconds)
        parts = migrate + web + sum(runner_parts.values())
        runs = ", ".join(f"{s:.2f}" for s in runner_parts.values())
        print(f"  round {n}: lab up {up:.2f}s (returned {full:.2f}s, command {cli:.2f}s), parts {parts:.2f}s "
              f"(migrate {migrate:.2f}, web {web:.2f}, runners {runs}), ratio {up / parts:.2f}; private runner "
              f"{private:.2f}s")

    med = statistics.median
    parts = med(migrates) + med(webs) + sum(med(v) for v in runners.values())
    print("medians:")
    print(f"  lab up (to every runner polling): {med(ups):.2f}s")
    print(f"  lab up returned (actions seeded): {med(fulls):.2f}s")
    print(f"  `python -m harness lab up`:       {med(clis):.2f}s")
    print(f"  forgejo migrate alone:            {med(migrates):.2f}s")
    print(f"  forgejo web → /api/v1/version:    {med(webs):.2f}s")
    for key, values in runners.items():
        print(f"  runner {key} start → declared:    {med(values):.2f}s")
    print(f"  a private runner → polling:       {med(privates):.2f}s")
    print(f"  sum of unavoidable parts:         {parts:.2f}s")
    print(f"overhead ratio: {med(ups) / parts:.2f} (goal ≤ 1.5; to every runner polling)")
    print(f"  to the boot returning:           {med(fulls) / parts:.2f}")
    print(f"  to the command returning:        {med(clis) / parts:.2f}")


if __name__ == "__main__":
    main()
