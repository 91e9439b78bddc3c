"""Registrar.start() calls that overlap on one connection are written together
(hprose_cluster/etcd/batch.py): their leases granted together, their records put in one
transaction, yet each start keeps its own lease and gets its own outcome.

To make a batch certain rather than likely, ``HeldConnection`` holds the first lease grant
until the other starts are queued behind it, so they form the next batch.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest

from hprose_cluster import EtcdConfig, RegistrationError, Registrar, ServerInfo
from hprose_cluster.etcd import EtcdConnection

pytestmark = pytest.mark.timeout(120)


class HeldConnection(EtcdConnection):
    """Holds its first lease grant until ``queued`` starts wait behind it (or 20 s pass)."""

    def __init__(self, config: EtcdConfig, queued: int):
        super().__init__(config)
        self.queued = queued
        self._held = False
        self.grant_batches: list[str] = []

    def call(self, what: str, func: Callable[[Any], Any]) -> Any:
        if what.startswith("granting"):
            self.grant_batches.append(what)
            if not self._held:
                self._held = True
                deadline = time.monotonic() + 20
                while self._starts.waiting < self.queued and time.monotonic() < deadline:
                    time.sleep(0.01)
        return super().call(what, func)


def _infos(domain: str, count: int) -> list[ServerInfo]:
    return [ServerInfo(domain, "tcp://127.0.0.1:%d" % (20000 + i), cpu=1) for i in range(count)]


def _start_all(registrars: list[Registrar]) -> list[BaseException | None]:
    """start() each registrar on a thread of its own, all at once; the error of each."""
    def start(registrar: Registrar) -> BaseException | None:
        try:
            registrar.start()
        except BaseException as error:  # noqa: B036 - collected for the assertions
            return error
        return None

    with ThreadPoolExecutor(len(registrars)) as pool:
        return list(pool.map(start, registrars))


def _lease_ids(server: Any) -> set[int]:
    """Every lease etcd holds (etcdctl: the etcd3 client has no call for it)."""
    from hprose_cluster.embedded import find_etcdctl_binary

    done = subprocess.run([find_etcdctl_binary(), "--endpoints", server.client_url,
                           "--command-timeout", "5s", "lease", "list"],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return {int(line, 16) for line in done.stdout.splitlines()[1:] if line.strip()}


def _stored(connection: EtcdConnection, registrar: Registrar) -> tuple[bytes, int] | None:
    response = connection.get(registrar.key)
    return (response.kvs[0].value, response.kvs[0].lease) if response.kvs else None


def test_concurrent_starts_are_batched_each_with_its_own_lease(etcd, domain):
    count = 24
    with HeldConnection(EtcdConfig(etcd.endpoint), queued=count - 1) as connection:
        registrars = [Registrar(info, connection=connection, ttl=5, heartbeat=1)
                      for info in _infos(domain, count)]
        try:
            assert _start_all(registrars) == [None] * count
            # the held first start, then every other one in one batch of 23
            assert connection.grant_batches == ["granting a lease", "granting 23 leases"]
            assert connection._starts.batches == 2
            leases = {r.lease_id for r in registrars}
            assert len(leases) == count and None not in leases
            for registrar in registrars:
                assert registrar.registered
                assert _stored(connection, registrar) == (registrar.info.to_json(),
                                                          registrar.lease_id)
                assert connection.lease_ttl(registrar.lease_id) > 0
            # stopping one removes its key only
            registrars[5].close()
            assert _stored(connection, registrars[5]) is None
            for registrar in registrars[:5] + registrars[6:]:
                assert _stored(connection, registrar) is not None
        finally:
            for registrar in registrars:
                registrar.close()
        for registrar in registrars:
            assert _stored(connection, registrar) is None


def test_a_batched_registration_is_kept_alive_and_put_back(etcd, domain):
    """After a batched start the registrar's own loop takes over as before: it refreshes the
    lease and puts back a deleted record."""
    count = 8
    with HeldConnection(EtcdConfig(etcd.endpoint), queued=count - 1) as connection:
        registrars = [Registrar(info, connection=connection, ttl=2, heartbeat=0.3)
                      for info in _infos(domain, count)]
        try:
            assert _start_all(registrars) == [None] * count
            victim = registrars[3]
            deadline = time.monotonic() + 15
            while victim.refreshes < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert victim.refreshes >= 2
            connection.delete(victim.key)
            while victim.registrations < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert victim.registrations == 2
            assert _stored(connection, victim) is not None
            time.sleep(2.5)  # over one TTL: every lease was refreshed, every record is there
            assert all(_stored(connection, r) is not None for r in registrars)
        finally:
            for registrar in registrars:
                registrar.close()


def test_one_refused_record_fails_only_its_own_start(etcd_factory, domain, caplog):
    """etcd refuses the batch's transaction (over its --max-request-bytes because of one
    record): the records are written one by one and only the big one fails."""
    caplog.set_level(logging.INFO, logger="hprose_cluster.etcd")
    server = etcd_factory(extra_args=["--max-request-bytes", "20000"])
    count = 12
    with HeldConnection(EtcdConfig(server.endpoint), queued=count - 1) as connection:
        infos = _infos(domain, count)
        infos[7] = ServerInfo(domain, "tcp://127.0.0.1:29999", cpu=1,
                              extra={"Padding": "x" * 25000})
        registrars = [Registrar(info, connection=connection, ttl=5, heartbeat=1)
                      for info in infos]
        try:
            errors = _start_all(registrars)
            big = errors.pop(7)
            assert isinstance(big, RegistrationError), big
            assert "tcp://127.0.0.1:29999" in str(big) and "too large" in str(big), str(big)
            assert errors == [None] * (count - 1)
            assert any("one by one" in r.getMessage() for r in caplog.records)  # one batch
            assert registrars[7].lease_id is None and not registrars[7].registered
            assert _stored(connection, registrars[7]) is None
            others = registrars[:7] + registrars[8:]
            assert len({r.lease_id for r in others}) == count - 1
            for registrar in others:
                assert _stored(connection, registrar) == (registrar.info.to_json(),
                                                          registrar.lease_id)
            # the failed start's lease is revoked (without waiting): no lease is left over
            # beyond the registered ones and those granted ahead for the next burst
            expected = {r.lease_id for r in others} | connection._starts.spares
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                leases = _lease_ids(server)
                if leases == expected:
                    break
                time.sleep(0.1)
            assert leases == expected
        finally:
            for registrar in registrars:
                registrar.close()


def test_a_burst_grants_leases_ahead_used_only_while_young(etcd_factory, domain, monkeypatch):
    """A batch of a burst grants leases for the batches after it: the next starts take them
    (no grant call of their own), each still its own lease; a start whose heartbeat leaves
    no slack for an older lease gets a new one, and spares left over are revoked."""
    from hprose_cluster.etcd import batch

    monkeypatch.setattr(batch, "SPARE_LIFETIME", 60.0)  # however slow this machine is now
    server = etcd_factory()
    count = 8
    with HeldConnection(EtcdConfig(server.endpoint), queued=count - 1) as connection:
        infos = _infos(domain, 3 * count)
        burst = [Registrar(info, connection=connection, ttl=10, heartbeat=1)
                 for info in infos[:count]]
        later = [Registrar(info, connection=connection, ttl=10, heartbeat=1)
                 for info in infos[count:2 * count]]
        strict = [Registrar(info, connection=connection, ttl=2, heartbeat=1.98)
                  for info in infos[2 * count:]]
        everyone = burst + later + strict
        try:
            assert _start_all(burst) == [None] * count
            spares = connection._starts.spares
            assert len(spares) >= count and not spares & {r.lease_id for r in burst}
            grants = len(connection.grant_batches)
            assert _start_all(later) == [None] * count
            assert len(connection.grant_batches) == grants  # served by the spares
            assert {r.lease_id for r in later} <= spares
            assert _start_all(strict) == [None] * count  # max_age 0.01 s: no spare is young
            assert len(connection.grant_batches) > grants
            assert not {r.lease_id for r in strict} & spares
            leases = [r.lease_id for r in everyone]
            assert len(set(leases)) == len(leases)
            for registrar in everyone:
                assert _stored(connection, registrar) == (registrar.info.to_json(),
                                                          registrar.lease_id)
                assert connection.lease_ttl(registrar.lease_id) > 0
            # a spare older than its lifetime is revoked by the next batch of grants
            monkeypatch.setattr(batch, "SPARE_LIFETIME", 0.3)
            time.sleep(0.4)
            extra = Registrar(ServerInfo(domain, "tcp://127.0.0.1:29998", cpu=1),
                              connection=connection, ttl=10, heartbeat=1).start()
            everyone.append(extra)
            expected = {r.lease_id for r in everyone if r.registered} | connection._starts.spares
            deadline = time.monotonic() + 10
            while _lease_ids(server) != expected and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _lease_ids(server) == expected
        finally:
            for registrar in everyone:
                registrar.close()


def test_concurrent_starts_against_a_dead_etcd_all_fail_within_the_timeout(domain):
    from hprose_cluster.embedded import free_port

    config = EtcdConfig("127.0.0.1:%d" % free_port(), timeout=2)
    with EtcdConnection(config) as connection:
        registrars = [Registrar(info, connection=connection, ttl=5, heartbeat=1)
                      for info in _infos(domain, 16)]
        began = time.monotonic()
        errors = _start_all(registrars)
        elapsed = time.monotonic() - began
        for registrar, error in zip(registrars, errors):
            assert isinstance(error, RegistrationError), error
            assert registrar.info.url in str(error) and config.endpoints[0] in str(error)
        assert elapsed < config.timeout + 1
        assert threading.active_count() < 100


def test_a_batch_that_met_a_dead_member_is_retried_on_a_live_one(etcd, domain):
    """The batch goes to a member that does not answer: each of its starts tries again on
    the next endpoint alone (as a start always did), and every one registers."""
    from hprose_cluster.embedded import free_port

    class FailureCounting(EtcdConnection):
        failed: list[str] = []

        def call(self, what: str, func: Callable[[Any], Any]) -> Any:
            try:
                return super().call(what, func)
            except Exception:
                self.failed.append(what)
                raise

    dead = "127.0.0.1:%d" % free_port()
    config = EtcdConfig((dead, etcd.endpoint), timeout=3)
    with FailureCounting(config) as connection:
        client = connection._current()
        client._current_endpoint_label = next(label for label in client.endpoints
                                              if label.endswith(dead.rsplit(":", 1)[1]))
        registrars = [Registrar(info, connection=connection, ttl=5, heartbeat=1)
                      for info in _infos(domain, 12)]
        try:
            began = time.monotonic()
            assert _start_all(registrars) == [None] * 12
            assert time.monotonic() - began < config.timeout + 2
            assert connection.failed and connection.failed[0].startswith("granting")
            assert len({r.lease_id for r in registrars}) == 12
            for registrar in registrars:
                assert _stored(connection, registrar) == (registrar.info.to_json(),
                                                          registrar.lease_id)
        finally:
            for registrar in registrars:
                registrar.close()
