"""What a call does when a server fails: a plain value object, in the spirit of urllib3's Retry.

- A request that never left (the connection could not be opened) is always retried on another
  server: it cannot have executed anywhere.
- A request that was sent and then failed (timeout, connection reset mid-reply) is retried only
  for calls marked idempotent (``FailoverPolicy(idempotent=True)`` or ``idempotent=True`` on the
  call): the first server may have executed it.
- A business error (an hprose ``E`` reply) is never retried; ``rotate_on_error`` says whether it
  moves the primary to another server (the seed did).
- A call never tries the same server twice; it tries at most ``max_attempts`` servers, waiting
  ``backoff * 2**n`` (capped at ``backoff_max``) between attempts.
- The call's ``timeout`` is one deadline for all of it: waiting for a server, every attempt and
  every backoff.  Each attempt gets what remains, or at most ``attempt_timeout`` seconds when
  that is set (so that one hung server leaves time to try another, for idempotent calls).
- A call that finds no server to try before its first attempt (the domain is empty for a moment, as when etcd expired
  every lease after a pause and the servers are registering again) waits up to
  ``wait_for_server`` seconds, within its own timeout, for one to appear: nothing was sent, so
  waiting is always safe, and it turns a blip in the registry into a slower call instead of a
  failed one.  A call whose servers all failed raises at once, with each server's error.
- Outlier ejection: a server that fails ``eject_after`` calls in a row, or refuses a connection,
  is skipped for ``eject_for`` seconds even while still registered (it covers the TTL window
  after a crash), then gets calls again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .errors import ConfigError, TransportError


@dataclass(frozen=True)
class FailoverPolicy:
    max_attempts: int = 3
    idempotent: bool = False
    rotate_on_error: bool = True
    backoff: float = 0.0
    backoff_max: float = 1.0
    eject_after: int = 3
    eject_for: float = 10.0
    wait_for_server: float = 3.0
    attempt_timeout: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) \
                or self.max_attempts < 1:
            raise ConfigError("max_attempts must be a whole number >= 1, got %r"
                              % (self.max_attempts,))
        for name in ("backoff", "backoff_max", "eject_after", "eject_for", "wait_for_server"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError("FailoverPolicy.%s must be a number >= 0, got %r"
                                  % (name, value))
        value = self.attempt_timeout
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value <= 0):
            raise ConfigError("FailoverPolicy.attempt_timeout must be a number > 0 or None, "
                              "got %r" % (value,))

    def may_retry(self, error: TransportError, idempotent: bool | None = None) -> bool:
        """Whether a call that failed with ``error`` may go on to another server."""
        if idempotent is None:
            idempotent = self.idempotent
        return not error.sent or idempotent

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        if self.backoff <= 0:
            return 0.0
        return min(self.backoff_max, self.backoff * (2 ** attempt))


class Ejector:
    """Counts consecutive failures per server URL and cools down the repeat offenders."""

    def __init__(self, after: int = 3, cooldown: float = 10.0):
        self.after = after
        self.cooldown = cooldown
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def failure(self, url: str, certain: bool = False) -> None:
        """Count a failed call; ``certain`` (the connection was refused or could not be
        opened at all) ejects at once: that server is not answering anyone."""
        if self.after <= 0:
            return
        with self._lock:
            count = self.after if certain else self._failures.get(url, 0) + 1
            self._failures[url] = count
            if count >= self.after:
                self._until[url] = time.monotonic() + self.cooldown

    def success(self, url: str) -> None:
        if url in self._failures or url in self._until:
            with self._lock:
                self._failures.pop(url, None)
                self._until.pop(url, None)

    @property
    def ejecting(self) -> bool:
        """Whether any server is cooling down now (or was, until asked about)."""
        return bool(self._until)

    def is_ejected(self, url: str) -> bool:
        until = self._until.get(url)
        if until is None:
            return False
        if time.monotonic() >= until:
            with self._lock:
                # back on probation: one more failure ejects it again
                if self._until.get(url) == until:
                    del self._until[url]
                    self._failures[url] = max(0, self.after - 1)
            return False
        return True

    def forget(self, url: str) -> None:
        with self._lock:
            self._failures.pop(url, None)
            self._until.pop(url, None)
