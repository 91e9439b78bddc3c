"""One call's way through a domain: the failover rules as a value, with no I/O and no waiting.

A client drives one ``CallAttempts`` per call: it says which server to try next, how long an
attempt may take, whether waiting for a server is safe, what a failure means (try another
server, after how long, or raise), and builds the error once no server is left.  It also
records the call in the client's metrics (``hprose_cluster_client_*``: each attempt's outcome,
the whole call's duration, retries, ejections through the ejector, calls that found no server)
and names the domain's skipped records when no server is left.  The client only adds what is
its own: how to wait for a view change, how to sleep, how to send.  So the policy
(``FailoverPolicy``), the selector, the ejector, the metrics and the error types behave the
same in ``ClusterClient`` (threads) and ``AsyncClusterClient`` (asyncio).

The rules (those of ``ClusterClient``'s whole-call deadline):

- one ``Deadline`` for the whole call; each attempt gets what is left of it, or at most
  ``policy.attempt_timeout`` seconds when the policy has one;
- a server is never tried twice, at most ``max_attempts`` servers are tried;
- a failure that may have run (``sent``) is retried only for idempotent calls;
- with no untried server, the call waits (``wait_for_server``, within its deadline) only if it
  has sent nothing, or its last attempt sent nothing and the view is moving (that server left
  it, or the view changed since the call began): a listed server that refuses in an unchanged
  view is dead but listed, and waiting would only delay the error;
- the backoff between attempts is capped by the deadline; once the deadline has passed after a
  failure the call raises one ``CallTimeout`` naming every attempt;
- every call ends in the metrics exactly once: ``ok``, ``error`` (an hprose error reply),
  ``raised`` (a transport error, a timeout, or anything else that ends it: the client closed,
  a cancelled task) or ``no_server``.
"""

from __future__ import annotations

import logging
from typing import Mapping

from .deadline import Deadline
from .discovery import ServerView
from .errors import CallTimeout, NoServerAvailable, TransportError
from .failover import Ejector, FailoverPolicy
from .metrics import NULL_CLIENT, ClientRecorder
from .record import ServerInfo
from .selector import Selector

log = logging.getLogger("hprose_cluster.client")


def skipped_note(skipped: Mapping[str, str], shown: int = 3) -> str:
    """The records of the domain a client cannot use, for a "no server" error: how many, and
    why (each reason names its record), the first few of them."""
    if not skipped:
        return ""
    reasons = [skipped[key] for key in sorted(skipped)]
    more = len(reasons) - shown
    return "; %d record%s skipped: %s%s" % (
        len(reasons), "" if len(reasons) == 1 else "s", "; ".join(reasons[:shown]),
        "; and %d more" % more if more > 0 else "")


class CallAttempts:
    """The attempts of one call of ``name`` in ``domain`` (``first_view``: the view when the
    call began).

    A client's loop: ``if attempts.out_of_time: raise attempts.timed_out(where, view)``;
    ``server = attempts.pick(view)``; when None and ``attempts.may_wait(view)``, wait up to
    ``attempts.wait_budget()`` for the view to change and pick again; still None: raise
    ``attempts.exhausted(where, view)``.  Then ``begin(server)``, send within
    ``attempt_deadline()``, and report ``failed(server, error)`` (None: raise ``error``; else
    seconds to sleep first) or ``succeeded(server)`` (a reply came); then, once the reply is
    decoded, ``returned(server)`` or ``business_error(server)``.  Whatever else ends the call
    (an exception out of the loop) is reported with ``abandoned()``, which does nothing when
    the call has already ended.

    ``metrics``: the client's recorder (``metrics.client_recorder(domain)``); the call's
    duration counts from here.  The ejector should be the recorder's (``metrics.ejector``) so
    that ejections are counted.
    """

    __slots__ = ("name", "policy", "selector", "ejector", "idempotent", "domain", "deadline",
                 "first_view", "tried", "failures", "metrics", "started", "ended")

    def __init__(self, name: str, policy: FailoverPolicy, selector: Selector, ejector: Ejector,
                 *, domain: str | None, idempotent: bool | None = None,
                 deadline: Deadline | None = None, first_view: ServerView | None = None,
                 metrics: ClientRecorder = NULL_CLIENT):
        self.name = name
        self.policy = policy
        self.selector = selector
        self.ejector = ejector
        self.idempotent = policy.idempotent if idempotent is None else idempotent
        self.domain = domain
        self.deadline = deadline if deadline is not None else Deadline(None)
        self.first_view = first_view
        self.tried: set[str] = set()
        self.failures: list[tuple[ServerInfo, TransportError]] = []
        self.metrics = metrics
        self.started = metrics.start()
        self.ended = False

    # --- choosing -------------------------------------------------------------------------

    def pick(self, view: ServerView) -> ServerInfo | None:
        """The server for the next attempt; None when every attempt is used or the view has no
        server this call has not tried."""
        if len(self.tried) >= self.policy.max_attempts:
            return None
        return self.selector.pick(view, self.tried, self.ejector)

    def may_wait(self, view: ServerView) -> bool:
        """Whether waiting for a server to appear is safe and worth it (see the module)."""
        if len(self.tried) >= self.policy.max_attempts:
            return False
        if not self.failures:
            return True
        server, error = self.failures[-1]
        if error.sent:
            return False
        return view is not self.first_view or server.uuid not in view.by_uuid

    def wait_budget(self) -> float:
        """Seconds to wait for a server: ``wait_for_server``, within the call's deadline."""
        left = self.deadline.remaining()
        wait = self.policy.wait_for_server
        return wait if left is None else min(wait, left)

    def has_untried(self, view: ServerView) -> bool:
        return any(server.uuid not in self.tried for server in view.servers)

    def remaining(self) -> float | None:
        """Seconds left of the call (never below 0), None without a timeout."""
        return self.deadline.remaining()

    def attempt_deadline(self) -> Deadline:
        """The deadline of the next attempt: the call's, or ``attempt_timeout`` from now if
        the policy has one and it is sooner."""
        limit = getattr(self.policy, "attempt_timeout", None)
        if limit is None:
            return self.deadline
        left = self.deadline.remaining()
        return Deadline(limit if left is None or limit < left else left)

    # --- outcomes -------------------------------------------------------------------------

    def begin(self, server: ServerInfo) -> None:
        self.tried.add(server.uuid)

    def failed(self, server: ServerInfo, error: TransportError) -> float | None:
        """Count a transport failure on ``server``.  None: the call must raise ``error`` (it
        may have run there and may not be repeated); else the seconds to wait before trying
        another server (0 for no wait; never past the deadline)."""
        self.ejector.failure(server.url, certain=not error.sent)
        self.metrics.failed(server, error)
        self.selector.failed(server)
        self.failures.append((server, error))
        if not self.policy.may_retry(error, self.idempotent):
            self._raised()
            return None
        log.info("call %s on %s failed (%s); trying another server of %r",
                 self.name, server.url, error, self.domain)
        if len(self.tried) >= self.policy.max_attempts:
            return 0.0
        delay = self.policy.delay(len(self.failures) - 1)
        return (self.deadline.cap(delay) or 0.0) if delay else 0.0

    def succeeded(self, server: ServerInfo) -> None:
        """``server`` replied (an hprose error reply too): it is healthy."""
        self.ejector.success(server.url)

    def returned(self, server: ServerInfo) -> None:
        """The call returns ``server``'s result."""
        self.ended = True
        self.metrics.ok(server, self.started, self.tried)

    def business_error(self, server: ServerInfo) -> None:
        """The server answered with an hprose error: never retried, may rotate the primary."""
        self.ended = True
        self.metrics.error(server, self.started, self.tried)
        if self.policy.rotate_on_error:
            self.selector.failed(server)

    def abandoned(self) -> None:
        """The call ends with an exception of the client's own (closed, cancelled, a reply
        it could not read); nothing when it has already ended."""
        if not self.ended:
            self._raised()

    def _raised(self) -> None:
        self.ended = True
        self.metrics.raised(self.started, self.tried)

    # --- the end --------------------------------------------------------------------------

    @property
    def out_of_time(self) -> bool:
        """An attempt failed and the call's deadline has passed: no other server is tried."""
        return bool(self.failures) and self.deadline.expired()

    def _attempts(self) -> str:
        return "; ".join("attempt %d on %s: %s" % (n, server.url, error)
                         for n, (server, error) in enumerate(self.failures, 1))

    def timed_out(self, where: str, view: ServerView) -> CallTimeout:
        """The deadline passed after failures: one error naming every attempt (``where``:
        the domain and etcd)."""
        self._raised()
        failures = self.failures
        untried = sum(1 for s in view.servers if s.uuid not in self.tried)
        left = (" (%d more server(s) not tried: no time left)" % untried) if untried else ""
        error = CallTimeout("call %s timed out after %s in %s, %d attempt(s)%s: %s"
                            % (self.name, self.deadline.describe(), where, len(failures), left,
                               self._attempts()),
                            url=failures[-1][0].url, sent=any(e.sent for _, e in failures))
        error.__cause__ = failures[-1][1]
        return error

    def exhausted(self, where: str, view: ServerView | None = None) -> NoServerAvailable:
        """No server left to try: names each attempt with its error, chains the last one,
        and the records of ``view`` that were skipped (a domain of records this client
        cannot use says why it has no server)."""
        self.ended = True
        self.metrics.no_server(self.started, self.tried)
        skipped = skipped_note(view.skipped) if view is not None else ""
        if not self.failures:
            return NoServerAvailable("no server available for %s in %s%s"
                                     % (self.name, where, skipped))
        error = NoServerAvailable("call %s failed on every server tried in %s: %s%s"
                                  % (self.name, where, self._attempts(), skipped))
        error.__cause__ = self.failures[-1][1]
        return error
