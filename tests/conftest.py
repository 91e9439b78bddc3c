"""Shared pytest fixtures: real etcd servers started by the tests.

Sections (add new fixtures in the section they belong to):
  1. etcd servers: ``etcd`` (shared), ``etcd_factory`` (disposable), ``etcd_cluster``
  2. isolation helpers: ``domain``
  3. session safety net: no etcd started by the tests survives the session
  4. hello servers: ``hello_servers``
  5. leftovers: ``sandbox`` (a marker and a TMPDIR for commands a test starts)

Tests that do not break etcd share the session's ``etcd`` and isolate themselves with a unique
``domain``; tests that kill, pause, wipe or restart etcd get their own from ``etcd_factory``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Iterator
from uuid import uuid4

import pytest

from hprose_cluster import embedded
from hprose_cluster.embedded import EmbeddedEtcd, EtcdCluster

log = logging.getLogger("hprose_cluster.tests")


# --------------------------------------------------------------------------- 1. etcd servers


@pytest.fixture(scope="session")
def etcd() -> Iterator[EmbeddedEtcd]:
    """One etcd for the whole session, for tests that do not stop, pause or wipe it."""
    server = EmbeddedEtcd(name="session")
    server.start()
    try:
        yield server
    finally:
        server.close()


EtcdFactory = Callable[..., EmbeddedEtcd]


@pytest.fixture
def etcd_factory() -> Iterator[EtcdFactory]:
    """A callable returning a fresh, started EmbeddedEtcd (keyword arguments go to
    EmbeddedEtcd); every one is closed at teardown, whatever the test did to it."""
    made: list[EmbeddedEtcd] = []

    def make(**kwargs: Any) -> EmbeddedEtcd:
        kwargs.setdefault("name", f"f{len(made)}")
        server = EmbeddedEtcd(**kwargs)
        made.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in made:
            try:
                server.close()
            except Exception:
                log.exception("closing %r failed; killing it", server)
                server.kill()


@pytest.fixture
def etcd_cluster() -> Iterator[EtcdCluster]:
    """A started 3-member static cluster, closed at teardown."""
    cluster = EtcdCluster(3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# --------------------------------------------------------------------------- 2. isolation


@pytest.fixture
def domain() -> str:
    """A service domain no other test uses, so tests can share one etcd."""
    return f"t{uuid4().hex[:10]}.svc"


# --------------------------------------------------------------------------- 3. safety net


@pytest.fixture(scope="session", autouse=True)
def _no_etcd_survives() -> Iterator[None]:
    """At the end of the session, kill any etcd a test (or fixture) left running."""
    yield
    leftovers = embedded.live_instances()
    if leftovers:
        warnings.warn(f"etcd servers left running by the tests, killing them: {leftovers}")
    embedded.kill_all()


# --------------------------------------------------------------------------- 4. hello servers


@pytest.fixture
def hello_servers(etcd: EmbeddedEtcd) -> Iterator[Callable[..., Any]]:
    """A callable starting an in-process hello server (``transport="tcp"`` or ``"http"``)
    registered in ``domain`` on the session etcd with a short TTL; all stopped at teardown."""
    from hprose_cluster.demo import make_server

    started: list[Any] = []

    def start(domain: str, transport: str = "tcp", **kwargs: Any) -> Any:
        kwargs.setdefault("ttl", 2)
        kwargs.setdefault("heartbeat", 0.5)
        server = make_server(transport, domain, etcd=etcd.endpoint, **kwargs)
        server.drain_delay = 0.05
        started.append(server)
        server.start(block=False)
        return server

    try:
        yield start
    finally:
        for server in started:
            try:
                server.stop(drain_timeout=2)
            except Exception:
                log.exception("stopping %r failed", server)


# --------------------------------------------------------------------------- 5. leftovers


@pytest.fixture
def sandbox(tmp_path: Any) -> Iterator[dict[str, str]]:
    """Environment entries for commands a test starts: a marker every child inherits and a
    TMPDIR of their own (see tests.support.procs); what carries the marker is killed at
    teardown, whatever the test did."""
    from tests.support.procs import MARK, kill_marked, new_mark

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {MARK: new_mark(), "TMPDIR": str(tmpdir)}
    try:
        yield env
    finally:
        kill_marked(env[MARK])
