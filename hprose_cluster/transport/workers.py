"""The worker threads a server may hand requests to (full-duplex TCP does)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

__all__ = ["WorkerPool"]


class WorkerPool:
    """A bounded pool of named daemon threads (``ThreadPoolExecutor`` threads are not daemon).

    Threads start on demand up to ``size``; work beyond that queues.
    """

    def __init__(self, size: int, name: str, log: logging.Logger):
        self._size = size
        self._name = name
        self._log = log
        self._queue: queue.SimpleQueue[tuple[Callable[..., None], tuple] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name="%s-%d" % (self._name, len(self._threads) + 1))
                self._threads.append(thread)
                thread.start()
            self._queue.put((fn, args))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # never let one task kill a worker silently
                self._log.exception("worker task failed")
            with self._lock:
                self._idle += 1

    def shutdown(self, timeout: float | None) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
            self._idle = 0
        for _ in threads:
            self._queue.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is threading.current_thread():
                continue
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._log.warning("thread %s still busy after stop()", thread.name)
