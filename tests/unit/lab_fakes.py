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


FAKE_FORGEJO = f"""#!{sys.executable}
import sys
args = sys.argv[5:]  # after --config X --work-path Y
if args[:1] == ["web"]:
    print("fatal: listen tcp: cannot assign requested address", flush=True)
    sys.exit(1)
if args[:3] == ["forgejo-cli", "actions", "register"]:
    secret = sys.stdin.read().strip()
    print("2026/12/01 02:51:40 ...s/setting/setting.go:188:loadRunModeFrom() [E] You are running Forgejo using "
          "the root user, and have purposely chosen to skip built-in protections around this.")
    print(secret[:4].encode().hex() + "-4141-4141-4141-414141414141")
"""


def fake_forgejo_binary(directory: Path) -> Binary:
    """A fake ``forgejo-13.0.5``: the CLI calls succeed, ``web`` exits at once with a fatal line."""
    path = directory / "forgejo-13.0.5"
    path.write_text(FAKE_FORGEJO)
    path.chmod(0o755)
    return Binary("forgejo", Version(13, 0, 5), path, "test")


def private_runtime(tmp_path: Path, monkeypatch: object) -> Path:
    """Our dockerd's runtime dir, lock and process tag private to the test (the machine's shared
    dockerd is never touched) and a cache dir (labs) of its own."""
    from harness.lab import engine

    monkeypatch.setattr(engine, "runtime_dir", lambda: tmp_path / "run")  # type: ignore[attr-defined]
    monkeypatch.setattr(engine, "SHARED_TAG", f"test-dockerd-{tmp_path.name}")  # type: ignore[attr-defined]
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path / "cache"))  # type: ignore[attr-defined]
    (tmp_path / "cache" / "labs").mkdir(parents=True)
    return tmp_path / "run"


def fake_dockerd(tmp_path: Path, run: Path, lab_id: str) -> int:
    """A process standing in for our dockerd (carrying its tag, named in its pid file), with ``lab_id`` a user."""
    from harness import procs
    from harness.lab import engine

    (run / "users").mkdir(parents=True, exist_ok=True)
    pid = procs.spawn([sys.executable, "-c", "import time; time.sleep(300)"], log_file=run / "dockerd.log",
                      lab_id=engine.SHARED_TAG)
    (run / "dockerd.pid").write_text(str(pid))
    (run / "users" / lab_id).write_text("1")
    return pid


def stand_in(path: Path, script: str) -> str:
    """An executable at ``path`` running ``script`` (a stand-in for a tool this machine lacks or a test fakes)."""
    path.write_text(script)
    path.chmod(0o755)
    return str(path)
