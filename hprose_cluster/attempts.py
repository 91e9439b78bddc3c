"""One call's way through a domain: the failover rules as a value, with no I/O and no waiting.

``ClusterClient`` (blocking) and ``AsyncClusterClient`` (asyncio) both drive a ``CallAttempts``
per call: it says which server to try next, what a failure means (retry elsewhere, after how
long, or raise), and builds the ``NoServerAvailable`` naming every server tried.  The clients
only add what differs between them: how to wait for a server, how to sleep, how to send.
So the policy (``FailoverPolicy``), the selector, the ejector and the error types behave the
same whichever client a service uses.
"""

from __future__ import annotations

import logging

from .deadline import NO_DEADLINE, Deadline
from .discovery import ServerView
from .errors import CallTimeout, NoServerAvailable, TransportError
from .failover import Ejector, FailoverPolicy
from .record import ServerInfo
from .selector import Selector

log = logging.getLogger("hprose_cluster.client")


class CallAttempts:
    """The attempts of one call of ``name`` in ``domain``.

    Use: ``pick(view)`` (None: no server to try); when it is None and ``may_wait`` holds, wait
    up to ``wait_budget()`` for the view to change and pick again; ``begin(server)`` before
    sending; then ``failed(server, error)`` (None: raise ``error``; else seconds to sleep before
    the next pick), ``succeeded(server)``, or ``business_error(server)`` for an hprose ``E``
    reply.  ``exhausted(where)`` is the error once no server is left.

    ``deadline`` is the whole call's ``Deadline``: the wait for a server is capped by it, and a
    client whose attempts share it (the asyncio one) stops trying servers once it has passed
    (``out_of_time``).
    """

    __slots__ = ("name", "policy", "selector", "ejector", "idempotent", "domain", "deadline",
                 "tried", "failures")

    def __init__(self, name: str, policy: FailoverPolicy, selector: Selector, ejector: Ejector,
                 *, domain: str | None, idempotent: bool | None = None,
                 deadline: Deadline = NO_DEADLINE):
        self.name = name
        self.policy = policy
        self.selector = selector
        self.ejector = ejector
        self.idempotent = policy.idempotent if idempotent is None else idempotent
        self.domain = domain
        self.deadline = deadline
        self.tried: set[str] = set()
        self.failures: list[tuple[ServerInfo, TransportError]] = []

    def remaining(self) -> float | None:
        """Seconds left of the call's time (never below 0), None without a timeout."""
        return self.deadline.remaining()

    def pick(self, view: ServerView) -> ServerInfo | None:
        """The server for the next attempt; None when every attempt is used or the view has no
        server this call has not tried."""
        if len(self.tried) >= self.policy.max_attempts:
            return None
        return self.selector.pick(view, self.tried, self.ejector)

    @property
    def out_of_time(self) -> bool:
        """An attempt failed and the call's time is up: no other server can be tried."""
        return bool(self.failures) and self.deadline.expired()

    @property
    def may_wait(self) -> bool:
        """Nothing was sent yet, so waiting for a server to appear is always safe.  A call
        whose servers all failed does not wait: it fails at once with the causes."""
        return not self.failures

    def wait_budget(self) -> float:
        """How long to wait for a server to appear: ``wait_for_server``, within the call's time."""
        remaining = self.remaining()
        wait = self.policy.wait_for_server
        return wait if remaining is None else min(wait, remaining)

    def has_untried(self, view: ServerView) -> bool:
        return any(server.uuid not in self.tried for server in view.servers)

    def begin(self, server: ServerInfo) -> None:
        self.tried.add(server.uuid)

    def failed(self, server: ServerInfo, error: TransportError) -> float | None:
        """Count a transport failure on ``server``.  None: the call must raise ``error`` (it
        may have run there and may not be repeated); else the seconds to wait before trying
        another server (0 for no wait)."""
        self.ejector.failure(server.url, certain=not error.sent)
        self.selector.failed(server)
        self.failures.append((server, error))
        if not self.policy.may_retry(error, self.idempotent):
            return None
        log.info("call %s on %s failed (%s); trying another server of %r",
                 self.name, server.url, error, self.domain)
        return self.policy.delay(len(self.failures) - 1)

    def succeeded(self, server: ServerInfo) -> None:
        self.ejector.success(server.url)

    def business_error(self, server: ServerInfo) -> None:
        """The server answered with an hprose error: never retried, may rotate the primary."""
        if self.policy.rotate_on_error:
            self.selector.failed(server)

    def exhausted(self, where: str, *, time_up: bool = False) -> Exception:
        """The error to raise when no server is left to try (``where``: the domain and etcd).

        After failures it names each server tried with its error and chains the last one.
        ``time_up`` (the call stopped because its deadline passed): a last failure that was
        that deadline running out is raised itself, a plain ``CallTimeout``.
        """
        failures = self.failures
        if time_up and failures and isinstance(failures[-1][1], CallTimeout):
            return failures[-1][1]
        if not failures:
            return NoServerAvailable("no server available for %s in %s" % (self.name, where))
        tried = "; ".join("%s: %s" % (server.url, error) for server, error in failures)
        error = NoServerAvailable("call %s failed on every server tried in %s: %s"
                                  % (self.name, where, tried))
        error.__cause__ = failures[-1][1]
        return error
