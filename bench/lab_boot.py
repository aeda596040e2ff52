"""Lab orchestration overhead: ``lab up`` wall time ÷ the sum of its unavoidable parts, in one run.

Unavoidable parts, each measured alone in this same run: ``forgejo migrate`` on a fresh database,
``forgejo web`` start to ``/api/v1/version`` answering, and each runner's start to its declare
line and first poll. Goal: ratio ≤ 1.5 on a prepared machine. Needs the lab binaries.

    python bench/lab_boot.py [--forgejo-version 13.0.5] [--runner-version 11.3.1 --runner-version 12.1.2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from harness.lab import lab as labs
from harness.lab.forgejo import ForgejoServer, ZombieSettings, free_port
from harness.runners import binaries
from harness.versions import Version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--forgejo-version")
    parser.add_argument("--runner-version", action="append")
    args = parser.parse_args()
    forgejo_version = Version.parse(args.forgejo_version) if args.forgejo_version else binaries.available("forgejo")[-1]
    runner_versions = [Version.parse(v) for v in args.runner_version] if args.runner_version else \
        binaries.available("forgejo-runner")
    forgejo = binaries.resolve("forgejo", forgejo_version)
    specs = [labs.RunnerSpec(binaries.resolve("forgejo-runner", v)) for v in runner_versions]

    # 1. lab up, end to end (prepared machine; to every runner polling)
    lab_id = f"bench-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    lab = labs.boot(lab_id, forgejo, specs)
    up = time.monotonic() - t0
    try:
        # 2. each runner: start → declare + poll, alone (the lab's runner, restarted)
        runner_parts = {}
        for key, runner in lab.runners.items():
            runner.stop()
            t = time.monotonic()
            runner.start()
            runner.wait_online()
            runner_parts[key] = time.monotonic() - t
    finally:
        lab.down()

    # 3. forgejo migrate and web → /api/v1/version, alone, on a fresh work dir
    work = Path(tempfile.mkdtemp(prefix="regress-bench-"))
    server = ForgejoServer(forgejo, work / "forgejo", "127.0.0.1", free_port("127.0.0.1"), lab_id + "-alone",
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

    parts = migrate + web + sum(runner_parts.values())
    print(f"lab up (Forgejo {forgejo_version}, runners {', '.join(map(str, runner_versions))}): {up:.2f}s")
    print(f"  forgejo migrate alone:            {migrate:.2f}s")
    print(f"  forgejo web → /api/v1/version:    {web:.2f}s")
    for key, seconds in runner_parts.items():
        print(f"  runner {key} start → declared:    {seconds:.2f}s")
    print(f"  sum of unavoidable parts:         {parts:.2f}s")
    print(f"overhead ratio: {up / parts:.2f} (goal ≤ 1.5)")


if __name__ == "__main__":
    main()
