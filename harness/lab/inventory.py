"""Every lab dir on this machine (``lab list``) and the removal of those no longer running (``lab prune``).

A failed boot keeps its dir on purpose (the error points at the logs inside); so does a lab whose
session was killed before its clean-up. Prune removes them, after the same clean-up ``lab down``
does (firewall rules, Docker leftovers, stray processes), and never touches a lab that still runs.
"""

from __future__ import annotations

import contextlib
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from harness import procs
from harness.errors import HarnessError
from harness.paths import labs_dir

UP, STOPPED, FAILED_BOOT = "up", "stopped", "failed boot"


@dataclass(frozen=True)
class LabEntry:
    """One lab dir: its state, age and size."""

    id: str
    dir: Path
    state: str  # UP (processes of it run), STOPPED (lab.json, nothing runs) or FAILED_BOOT (no lab.json)
    age_hours: float
    size_bytes: int
    processes: int

    def describe(self) -> str:
        """``default  up (4 processes)  0.3 h  12.1 MB  /path``."""
        state = f"{self.state} ({self.processes} processes)" if self.state == UP else self.state
        return f"{self.id}  {state}  {self.age_hours:.1f} h  {self.size_bytes / 1e6:.1f} MB  {self.dir}"


def _size(directory: Path) -> int:
    """Bytes that removing the dir frees: a file hard-linked from elsewhere counts only when all its
    links are inside."""
    seen: dict[tuple[int, int], list[int]] = {}  # (dev, inode) → [size, links, links seen here]
    for path in directory.rglob("*"):
        with contextlib.suppress(OSError):
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                seen.setdefault((st.st_dev, st.st_ino), [st.st_size, st.st_nlink, 0])[2] += 1
    return sum(size for size, links, here in seen.values() if here >= links)


def inventory(root: Path | None = None, *, now: float | None = None) -> list[LabEntry]:
    """Every lab dir under ``root`` (default: the labs dir), oldest first."""
    root = root or labs_dir()
    now = time.time() if now is None else now
    entries = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        running = len(procs.tagged(directory.name))
        state = UP if running else STOPPED if (directory / "lab.json").is_file() else FAILED_BOOT
        age = max(0.0, (now - directory.stat().st_mtime) / 3600)
        entries.append(LabEntry(directory.name, directory, state, age, _size(directory), running))
    return sorted(entries, key=lambda e: -e.age_hours)


def prune(entries: list[LabEntry], *, older_than_hours: float = 0.0, dry_run: bool = False,
          notify: Callable[[str], None] = lambda s: None) -> list[str]:
    """Remove the dirs of labs that no longer run and are older than ``older_than_hours``; their ids.

    A stopped lab goes through ``Lab.down`` first (its firewall rules and Docker leftovers too); a
    lab whose session holds its lock (a pytest session booting it) is left alone.
    """
    from harness.lab.lab import Lab, teardown_dir

    removed = []
    for entry in entries:
        if entry.state == UP or entry.age_hours < older_than_hours:
            continue
        lock_path = entry.dir.with_name(entry.id + ".lock")
        try:
            lock = FileLock(str(lock_path), timeout=0)
            lock.acquire()
        except Timeout:
            notify(f"{entry.id}: kept, a session holds its lock {lock_path}")
            continue
        try:
            if procs.tagged(entry.id) or (entry.state == FAILED_BOOT and (entry.dir / "lab.json").exists()):
                notify(f"{entry.id}: kept, it came up meanwhile")  # booted by a process without the lock
                continue
            if dry_run:
                notify(f"{entry.id}: would remove ({entry.state}, {entry.age_hours:.1f} h)")
                removed.append(entry.id)
                continue
            leaks: list[str] = []
            cleaned = False
            if entry.state == STOPPED:
                try:
                    leaks, cleaned = Lab.load(entry.dir).down(), True
                except HarnessError as exc:
                    notify(f"{entry.id}: {exc}")
            if not cleaned:  # a failed boot or an unreadable lab.json: its processes, rules and dockerd use
                leaks = teardown_dir(entry.id, notify=notify)
            shutil.rmtree(entry.dir, ignore_errors=True)
            notify(f"{entry.id}: removed ({entry.state})" + (f"; clean-up left: {', '.join(leaks)}" if leaks else ""))
            removed.append(entry.id)
        finally:
            lock.release()
    if not dry_run:
        remove_stale_locks(entries[0].dir.parent if entries else labs_dir())
    return removed


def remove_stale_locks(root: Path | None = None) -> None:
    """Remove the lock files of labs whose dir is gone and that nobody holds."""
    root = root or labs_dir()
    for lock_path in root.glob("*.lock") if root.is_dir() else []:
        if (root / lock_path.stem).exists():
            continue
        lock = FileLock(str(lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            continue
        try:
            lock_path.unlink(missing_ok=True)
        finally:
            lock.release()
