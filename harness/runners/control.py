"""Runner control for lab runners: signal on a job-log trigger, resume, restart.

Used by selfcheck scenarios (fault injection) and the lab's own tests. Runners the suite did not
start are never touched.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

from harness.errors import LabError, PollTimeout
from harness.forgejo.models import LogLine
from harness.runners.process import LabRunner
from harness.waiting import wait_for

SIGNALS = {"KILL": signal.SIGKILL, "STOP": signal.SIGSTOP, "TERM": signal.SIGTERM, "CONT": signal.SIGCONT,
           "QUIT": signal.SIGQUIT}


@dataclass
class LogTrigger:
    """Send ``signal_name`` to ``runner`` the first time a job-log line contains ``pattern``."""

    runner: LabRunner
    pattern: str
    signal_name: str = "KILL"
    fired_at: float | None = None
    line: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def check(self, lines: Iterable[LogLine]) -> bool:
        """Fire when a line matches (once); True when it fired on this call."""
        if self.fired_at is not None:
            return False
        for line in lines:
            if self.pattern in line.message:
                send(self.runner, self.signal_name)
                self.fired_at = time.time()
                self.line = line.message
                self.history.append({"signal": self.signal_name, "at": self.fired_at, "line": line.message})
                return True
        return False


SETTLED = {"STOP": "stopped", "CONT": "running"}  # the state a signal leads to, once the kernel applied it


def send(runner: LabRunner, signal_name: str) -> None:
    """Send a named signal (KILL, STOP, TERM, CONT, QUIT) to the runner daemon.

    The pid is re-read (``pids.json``: another worker may have restarted the runner) and verified
    right before the signal: alive, started when recorded, running this runner's binary with its
    config. STOP and CONT return once the process shows the new state (every thread of a Go program
    must stop first; a caller reading the state at once would otherwise still see it running), at
    most after the ``signal_settle`` budget.

    Raises:
        LabError: an unknown signal, or no verified process of this runner to signal.
    """
    if signal_name not in SIGNALS:
        raise LabError(f"unknown signal {signal_name!r}; one of {sorted(SIGNALS)}")
    runner.signal(SIGNALS[signal_name])
    wanted = SETTLED.get(signal_name)
    if wanted:
        with contextlib.suppress(PollTimeout):  # signalled either way; the state is reported, not assumed
            wait_for(f"runner {runner.name} to be {wanted} after SIG{signal_name}", "signal_settle",
                     lambda: state(runner), lambda s: s in (wanted, "gone"), wait=lambda _: 0.01)


def state(runner: LabRunner) -> str:
    """``running``, ``stopped`` or ``gone`` (also when its recorded pid now belongs to another process)."""
    try:
        pid = runner.verified_pid()
        status = psutil.Process(pid).status()
    except (LabError, psutil.Error):
        return "gone"
    if status == psutil.STATUS_STOPPED:
        return "stopped"
    if status == psutil.STATUS_ZOMBIE:
        return "gone"
    return "running"
