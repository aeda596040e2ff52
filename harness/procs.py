"""Detached daemons and the processes they leave: start, track, stop, sweep.

Every process the lab starts carries ``REGRESS_LAB_ID=<id>`` in its environment, which children
inherit, so a sweep finds what a runner left behind (host steps in their own process groups, a post
step's node process outliving a killed runner) without relying on parentage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

LAB_ENV = "REGRESS_LAB_ID"


def spawn(cmd: Sequence[str], *, log_file: Path, lab_id: str, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start a detached daemon (own session, stdio to ``log_file``); returns its PID."""
    full_env = {**(env if env is not None else os.environ), LAB_ENV: lab_id}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(list(cmd), stdin=devnull, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                cwd=cwd, start_new_session=True, close_fds=True)
    return proc.pid


def alive(pid: int | None) -> bool:
    """True when ``pid`` runs and is not a zombie."""
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass


def stop(pid: int | None, *, budget: float, sig: int = signal.SIGTERM) -> str:
    """Send ``sig`` (then SIGKILL after ``budget`` seconds); returns how it ended."""
    if not alive(pid):
        return "not running"
    assert pid is not None
    try:
        proc = psutil.Process(pid)
        proc.send_signal(sig)
        if proc.status() == psutil.STATUS_STOPPED:
            proc.send_signal(signal.SIGCONT)
        proc.wait(timeout=budget)
        outcome = "stopped"
    except psutil.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(psutil.TimeoutExpired):
            proc.wait(timeout=5)
        outcome = f"killed after {budget:g}s"
    except psutil.NoSuchProcess:
        outcome = "stopped"
    _reap(pid)
    return outcome


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return marker in environ.split(b"\0")


def carries_tag(pid: int | None, lab_id: str) -> bool:
    """True when ``pid`` runs (not a zombie) with ``REGRESS_LAB_ID=<lab_id>`` in its environment: a pid
    read from a file is checked this way before it is signalled (the pid may have been reused)."""
    return bool(pid) and alive(pid) and _environ_has(pid or 0, f"{LAB_ENV}={lab_id}".encode())


def tagged(lab_id: str) -> list[psutil.Process]:
    """Every live process whose environment carries this lab id."""
    found = []
    marker = f"{LAB_ENV}={lab_id}".encode()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            if _environ_has(proc.pid, marker) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def sweep(lab_id: str, *, budget: float = 5.0) -> list[str]:
    """Kill every process tagged with the lab id; returns what was killed (``name[pid]``)."""
    victims = tagged(lab_id)
    for proc in victims:
        try:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(victims, timeout=budget)
    for proc in still:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(still, timeout=budget)
    names = []
    for proc in victims:
        try:
            names.append(f"{proc.name()}[{proc.pid}]")
        except psutil.Error:
            names.append(f"[{proc.pid}]")
        _reap(proc.pid)
    return names
