"""Cells of a session pushed together and watched from one process, never two at once on one runner.

Each runner version gets ``lanes`` lanes: lane 0 runs its cells on the lab's runner of that version, every
further lane on a private runner of the same version started for it (and kept for its later cells, so a
cell that follows another on its lane finds the runner warm, as on the shared runner). A lane runs its
cells one after another, so no two cells ever share a runner: no gated figure is ``(shared runner)``.
Runners the suite did not start have one lane each (the suite cannot start more of them).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from harness.cell import CellResult
from harness.errors import HarnessError
from harness.target import RunnerHandle, Target, private_handle

Notify = Callable[[str], None]
RunCell = Callable[["PoolCell", RunnerHandle], CellResult]


@dataclass(frozen=True)
class PoolCell:
    """One cell to run: its id (the test's), scenario and runner key."""

    id: str
    scenario: str
    runner: str
    condition: str = ""  # --condition NAME ("" for none)


class CellPool:
    """Runs cells on lanes (threads), at most one cell per runner at a time; results by cell id."""

    def __init__(self, target: Target, run: RunCell, *, lanes: int = 1, notify: Notify = lambda s: None) -> None:
        self.target, self.run, self.lanes, self.notify = target, run, max(1, lanes), notify
        self.futures: dict[str, Future[CellResult]] = {}
        self._queues: dict[str, queue.SimpleQueue[PoolCell | None]] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, cells: Iterable[PoolCell]) -> None:
        """Queue cells (unknown runner keys fail their cell at once); lanes start on first use."""
        for cell in cells:
            with self._lock:
                if cell.id in self.futures:
                    continue
                future: Future[CellResult] = Future()
                self.futures[cell.id] = future
            if cell.runner not in self.target.runners:
                future.set_exception(HarnessError(f"no runner {cell.runner} in this target"))
                continue
            self._queue_for(cell.runner).put(cell)

    def _queue_for(self, key: str) -> queue.SimpleQueue[PoolCell | None]:
        with self._lock:
            if key not in self._queues:
                self._queues[key] = queue.SimpleQueue()
                own = self.target.lab is not None and self.target.runners[key].lab_runner is not None
                for lane in range(self.lanes if own else 1):
                    thread = threading.Thread(target=self._lane, args=(key, lane), name=f"regress-lane-{key}-{lane}",
                                              daemon=True)
                    self._threads.append(thread)
                    thread.start()
            return self._queues[key]

    def _lane(self, key: str, lane: int) -> None:
        cells = self._queues[key]
        with contextlib.ExitStack() as stack:
            handle: RunnerHandle | None = None
            while (cell := cells.get()) is not None:
                future = self.futures[cell.id]
                try:
                    if handle is None:
                        handle = self._handle(stack, key, lane)
                    future.set_result(self.run(cell, handle))
                except BaseException as exc:
                    future.set_exception(exc)
        cells.put(None)  # wake the next lane of this runner so it stops too

    def _handle(self, stack: contextlib.ExitStack, key: str, lane: int) -> RunnerHandle:
        return self.target.runners[key] if lane == 0 else private_handle(self.target, stack, key, self.notify)

    def result(self, cell_id: str, timeout: float | None = None) -> CellResult:
        """The cell's result once it ran (re-raises what its run raised).

        Raises:
            KeyError: the cell was never submitted.
        """
        return self.futures[cell_id].result(timeout)

    def close(self) -> None:
        """Let every lane finish its queued cells, then stop it (its private runner with it)."""
        for cells in list(self._queues.values()):
            cells.put(None)
        for thread in self._threads:
            thread.join()


@contextlib.contextmanager
def pooled(target: Target, run: RunCell, cells: Sequence[PoolCell], *, lanes: int,
           notify: Notify = lambda s: None) -> Iterator[CellPool]:
    """A pool with ``cells`` submitted; closed (lanes and private runners stopped) on exit."""
    pool = CellPool(target, run, lanes=lanes, notify=notify)
    try:
        pool.submit(cells)
        yield pool
    finally:
        pool.close()
