"""A few threads that run the periodic steps of many registrars.

One thread per registration is simple, but a process that keeps a thousand registrations alive
pays a thousand threads, and starting them at once costs more than the registrations
themselves.  Here every registrar of one ``EtcdConnection`` shares a ``StepScheduler``: a
heap of due times and up to ``max_workers`` threads that take the next due step, run it, and
schedule it again after the delay it returns.

A step of one task never runs twice at once, and ``wake()`` runs it again as soon as a
worker is free (at once after the current run when it is running).  Steps block on etcd for
at most the connection's timeout, so a worker is never lost; while etcd hangs, steps simply
queue up and run in due order when it answers.  Workers start on demand and exit once the
last task is removed, so a scheduler with no task holds no thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import weakref
from typing import Callable

log = logging.getLogger("hprose_cluster.scheduler")

DEFAULT_MAX_WORKERS = 8


class Task:
    """One scheduled step: ``step()`` returns the seconds until its next run, or None to stop.

    Only the scheduler touches the fields below, under its lock.
    """

    def __init__(self, step: Callable[[], "float | None"], name: str):
        self.step = step
        self.name = name
        self._entry = 0  # the heap entry that is current (older ones are skipped)
        self._running = False
        self._woken = False
        self._removed = False


class StepScheduler:
    """Runs ``Task`` steps on up to ``max_workers`` daemon threads (see the module docstring)."""

    def __init__(self, name: str, max_workers: int = DEFAULT_MAX_WORKERS):
        self.name = name
        self.max_workers = max(1, int(max_workers))
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # workers wait on it for due steps
        self._finished = threading.Condition(lock)  # remove() waits on it for a run to end
        self._heap: list[tuple[float, int, Task]] = []
        self._entries = itertools.count(1)
        self._tasks = 0
        self._workers: list[threading.Thread] = []
        self._idle = 0
        self._names = itertools.count(1)

    def add(self, step: Callable[[], "float | None"], name: str, delay: float = 0.0) -> Task:
        """Schedule ``step`` to run after ``delay`` seconds."""
        task = Task(step, name)
        with self._cond:
            self._tasks += 1
            self._push(task, delay)
        return task

    def wake(self, task: Task) -> None:
        """Run ``task`` as soon as possible (after its current run, if it is running)."""
        with self._cond:
            if task._removed:
                return
            if task._running:
                task._woken = True
            else:
                self._push(task, 0.0)

    def remove(self, task: Task, timeout: float | None = None) -> bool:
        """Stop scheduling ``task``; wait up to ``timeout`` for a run in progress to end.
        Returns False when the run was still going (it is not scheduled again either way)."""
        current = threading.current_thread()
        with self._cond:
            if not task._removed:
                task._removed = True
                self._tasks -= 1
                task._entry = 0
                if self._tasks == 0:
                    self._cond.notify_all()  # idle workers leave
            if current in self._workers:  # removed by its own step: it is finishing anyway
                return True
            finished = self._finished.wait_for(lambda: not task._running, timeout)
            leaving = list(self._workers) if self._tasks == 0 else []
        for worker in leaving:  # the last task: its workers exit now
            if worker is not current:
                worker.join(1.0)
        return finished

    # --- workers ----------------------------------------------------------------------------

    def _push(self, task: Task, delay: float) -> None:
        """Under the lock: (re)schedule ``task``, and make sure a worker will see it."""
        task._entry = next(self._entries)
        heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), task._entry, task))
        if self._idle == 0 and len(self._workers) < min(self.max_workers, self._tasks):
            worker = threading.Thread(target=self._work, daemon=True,
                                      name="hprose-cluster-%s-%d" % (self.name, next(self._names)))
            self._workers.append(worker)
            worker.start()
        elif self._heap[0][1] == task._entry:
            # the new first due step: an idle worker plans its wait again (an idle worker
            # always waits no longer than the first due step, so only a new first needs it)
            self._cond.notify()

    def _next(self) -> Task | None:
        """Under the lock: wait for the next due task (None: no task left, exit)."""
        while True:
            if self._tasks == 0:
                return None
            while self._heap and self._heap[0][2]._entry != self._heap[0][1]:
                heapq.heappop(self._heap)  # superseded by a later schedule, or removed
            if not self._heap:
                self._idle += 1
                self._cond.wait()
                self._idle -= 1
                continue
            due, _, task = self._heap[0]
            wait = due - time.monotonic()
            if wait > 0:
                self._idle += 1
                self._cond.wait(wait)
                self._idle -= 1
                continue
            heapq.heappop(self._heap)
            task._entry = 0
            task._running = True
            if self._heap and self._idle:
                self._cond.notify()  # someone waits for the next one in our place
            return task

    def _work(self) -> None:
        current = threading.current_thread()
        try:
            while True:
                with self._cond:
                    task = self._next()
                    if task is None:  # leave the pool under the lock: add() counts on it
                        self._workers.remove(current)
                        return
                try:
                    delay = task.step()
                except BaseException:  # a step must never take its worker down
                    log.exception("%s: step of %s failed", self.name, task.name)
                    delay = 1.0
                with self._cond:
                    task._running = False
                    if task._removed or delay is None:
                        self._finished.notify_all()
                        continue
                    if task._woken:
                        task._woken = False
                        delay = 0.0
                    self._push(task, delay)
        except BaseException:  # only an interpreter shutting down gets here
            with self._cond:
                if current in self._workers:
                    self._workers.remove(current)
            raise


_lock = threading.Lock()
_by_owner: "weakref.WeakKeyDictionary[object, StepScheduler]" = weakref.WeakKeyDictionary()


def scheduler_for(owner: object, name: str) -> StepScheduler:
    """The scheduler shared by everything scheduled for ``owner`` (an ``EtcdConnection``)."""
    with _lock:
        scheduler = _by_owner.get(owner)
        if scheduler is None:
            scheduler = _by_owner[owner] = StepScheduler(name)
        return scheduler
