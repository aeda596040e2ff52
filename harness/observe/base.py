"""What an observer of one cell is: three moments around the watched job, and what it hands back.

A cell is target + scenario + runner → push → watch → judge → evidence; everything else is an
observer chosen once per cell from what the runner allows (see :mod:`harness.observe.observers`):

- ``before(cell)``: take a snapshot; acquire what must be released on the cell's exit stack;
- ``on_poll(poll)``: see each watch poll (the cheap task list, and the last job view fetched);
- ``after(done)``: return :class:`Findings` (violations, observations, evidence writers).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.budgets import Budgets
from harness.forgejo.models import JobView, Task
from harness.verdict import Violation

if TYPE_CHECKING:
    from harness.evidence import Bundle
    from harness.scenarios import Scenario
    from harness.target import RunnerHandle, Target

Notify = Callable[[str], None]
EvidenceWriter = Callable[["Bundle"], None]


@dataclass
class CellScope:
    """What every observer of one cell may read, and the two stacks it may register clean-up on.

    ``observing`` is closed when the watch ends (samplers, proxies, windows); ``teardown`` after
    the evidence is written (the repo, the runner's restart).
    """

    target: Target
    scenario: Scenario
    handle: RunnerHandle
    label: str
    budgets: Budgets
    notify: Notify
    observing: contextlib.ExitStack
    teardown: contextlib.ExitStack
    wake: threading.Event = field(default_factory=threading.Event)  # set by an observer: poll now
    job_ids: tuple[str, ...] = ()
    run_index: int = 0
    repo: str = ""
    disposable: bool = False  # a private runner, stopped at the cell's end: never restarted
    restart_registered: bool = False  # the disturbed runner's restart is on ``teardown`` already
    marks: dict[str, float] = field(default_factory=dict)  # named moments (epoch s) for cpu.png: fault, stall, signal
    failure_class: str | None = None  # set once the cell is classified (harness.classify), before the evidence
    actions: dict[str, str] = field(default_factory=dict)  # action → this cell's own copy its workflow uses instead

    def uses(self) -> tuple[str, ...]:
        """The workflow's ``uses:`` as pushed (a phased cell's changed actions point at its own copies)."""
        return tuple(f"{self.actions.get(u.split('@')[0], u.split('@')[0])}@{u.split('@', 1)[1]}" if "@" in u else u
                     for u in self.scenario.uses())


@dataclass(frozen=True)
class Poll:
    """One watch poll: the run's tasks (newest first) and the last job view fetched (may be older)."""

    tasks: tuple[Task, ...]
    view: JobView | None


@dataclass(frozen=True)
class Done:
    """What the watch ended with (done, or the last state seen when a budget ran out)."""

    views: Sequence[JobView]
    raw_log: str | None
    tasks: tuple[Task, ...]
    task_ids: tuple[int, ...]
    finished: bool

    @property
    def view(self) -> JobView | None:
        """Job 0's final view."""
        return self.views[0] if self.views else None

    @property
    def task_id(self) -> int | None:
        """The first job's task."""
        return self.task_ids[0] if self.task_ids else None

    def log_text(self) -> str:
        """Every job-log line of every job seen, newline-separated."""
        return "\n".join(line.message for v in self.views for line in v.log_lines())


@dataclass(frozen=True)
class Findings:
    """What one observer found after the job."""

    violations: tuple[Violation, ...] = ()
    observations: Mapping[str, Any] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)
    evidence: tuple[EvidenceWriter, ...] = ()
    runner_log: str | None = None
    cold: bool | None = None
    demote: tuple[str, ...] = ()  # rules (of any observer) to turn report-only: not attributable to this job
    note: str = ""  # appended to demoted violations
    inconclusive: str = ""  # our side cannot vouch for the cell (e.g. the wrong runner took the job): why


class Observer(Protocol):
    """One observer of a cell."""

    name: str

    def before(self, cell: CellScope) -> None:
        """Snapshot before the push; register clean-up on the cell's stacks."""

    def on_poll(self, poll: Poll) -> None:
        """See one watch poll (cheap: no request of its own unless it must)."""

    def after(self, done: Done) -> Findings:
        """What it found once the job is done (or the watch gave up)."""


class Quiet:
    """Base for observers that do not need every moment."""

    name = "quiet"

    def before(self, cell: CellScope) -> None:
        """Nothing to snapshot."""

    def on_poll(self, poll: Poll) -> None:
        """Nothing to see."""

    def after(self, done: Done) -> Findings:
        """Nothing found."""
        return Findings()


def merge(findings: Sequence[Findings]) -> Findings:
    """All findings as one: violations in order (demoted where another observer said so), the rest merged."""
    demote = {rule for f in findings for rule in f.demote}
    note = " ".join(f.note for f in findings if f.note)
    violations = tuple(
        Violation(v.rule, v.message + (f" {note}" if note else ""), "report") if v.rule in demote else v
        for f in findings for v in f.violations
    )
    observations: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for f in findings:
        observations.update(f.observations)
        unavailable.update(f.unavailable)
    runner_log = next((f.runner_log for f in findings if f.runner_log is not None), None)
    cold = next((f.cold for f in findings if f.cold is not None), None)
    inconclusive = next((f.inconclusive for f in findings if f.inconclusive), "")
    return Findings(violations, observations, unavailable, tuple(w for f in findings for w in f.evidence),
                    runner_log, cold, inconclusive=inconclusive)


def write_text(name: str, text: str) -> EvidenceWriter:
    """An evidence writer for one text file."""

    def write(bundle: Bundle) -> None:
        bundle.text(name, text)

    return write


def write_file(name: str, writer: Callable[[Path], Any]) -> EvidenceWriter:
    """An evidence writer that writes ``name`` inside the bundle with ``writer(path)``."""

    def write(bundle: Bundle) -> None:
        writer(bundle.path / name)

    return write
