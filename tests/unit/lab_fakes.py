"""A fake forgejo-runner binary for unit tests: ``daemon`` prints the declare and poller lines and
sleeps; ``cache-server`` listens on its configured port; ``create-runner-file`` writes ``.runner``."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.runners.binaries import Binary
from harness.runners.process import LabRunner, labels_for
from harness.versions import Version

V12 = Version(12, 1, 2)

FAKE_RUNNER = f"""#!{sys.executable}
import socket, sys, time, yaml
args = sys.argv[1:]
config = yaml.safe_load(open(args[1])) if args[:1] == ["-c"] else {{}}
command = args[2] if len(args) > 2 else ""
if command == "daemon":
    if "fail" in open(args[1]).read():
        print("level=fatal msg=\\"cannot load .runner\\"", flush=True)
        sys.exit(1)
    print("runner: declared successfully", flush=True)
    print("[poller 0] launched", flush=True)
    time.sleep(300)
elif command == "cache-server":
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config["cache"]["host"], config["cache"]["port"]))
    sock.listen()
    time.sleep(300)
elif command == "create-runner-file":
    open(".runner", "w").write("{{}}")
"""


def fake_runner_binary(directory: Path) -> Binary:
    """The fake ``forgejo-runner-12.1.2`` in ``directory``."""
    path = directory / "forgejo-runner-12.1.2"
    path.write_text(FAKE_RUNNER)
    path.chmod(0o755)
    return Binary("forgejo-runner", V12, path, "test")


def free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fake_lab_runner(tmp_path: Path, lab_id: str, name: str = "regress-12.1.2", **kw: object) -> LabRunner:
    """A LabRunner on the fake binary, listening on loopback (nothing started)."""
    defaults: dict[str, object] = dict(
        name=name, binary=fake_runner_binary(tmp_path), dir=tmp_path / "lab" / "runners" / name.removeprefix("regress-"),
        instance_url="http://127.0.0.1:9", labels=labels_for(V12, None), lab_id=lab_id, capacity=1,
        bridge_ip="127.0.0.1", docker_host=None, cache_port=free_loopback_port(), proxy_port=free_loopback_port(),
    )
    defaults.update(kw)
    return LabRunner(**defaults)  # type: ignore[arg-type]
