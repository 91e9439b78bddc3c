"""One deadline per call, passed down instead of ``timeout``/``deadline`` pairs.

A call's ``timeout`` is turned into a ``Deadline`` once, where the call starts; everything below
(waiting for a server, for a pooled connection, connecting, sending, reading the reply, the
backoff between attempts) asks the same value what remains.  So the whole call ends when its
timeout says, however many steps it takes, and every message can name the original timeout.

``Deadline(None)`` never expires: ``remaining()`` is None, which is also what ``socket``
takes for "block".
"""

from __future__ import annotations

import time

__all__ = ["Deadline", "deadline_after", "deadline_at"]

_clock = time.monotonic
_new = object.__new__


class Deadline:
    """The moment a call must be over by, and the timeout it was made from.

    Immutable and cheap (two floats): make one per call with ``Deadline(timeout)``.
    """

    __slots__ = ("timeout", "at")

    timeout: float | None
    at: float | None

    def __init__(self, timeout: float | None):
        if timeout is None:
            self.timeout = None
            self.at = None
        else:
            self.timeout = float(timeout)
            self.at = _clock() + self.timeout

    def __repr__(self) -> str:
        if self.at is None:
            return "Deadline(None)"
        return "Deadline(%.3gs, %.3gs left)" % (self.timeout or 0.0, self.remaining() or 0.0)

    def remaining(self) -> float | None:
        """Seconds left (never below 0.0), or None for no deadline."""
        at = self.at
        if at is None:
            return None
        left = at - _clock()
        return left if left > 0.0 else 0.0

    def expired(self) -> bool:
        at = self.at
        return at is not None and _clock() >= at

    def cap(self, limit: float | None) -> float | None:
        """The smaller of ``limit`` and what remains (None means unbounded for both)."""
        left = self.remaining()
        if left is None:
            return limit
        if limit is None:
            return left
        return limit if limit < left else left

    def socket_timeout(self) -> float | None:
        """What to give ``sock.settimeout()`` for the next operation.

        Raises ``TimeoutError`` (``socket.timeout``) when nothing remains, exactly as the
        socket would have after waiting, so callers map both the same way.
        """
        at = self.at
        if at is None:
            return None
        left = at - _clock()
        if left <= 0.0:
            raise TimeoutError("timed out")
        return left

    def within(self, limit: float | None) -> "Deadline":
        """A deadline at most ``limit`` seconds from now and never after this one (an
        attempt's share of a call); ``self`` when ``limit`` is None."""
        if limit is None:
            return self
        left = self.remaining()
        sub = Deadline(limit if left is None or limit < left else left)
        return sub

    def describe(self) -> str:
        """``"1.5s"``: the timeout for messages ("timed out after 1.5s")."""
        return "%.3gs" % self.timeout if self.timeout is not None else "no timeout"


_NONE = Deadline(None)


def deadline_after(timeout: float | None) -> Deadline:
    """``Deadline(timeout)``, made in fewer steps (once per call on the clients' hot path):
    no timeout gives one shared ``Deadline(None)`` (they are immutable)."""
    if timeout is None:
        return _NONE
    deadline = _new(Deadline)
    deadline.timeout = timeout = timeout if type(timeout) is float else float(timeout)
    deadline.at = _clock() + timeout
    return deadline


def deadline_at(timeout: float | None, at: float | None) -> Deadline:
    """The ``Deadline`` of ``timeout`` seconds that ends at ``at`` (a ``time.monotonic()``
    value its caller worked out from a clock read of its own: a hot path that needs only
    ``at`` makes the object when something needs it)."""
    if at is None:
        return _NONE
    deadline = _new(Deadline)
    deadline.timeout = None if timeout is None else float(timeout)
    deadline.at = at
    return deadline
