"""Many threads calling at once, for the tests of clients and connections shared by threads."""

from __future__ import annotations

import threading
from typing import Callable


def run_in_threads(work: Callable[[int], object], count: int,
                   timeout: float | None = 30) -> list[BaseException]:
    """Run ``work(0)`` ... ``work(count - 1)``, each in its own thread, all at once; join each
    within ``timeout``.  Returns what the calls raised (assertions too), for the test to assert
    on in its own thread, where a failure is reported."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as error:  # collected for the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors
