"""What a runner did about an injected fault: its own log lines and its traffic, from the fault to the end.

Pure functions over the runner's log (text since the fault started) and the fault proxy's exchanges:
the reporter's warnings, request timeouts, final-report retries, a give-up, the server's result seen
after the release, the first reaction and the longest silence. :func:`decided` says when watching
longer would tell nothing new (the ``fault_aftermath`` budget is the upper bound).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harness.faults.proxy import Exchange

REPORT_ERROR = re.compile(r"ReportLog error|ReportState error")
TIMEOUT = re.compile(r"Client\.Timeout exceeded|deadline_exceeded|context deadline exceeded")
RETRY = re.compile(r"uploading final (logs|status) failed, but will be retried")
GAVE_UP = re.compile(r"unable to send final job logs and status")
SERVER_RESULT = re.compile(r"UpdateTask returned task result (\S+) for a task that was in local state (\S+)")
REACTION = re.compile(r"level=(warning|error|fatal|panic)|UpdateTask returned task result")
STAMP = re.compile(r'time="([^"]+)"')


@dataclass(frozen=True)
class Behaviour:
    """The runner's behaviour after a fault, counted."""

    report_errors: int
    timeouts: int
    final_retries: int
    gave_up: str | None  # the give-up line, when it logged one
    server_result: str | None  # "RESULT_FAILURE (local RESULT_SUCCESS)" once the server answered again
    first_reaction_s: float | None  # fault start → its first warning/error (or the server-result line)
    first_reaction: str | None
    final_report_after_release: bool  # a no_more UpdateLog went through after the release
    final_attempts: dict[str, int]  # the proxy's view of its final UpdateLog (no_more): answer → count
    alive: bool | None
    exited: bool

    def sentence(self) -> str:
        """One line for the terminal table: what the runner did."""
        parts = []
        if self.first_reaction_s is None:
            parts.append("logged nothing about it")
        else:
            parts.append(f"first reaction after {self.first_reaction_s:.0f}s")
        if self.report_errors:
            parts.append(f"{self.report_errors} report errors")
        if self.timeouts:
            parts.append(f"{self.timeouts} request timeouts")
        if self.final_retries:
            parts.append(f"{self.final_retries} final-report retries")
        if self.final_attempts:
            answers = ", ".join(f"{n}× {answer}" for answer, n in sorted(self.final_attempts.items()))
            parts.append(f"final UpdateLog sent {sum(self.final_attempts.values())} times ({answers})")
        if self.gave_up:
            parts.append("gave up ('unable to send final job logs and status')")
        if self.final_report_after_release:
            parts.append("final report delivered after the release")
        if self.server_result:
            parts.append(f"server said {self.server_result}")
        parts.append("exited" if self.exited else "process alive" if self.alive else "process state unknown")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """For the cell's observations."""
        return {**self.__dict__, "sentence": self.sentence()}


def stamp(line: str) -> float | None:
    """The logrus ``time="…"`` of a runner-log line (epoch seconds), None without one."""
    found = STAMP.search(line)
    if not found:
        return None
    try:
        return datetime.fromisoformat(found[1].replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def behaviour(log_text: str, exchanges: Sequence[Exchange], fired_at: float, released_at: float | None,
              alive: bool | None) -> Behaviour:
    """Count what the runner logged and sent from ``fired_at`` on."""
    lines = [line for line in log_text.splitlines() if (stamp(line) or fired_at) >= fired_at]
    reaction = next((line for line in lines if REACTION.search(line)), None)
    reaction_at = stamp(reaction) if reaction else None
    server = next((m for line in lines if (m := SERVER_RESULT.search(line))), None)
    gave_up = next((line.strip()[-300:] for line in lines if GAVE_UP.search(line)), None)
    final = released_at is not None and any(
        e.rpc == "UpdateLog" and e.info.get("no_more") and e.status == 200 and e.at >= released_at for e in exchanges)
    attempts: dict[str, int] = {}
    for e in exchanges:
        if e.rpc == "UpdateLog" and e.info.get("no_more"):
            answer = str(e.status) if e.status is not None else e.action
            attempts[answer] = attempts.get(answer, 0) + 1
    return Behaviour(
        report_errors=sum(1 for line in lines if REPORT_ERROR.search(line)),
        timeouts=sum(1 for line in lines if TIMEOUT.search(line)),
        final_retries=sum(1 for line in lines if RETRY.search(line)),
        gave_up=gave_up,
        server_result=f"{server[1]} (local {server[2]})" if server else None,
        first_reaction_s=round(reaction_at - fired_at, 1) if reaction_at is not None else None,
        first_reaction=reaction.strip()[-300:] if reaction else None,
        final_report_after_release=final,
        final_attempts=attempts,
        alive=alive,
        exited=alive is False,
    )


def decided(found: Behaviour, exchanges: Sequence[Exchange], released_at: float, now: float, quiet: float) -> str | None:
    """Why watching longer would tell nothing new, or None: the runner gave up, delivered its final report, exited,
    or sent nothing about the task for ``quiet`` seconds after the release (the server's result alone decides
    nothing: a runner may still retry its final report against it)."""
    if found.exited:
        return "the runner exited"
    if found.gave_up:
        return "the runner gave up its final report"
    if found.final_report_after_release:
        return "the final report went through after the release"
    reports = [e.at for e in exchanges if e.rpc in ("UpdateLog", "UpdateTask") and e.at >= released_at]
    last = max(reports) if reports else released_at
    if now - last >= quiet:
        return f"no report about the task for {quiet:g}s after the release"
    return None
