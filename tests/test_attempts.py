"""CallAttempts, the failover rules of one call shared by ClusterClient and AsyncClusterClient:
a unit of logic, tested with real views, selectors, ejectors and policies (no I/O in it)."""

from __future__ import annotations

import time

from hprose_cluster.attempts import CallAttempts
from hprose_cluster.deadline import Deadline
from hprose_cluster.discovery import ServerView
from hprose_cluster.errors import CallTimeout, ConnectError, NoServerAvailable, TransportError
from hprose_cluster.failover import Ejector, FailoverPolicy
from hprose_cluster.record import ServerInfo
from hprose_cluster.selector import make_selector

WHERE = "domain 'a.b' (etcd 127.0.0.1:2379)"


def view(count: int) -> ServerView:
    servers = [ServerInfo("a.b", "tcp://127.0.0.1:%d" % (9000 + i), uuid="u%d" % i)
               for i in range(count)]
    return ServerView({s.key(): s for s in servers})


def attempts(policy: FailoverPolicy | None = None, selector: str = "round-robin",
             **options: object) -> CallAttempts:
    policy = policy or FailoverPolicy()
    return CallAttempts("hello", policy, make_selector(selector),
                        Ejector(policy.eject_after, policy.eject_for), domain="a.b",
                        **options)  # type: ignore[arg-type]


def test_a_call_never_tries_a_server_twice_nor_more_than_max_attempts():
    call = attempts(FailoverPolicy(max_attempts=3))
    seen = []
    while (server := call.pick(view(5))) is not None:
        call.begin(server)
        seen.append(server.uuid)
        assert call.failed(server, ConnectError("refused", url=server.url)) == 0.0
    assert len(seen) == 3 and len(set(seen)) == 3
    error = call.exhausted(WHERE)
    assert isinstance(error, NoServerAvailable) and isinstance(error.__cause__, ConnectError)
    assert WHERE in str(error) and all("127.0.0.1:%d" % (9000 + int(u[1:])) in str(error)
                                       for u in seen)
    assert "attempt 1 on " in str(error) and "attempt 3 on " in str(error)


def test_sent_failures_are_retried_only_when_idempotent():
    sent = TransportError("reset mid-reply", url="tcp://127.0.0.1:9000", sent=True)
    for idempotent, expected in ((False, None), (True, 0.0)):
        call = attempts(idempotent=idempotent)
        server = call.pick(view(2))
        assert server is not None
        call.begin(server)
        assert call.failed(server, sent) == expected
    call = attempts(FailoverPolicy(idempotent=True), idempotent=False)  # the call's word wins
    server = call.pick(view(2))
    assert server is not None
    assert call.failed(server, sent) is None


def test_backoff_grows_and_is_capped():
    call = attempts(FailoverPolicy(max_attempts=5, backoff=0.1, backoff_max=0.25))
    delays = []
    for _ in range(5):
        server = call.pick(view(5))
        assert server is not None
        call.begin(server)
        delays.append(call.failed(server, ConnectError("refused", url=server.url)))
    assert delays == [0.1, 0.2, 0.25, 0.25, 0.0]  # no wait after the last attempt
    capped = attempts(FailoverPolicy(backoff=5.0, backoff_max=5.0), deadline=Deadline(0.5))
    server = capped.pick(view(2))
    assert server is not None
    capped.begin(server)
    delay = capped.failed(server, ConnectError("refused", url=server.url))
    assert delay is not None and 0.4 < delay <= 0.5  # never past the call's deadline


def test_refused_connections_eject_and_business_errors_rotate_the_primary():
    call = attempts(selector="random")
    first = call.pick(view(3))
    assert first is not None
    call.begin(first)
    call.failed(first, ConnectError("refused", url=first.url))
    assert call.ejector.is_ejected(first.url)
    second = call.pick(view(3))
    assert second is not None and second.uuid != first.uuid
    call.succeeded(second)
    assert call.selector.primary == second  # type: ignore[attr-defined]
    call.business_error(second)
    assert call.selector.primary is None  # type: ignore[attr-defined]
    keep = attempts(FailoverPolicy(rotate_on_error=False), selector="random")
    server = keep.pick(view(3))
    assert server is not None
    keep.business_error(server)
    assert keep.selector.primary == server  # type: ignore[attr-defined]


def test_waiting_for_a_server_is_for_calls_that_sent_nothing_and_within_their_time():
    empty = view(0)
    call = attempts(FailoverPolicy(wait_for_server=3.0), deadline=Deadline(1.0),
                    first_view=empty)
    assert call.pick(empty) is None and call.may_wait(empty)
    assert 0.9 < call.wait_budget() <= 1.0
    assert attempts(FailoverPolicy(wait_for_server=3.0)).wait_budget() == 3.0
    assert not call.has_untried(empty) and call.has_untried(view(1))


def test_after_an_unsent_failure_a_call_waits_only_while_the_view_moves():
    one = view(1)
    for error, moved, expected in ((ConnectError("refused", url="u"), False, False),
                                   (ConnectError("refused", url="u"), True, True),
                                   (TransportError("reset", url="u", sent=True), True, False)):
        call = attempts(first_view=one)
        server = call.pick(one)
        assert server is not None
        call.begin(server)
        call.failed(server, error)
        # unchanged view, the server still listed: dead but listed, no point waiting
        assert call.may_wait(view(1) if moved else one) is expected
    call = attempts(first_view=one)
    server = call.pick(one)
    assert server is not None
    call.begin(server)
    call.failed(server, ConnectError("refused", url=server.url))
    assert call.may_wait(view(0))  # the failed server left the view


def test_a_call_out_of_time_raises_one_timeout_naming_every_attempt():
    call = attempts(idempotent=True, deadline=Deadline(0.05))
    server = call.pick(view(3))
    assert server is not None
    call.begin(server)
    timeout = CallTimeout("timed out after 0.05s", url=server.url)
    assert call.failed(server, timeout) == 0.0
    assert not call.out_of_time
    time.sleep(0.06)
    assert call.out_of_time
    error = call.timed_out(WHERE, view(3))
    assert isinstance(error, CallTimeout) and error.sent and error.url == server.url
    assert error.__cause__ is timeout
    assert "timed out after 0.05s" in str(error) and WHERE in str(error)
    assert "1 attempt(s) (2 more server(s) not tried: no time left)" in str(error)
    assert "attempt 1 on %s" % server.url in str(error)
    assert isinstance(attempts().exhausted(WHERE), NoServerAvailable)


def test_an_attempt_gets_at_most_attempt_timeout_of_the_call():
    policy = FailoverPolicy()
    object.__setattr__(policy, "attempt_timeout", 0.2)  # FailoverPolicy(attempt_timeout=0.2)
    call = attempts(policy, deadline=Deadline(5.0))
    assert 0.1 < (call.attempt_deadline().remaining() or 0) <= 0.2
    short = attempts(policy, deadline=Deadline(0.1))
    assert (short.attempt_deadline().remaining() or 0) <= 0.1
    plain = attempts(deadline=Deadline(5.0))
    assert plain.attempt_deadline() is plain.deadline


class Recorder:
    """A ClientRecorder that lists what it was told (the logic under test is CallAttempts')."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def start(self) -> float:
        return 0.0

    def ok(self, server, started, tried):
        self.events.append(("ok", server.uuid, str(len(tried))))

    def error(self, server, started, tried):
        self.events.append(("error", server.uuid, str(len(tried))))

    def failed(self, server, error):
        self.events.append(("failed", server.uuid, type(error).__name__))

    def raised(self, started, tried):
        self.events.append(("raised", str(len(tried))))

    def no_server(self, started, tried):
        self.events.append(("no_server", str(len(tried))))


def test_every_call_ends_once_in_the_metrics():
    def run(outcome: str) -> list[tuple[str, ...]]:
        recorder = Recorder()
        call = attempts(metrics=recorder)
        first = call.pick(view(2))
        assert first is not None
        call.begin(first)
        assert call.failed(first, ConnectError("refused", url=first.url)) == 0.0
        second = call.pick(view(2))
        assert second is not None
        call.begin(second)
        if outcome == "sent":
            assert call.failed(second, TransportError("reset", url=second.url, sent=True)) is None
        elif outcome == "exhausted":
            call.failed(second, ConnectError("refused", url=second.url))
            assert call.pick(view(2)) is None
            call.exhausted(WHERE, view(2))
        else:
            call.succeeded(second)
            call.returned(second) if outcome == "ok" else call.business_error(second)
        call.abandoned()  # the call had ended: nothing more
        return recorder.events

    failed = ("failed", "u0", "ConnectError")
    assert run("ok") == [failed, ("ok", "u1", "2")]
    assert run("error") == [failed, ("error", "u1", "2")]
    assert run("sent") == [failed, ("failed", "u1", "TransportError"), ("raised", "2")]
    assert run("exhausted") == [failed, ("failed", "u1", "ConnectError"), ("no_server", "2")]
    recorder = Recorder()
    call = attempts(metrics=recorder)
    call.abandoned()  # cancelled before any attempt
    call.abandoned()
    assert recorder.events == [("raised", "0")]


def test_no_server_available_names_the_skipped_records():
    skipped = {"hprose-service/a.b/k%d" % i: "record hprose-service/a.b/k%d: bad" % i
               for i in range(5)}
    empty = ServerView({}, skipped=skipped)
    message = str(attempts().exhausted(WHERE, empty))
    assert "no server available for hello in %s; 5 records skipped: " % WHERE in message
    assert "k0: bad; record hprose-service/a.b/k1: bad" in message and "; and 2 more" in message
    assert "skipped" not in str(attempts().exhausted(WHERE, view(0)))
