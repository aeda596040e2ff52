"""The runner's own log: the slice that belongs to one task, and known signatures in it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Signature:
    """A known runner log line: what it means, how bad it is, where it was seen."""

    name: str
    pattern: re.Pattern[str]
    meaning: str
    severity: str  # "fail" or "report"
    versions: str


SIGNATURES: tuple[Signature, ...] = (
    Signature("git-refs-not-updated",
              re.compile(r"Non-terminating error while running 'git clone': some refs were not updated"),
              "the action cache's clone could not be updated (re-pointed tag or force-push); a stale action ran",
              "fail", "11.x (go-git), rarer in 12.x"),
    Signature("final-report-lost", re.compile(r"unable to send final job logs and status"),
              "the runner could not report the job's end to Forgejo", "fail", "12.0+"),
    Signature("final-report-retry", re.compile(r"uploading final (?:logs|status) failed, but will be retried"),
              "finalization needed retries", "report", "12.0+"),
    Signature("report-error", re.compile(r"Report(?:Log|State) error"), "a periodic report failed", "report", "all"),
    Signature("server-cancelled", re.compile(r"UpdateTask returned task result \S+ for a task that was in local state"),
              "Forgejo ended the task (cancel or zombie) while the runner still ran it", "report", "all"),
    Signature("cache-fatal", re.compile(r"unrecoverable error in the cache"),
              "the cache server failed; the runner terminates itself", "fail", "all"),
    Signature("cache-disabled", re.compile(r"Could not start the cache server, cache will be disabled"),
              "the runner runs without a cache", "report", "all"),
    Signature("platform-any", re.compile(r"incorrect container platform option 'any'"),
              "docker actions fail on Docker >= 28.1", "fail", "12.1.0-12.1.1"),
    Signature("worktree-error", re.compile(r"git worktree add error"),
              "git is missing or too old on the runner's PATH", "fail", "12.0+"),
    Signature("network-cleanup", re.compile(r"Cleaning up network for job"),
              "the per-job docker network was removed (docker jobs with an auto network only)", "info", "all"),
)


def matches(text: str) -> list[tuple[Signature, str]]:
    """Every signature found in ``text`` with the first matching line."""
    found = []
    for sig in SIGNATURES:
        for line in text.splitlines():
            if sig.pattern.search(line):
                found.append((sig, line.strip()))
                break
    return found


def read_from(path: Path, offset: int) -> str:
    """The log from byte ``offset`` on ("" when missing)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def size(path: Path) -> int:
    """Current size of the log in bytes."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def attribute(text: str, *, task_id: int | None, job: str, workflow: str) -> str:
    """The lines of a log window that belong to one task.

    A runner with capacity > 1 interleaves tasks, so a window between two offsets may hold other
    jobs' lines. Kept: lines naming the task (``task N``, ``FORGEJO-ACTIONS-TASK-N``), the job's
    debug prefix (``[workflow/job]``) or the job by name (``for job <job>``), and lines that name
    no task or job at all (daemon-wide lines: errors, shutdown).
    """
    kept = []
    other_task = re.compile(r"\btask (\d+)\b|FORGEJO-ACTIONS-TASK-(\d+)")
    job_name = re.compile(r"for job (\S+?),?(?:\s|$)")
    prefix = re.compile(r"(?:^|msg=\")\[([^\]/\s{]+)/([^\]]+)\]")
    for line in text.splitlines():
        ids = {int(a or b) for a, b in other_task.findall(line)}
        names = set(job_name.findall(line))
        prefixes = set(prefix.findall(line))
        if ids:
            if task_id is not None and task_id in ids:
                kept.append(line)
            continue
        if names:
            if job in names:
                kept.append(line)
            continue
        if prefixes:
            if (workflow, job) in prefixes:
                kept.append(line)
            continue
        kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")
