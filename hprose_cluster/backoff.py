"""Jittered exponential backoff, so a thousand processes do not retry etcd in step."""

from __future__ import annotations

import random


class Backoff:
    """Delays ``base, 2*base, 4*base, ...`` up to ``cap``, each drawn in ``[d/2, d]``.

    Half of the delay is kept so progress is guaranteed; the other half is random so that
    many servers that lost etcd at the same moment spread their retries out.
    """

    def __init__(self, base: float = 0.1, cap: float = 3.0):
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap, got base=%r cap=%r" % (base, cap))
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0
