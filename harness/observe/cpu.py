"""CPU of a runner during a job: the runner process alone and its whole tree (+ its cache server).

A sampler thread reads psutil every ``interval`` seconds; phases (set up, steps, Complete job)
come from the job log's timestamps. No samples in a phase means "unavailable", never a pass.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psutil


@dataclass(frozen=True)
class Sample:
    """One sample: wall time, % of one core for the runner process and for its tree."""

    t: float
    runner_pct: float
    tree_pct: float


PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as stat:
            return stat.read()
    except OSError:  # the process ended meanwhile
        return b""


def parse_stat(raw: bytes) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) from the text of ``/proc/<pid>/stat``; None when unreadable.

    The command name (2nd field) is in parentheses and may hold spaces and parentheses: fields are counted
    after its last ``)``.
    """
    fields = raw[raw.rfind(b")") + 2:].split()
    if len(fields) < 13:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


class ProcessTable:
    """Every process's parent and CPU seconds, read once per tick for all the samplers of this process.

    Reading ``/proc`` is what sampling costs: with several cells watched at once, one read per tick shared
    by every :class:`CpuSampler` instead of one per sampler keeps the suite's own CPU out of the figures
    it measures.
    """

    def __init__(self, at: float, rows: Mapping[int, tuple[int, float]]) -> None:
        self.at = at
        self.rows = rows  # pid → (ppid, user + system seconds)
        children: dict[int, list[int]] = {}
        for pid, (ppid, _cpu) in rows.items():
            children.setdefault(ppid, []).append(pid)
        self._children = children

    @classmethod
    def read(cls) -> ProcessTable:
        """The table now (processes that vanish while read are left out): one ``/proc/<pid>/stat`` read per
        process where there is a ``/proc``, else psutil."""
        at = time.time()
        if not PROC.is_dir():
            rows: dict[int, tuple[int, float]] = {}
            for proc in psutil.process_iter(["ppid", "cpu_times"]):
                times = proc.info["cpu_times"]
                if times is not None and proc.info["ppid"] is not None:
                    rows[proc.pid] = (proc.info["ppid"], times.user + times.system)
            return cls(at, rows)
        rows = {}
        for entry in os.scandir(PROC):
            if entry.name.isdigit():
                row = parse_stat(_read(f"{entry.path}/stat"))
                if row is not None:
                    rows[int(entry.name)] = row
        return cls(at, rows)

    def tree(self, pid: int) -> list[int]:
        """``pid`` and its descendants (empty when ``pid`` is not running)."""
        if pid not in self.rows:
            return []
        found, todo = [], [pid]
        while todo:
            current = todo.pop()
            found.append(current)
            todo.extend(self._children.get(current, ()))
        return found


class _Ticker:
    """One thread per interval that reads the :class:`ProcessTable` and hands it to every sampler registered."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _running: ClassVar[dict[float, _Ticker]] = {}

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samplers: list[CpuSampler] = []
        self.reads = 0  # process-table reads so far (one per tick, whatever the number of samplers)
        self._left = threading.Event()  # a sampler left: the ticker checks at once whether it was the last
        self._thread = threading.Thread(target=self._run, name=f"regress-cpu-{interval:g}s", daemon=True)

    @classmethod
    def join(cls, sampler: CpuSampler) -> _Ticker:
        with cls._lock:
            ticker = cls._running.get(sampler.interval)
            if ticker is None:
                ticker = cls._running[sampler.interval] = cls(sampler.interval)
                ticker._thread.start()
            ticker.samplers.append(sampler)
            return ticker

    def leave(self, sampler: CpuSampler) -> None:
        with self._lock:
            if sampler in self.samplers:
                self.samplers.remove(sampler)
        self._left.set()

    def _run(self) -> None:
        while True:
            self._left.wait(self.interval)
            self._left.clear()
            with self._lock:
                if not self.samplers:  # the last sampler left: this ticker ends, the next sampler starts a new one
                    del self._running[self.interval]
                    return
                samplers = list(self.samplers)
            table = ProcessTable.read()
            self.reads += 1
            for sampler in samplers:
                sampler.tick(table)


class CpuSampler:
    """Samples the runner (pid) and its descendants plus ``extra`` pids until :meth:`stop`; every sampler of
    one interval shares one ticker thread and one process-table read per tick."""

    def __init__(self, pid: int | None, extra: Sequence[int | None] = (), interval: float = 0.1) -> None:
        self.pid = pid
        self.extra = [p for p in extra if p]
        self.interval = interval
        self.samples: list[Sample] = []
        self.error: str | None = None
        self._ticker: _Ticker | None = None
        self._last: dict[int, float] = {}  # pid → CPU seconds at the previous tick
        self._last_at: float | None = None
        self._lock = threading.Lock()

    def start(self) -> CpuSampler:
        """Start sampling."""
        if not self.pid:
            self.error = "no runner PID (not a lab runner)"
            return self
        self._ticker = _Ticker.join(self)
        return self

    def tick(self, table: ProcessTable) -> None:
        """Take one sample from ``table``: % of one core since the previous tick per process (a process first
        seen now has no previous reading and counts from the next tick)."""
        assert self.pid
        with self._lock:
            if self._ticker is None:
                return
            tree = table.tree(self.pid)
            if not tree:
                self.error = f"runner process {self.pid} is gone"
                self._ticker.leave(self)
                self._ticker = None
                return
            pids = tree + [p for p in self.extra if p in table.rows]
            seconds = {pid: table.rows[pid][1] for pid in pids}
            if self._last_at is not None and table.at > self._last_at:
                span = table.at - self._last_at
                pct = {pid: max(0.0, (s - self._last[pid]) / span * 100) for pid, s in seconds.items() if pid in self._last}
                self.samples.append(Sample(table.at, round(pct.get(self.pid, 0.0), 1), round(sum(pct.values()), 1)))
            self._last, self._last_at = seconds, table.at

    def stop(self) -> list[Sample]:
        """Stop and return the samples."""
        with self._lock:
            if self._ticker is not None:
                self._ticker.leave(self)
                self._ticker = None
        return self.samples


PhaseStats = dict[str, dict[str, float | int | None]]


def phase_means(samples: Sequence[Sample], bounds: dict[str, tuple[float, float]], interval: float = 0.1) -> PhaseStats:
    """Mean % per phase for the runner and the tree; ``None`` where no sample covers the phase.

    A sample taken at ``t`` measures ``(t - interval, t]``, so it covers a phase ``[a, b]`` when
    ``a <= t <= b + interval``.
    """
    result: PhaseStats = {}
    for phase, (start, end) in bounds.items():
        inside = [s for s in samples if start <= s.t <= end + interval]
        result[phase] = {
            "samples": len(inside),
            "runner_pct": round(sum(s.runner_pct for s in inside) / len(inside), 1) if inside else None,
            "tree_pct": round(sum(s.tree_pct for s in inside) / len(inside), 1) if inside else None,
        }
    return result


def write_csv(samples: Sequence[Sample], path: Path) -> None:
    """``cpu.csv``: t, runner_pct, tree_pct."""
    path.write_text("t,runner_pct,tree_pct\n" + "".join(f"{s.t:.3f},{s.runner_pct:.1f},{s.tree_pct:.1f}\n" for s in samples))


PHASE_COLOURS = {"setup": "#fde2e2", "steps": "#e2f0fd", "complete": "#e5fde2"}
SPARE_COLOURS = ("#fdf5e2", "#efe2fd", "#e2fdf8", "#eeeeee")
MARK_COLOURS = ("#c0392b", "#8e44ad", "#d35400", "#2c3e50")
MIN_SPAN = 0.05  # seconds: a phase shorter than this is still drawn


@dataclass(frozen=True)
class Layout:
    """What cpu.png shows, in seconds since the first sample: shaded phases, marked moments, the title."""

    title: str
    spans: tuple[tuple[str, float, float, str], ...]  # (phase, start, end, colour)
    marks: tuple[tuple[str, float, str], ...]  # (label, at, colour)


def layout(samples: Sequence[Sample], bounds: Mapping[str, tuple[float, float]], *, title: str = "",
           marks: Mapping[str, float] | None = None) -> Layout:
    """Every phase as a span at least :data:`MIN_SPAN` wide (a phase after the last sample stays: the axis
    widens to it), every mark as a labelled line."""
    t0 = samples[0].t if samples else min((a for a, _ in bounds.values()), default=0.0)
    spare = iter(SPARE_COLOURS * 4)
    spans = tuple((phase, round(start - t0, 3), round(max(end, start + MIN_SPAN) - t0, 3),
                   PHASE_COLOURS.get(phase) or next(spare)) for phase, (start, end) in bounds.items())
    lines = tuple((f"{name} ({moment - t0:.1f}s)", round(moment - t0, 3), colour)
                  for (name, moment), colour in zip((marks or {}).items(), MARK_COLOURS * 4, strict=False))
    return Layout(title, spans, lines)


def write_png(samples: Sequence[Sample], bounds: Mapping[str, tuple[float, float]], path: Path, *,
              title: str = "", marks: Mapping[str, float] | None = None) -> str | None:
    """A small plot of the samples with every phase shaded; None when written, else why not.

    ``title``: e.g. scenario, runner, version and failure class. ``marks``: named moments (epoch
    seconds) drawn as vertical lines, e.g. ``{"fault": t, "stall": t}`` (see :func:`layout`).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'forgejo-runner-regress[plot]')"
    if not samples:
        return "no samples"
    plan = layout(samples, bounds, title=title, marks=marks)
    t0 = samples[0].t
    fig, ax = plt.subplots(figsize=(7, 2.8), dpi=100)
    for phase, start, end, colour in plan.spans:
        ax.axvspan(start, end, color=colour, label=phase, zorder=0)
    ax.plot([s.t - t0 for s in samples], [s.runner_pct for s in samples], label="runner", zorder=2)
    ax.plot([s.t - t0 for s in samples], [s.tree_pct for s in samples], label="runner + children + cache server",
            zorder=2)
    for label, at, colour in plan.marks:
        ax.axvline(at, color=colour, linestyle="--", linewidth=1.2, label=label, zorder=3)
    ax.set_xlabel("seconds")
    ax.set_ylabel("% of one core")
    if plan.title:
        ax.set_title(plan.title, fontsize=8)
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None
