"""gunicorn server hooks: a WSGI hprose service served by gunicorn registers itself.

    HPROSE_CLUSTER_DOMAIN=http.hello.server \\
        gunicorn -c python:hprose_cluster.gunicorn -b 127.0.0.1:8000 -w 4 module:app

registers one record per bound address in the domain once the workers are ready, keeps it
alive while gunicorn runs (worker restarts and reloads leave it alone), and revokes it first
on SIGTERM, SIGINT or SIGQUIT, before the workers are told to drain, so clients move away
before any connection closes.  An existing config imports the same hooks::

    from hprose_cluster.gunicorn import when_ready, post_worker_init, on_exit

(call them from your own hooks of the same names if you have some).

Settings come from the environment: ``HPROSE_CLUSTER_DOMAIN`` (required), the usual
``HPROSE_CLUSTER_ETCD*`` and ``HPROSE_CLUSTER_PREFIX``, and optionally
``HPROSE_CLUSTER_ADVERTISE_URL`` (comma-separated, one per bound address, in ``-b`` order),
``HPROSE_CLUSTER_TTL`` (10), ``HPROSE_CLUSTER_HEARTBEAT`` (3), ``HPROSE_CLUSTER_CPU`` and
``HPROSE_CLUSTER_DRAIN_DELAY`` (0.5 s between leaving the registry and a graceful stop).

Why a keeper process: the records are kept alive by one small child of the master (the
"keeper"), not by threads in the master, because the master forks every worker and a fork of
a process with live gRPC threads hands the worker a gRPC state it cannot use (an app that
calls other services through etcd would hang).  The keeper is started in its own session
(terminal signals do not reach it), learns that a worker is ready through a pipe the workers
write one byte to, and revokes its records when the master tells it to stop, when the master
dies (PDEATHSIG) or when the pipe closes.  It is no worker: worker restarts do not touch it.

Only the three hook names are gunicorn settings here: gunicorn reads every module-level name
of a config module that matches a setting, so nothing else at module level may.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

__all__ = ["when_ready", "post_worker_init", "on_exit"]

ENV_DOMAIN = "HPROSE_CLUSTER_DOMAIN"
ENV_ADVERTISE_URL = "HPROSE_CLUSTER_ADVERTISE_URL"
ENV_TTL = "HPROSE_CLUSTER_TTL"
ENV_HEARTBEAT = "HPROSE_CLUSTER_HEARTBEAT"
ENV_CPU = "HPROSE_CLUSTER_CPU"
ENV_DRAIN_DELAY = "HPROSE_CLUSTER_DRAIN_DELAY"

_log = logging.getLogger("hprose_cluster.gunicorn")


class _State:
    """What the master holds between its hooks (one master per process)."""

    keeper: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None  # the write end of the ready pipe, inherited by the workers
    left = False


_master = _State()


# --- hooks (run by gunicorn) ---------------------------------------------------------------

def when_ready(server: Any) -> None:
    """Master, sockets bound, no worker yet: start the keeper, make ``stop`` leave first."""
    domain = os.environ.get(ENV_DOMAIN, "").strip()
    if not domain:
        server.log.warning("hprose-cluster: %s is not set; not registering", ENV_DOMAIN)
        return
    problem = _check_settings(domain)
    if problem is not None:  # a typo must not leave a server silently unregistered
        server.log.error("hprose-cluster: %s; not starting", problem)
        sys.exit(1)
    scheme = "https" if server.cfg.is_ssl else "http"
    addresses = []
    for listener in server.LISTENERS:
        address = listener.sock.getsockname()
        if isinstance(address, tuple):
            addresses.append("%s:%d" % (address[0], address[1]))
        else:
            server.log.warning("hprose-cluster: %s is not a TCP address; not registered",
                               listener)
    if not addresses:
        return
    read_fd, write_fd = os.pipe()
    try:
        _master.keeper = subprocess.Popen(
            [sys.executable, "-m", "hprose_cluster.gunicorn", "--domain", domain,
             "--scheme", scheme, "--ready-fd", str(read_fd), "--parent", str(os.getpid()),
             *addresses],
            pass_fds=(read_fd,), stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        os.close(read_fd)
    _master.ready_fd = write_fd
    _master.left = False
    original_stop = server.stop

    def stop(graceful: bool = True) -> None:
        _leave(server, graceful)
        original_stop(graceful)

    server.stop = stop
    server.log.info("hprose-cluster: %s will be registered in %r once a worker is ready",
                    ", ".join(addresses), domain)


def post_worker_init(worker: Any) -> None:
    """Worker, app loaded: tell the keeper a worker can answer (the first one counts)."""
    fd, _master.ready_fd = _master.ready_fd, None
    if fd is None:
        return
    try:
        os.write(fd, b"1")
    except OSError:
        pass
    finally:
        os.close(fd)  # only the master's copy may keep the pipe open


def on_exit(server: Any) -> None:
    """Master, last thing: leave the registry if stop() did not (an exit on an error)."""
    _leave(server, graceful=False)


def _leave(server: Any, graceful: bool) -> None:
    """Have the keeper revoke every record and exit, then (graceful) let clients see it."""
    keeper = _master.keeper
    if keeper is None or _master.left:
        return
    _master.left = True
    if keeper.poll() is None:
        keeper.terminate()
        try:
            keeper.wait(_float(ENV_TTL, 10.0) + 5)  # a revoke is bounded by the etcd timeout
        except subprocess.TimeoutExpired:
            server.log.warning("hprose-cluster: the keeper did not stop; killing it (the "
                               "records expire with their lease)")
            keeper.kill()
            keeper.wait()
        if graceful:
            time.sleep(_float(ENV_DRAIN_DELAY, 0.5))
    else:
        server.log.warning("hprose-cluster: the keeper had exited (code %s); the records "
                           "expire with their lease", keeper.returncode)
    if _master.ready_fd is not None:
        os.close(_master.ready_fd)
        _master.ready_fd = None


def _check_settings(domain: str) -> str | None:
    """What is wrong with the registration settings, in words, or None."""
    from .errors import ConfigError
    from .etcd import EtcdConfig
    from .record import validate_domain

    try:
        validate_domain(domain)
        EtcdConfig.from_env()
        ttl = int(os.environ.get(ENV_TTL) or 10)
        heartbeat = float(os.environ.get(ENV_HEARTBEAT) or 3.0)
        if not 0 < heartbeat < ttl:
            return "%s (%g) must be between 0 and %s (%d)" % (ENV_HEARTBEAT, heartbeat,
                                                              ENV_TTL, ttl)
        if os.environ.get(ENV_CPU):
            int(os.environ[ENV_CPU])
        float(os.environ.get(ENV_DRAIN_DELAY) or 0.5)
    except (ConfigError, ValueError) as error:
        return str(error)
    return None


def _float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


# --- the keeper (python -m hprose_cluster.gunicorn) -----------------------------------------

def _die_with(parent: int) -> None:
    """SIGTERM (revoke, exit) when the master dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _urls(scheme: str, addresses: list[str]) -> list[str]:
    from .server import outbound_host

    advertised = [u.strip() for u in os.environ.get(ENV_ADVERTISE_URL, "").split(",")
                  if u.strip()]
    if advertised:
        if len(advertised) != len(addresses):
            raise SystemExit("hprose-cluster: %s has %d URLs for %d bound addresses"
                             % (ENV_ADVERTISE_URL, len(advertised), len(addresses)))
        return advertised
    urls = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        if host in ("0.0.0.0", "::", ""):
            host = outbound_host()
        urls.append("%s://%s:%s/" % (scheme, "[%s]" % host if ":" in host else host, port))
    return urls


def keeper_main(argv: list[str] | None = None) -> int:
    from .cli.signals import StopSignals
    from .errors import ConfigError, EtcdError
    from .etcd import EtcdConfig, EtcdConnection
    from .record import ServerInfo, new_uuid, usable_cpus
    from .registrar import DEFAULT_HEARTBEAT, DEFAULT_TTL, Registrar

    parser = argparse.ArgumentParser(prog="python -m hprose_cluster.gunicorn")
    parser.add_argument("--domain", required=True)
    parser.add_argument("--scheme", choices=("http", "https"), default="http")
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("addresses", nargs="+", metavar="HOST:PORT")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S %z")
    with StopSignals() as stop:
        _die_with(args.parent)
        try:
            config = EtcdConfig.from_env()
            cpu = int(os.environ.get(ENV_CPU) or usable_cpus())
            infos = [ServerInfo(args.domain, url, new_uuid(), cpu)
                     for url in _urls(args.scheme, args.addresses)]
            ttl = int(os.environ.get(ENV_TTL) or DEFAULT_TTL)
            heartbeat = _float(ENV_HEARTBEAT, DEFAULT_HEARTBEAT)
        except (ConfigError, ValueError) as error:
            _log.error("hprose-cluster: not registering: %s", error)
            return 2
        if not _wait_ready(args.ready_fd, stop):
            return 0
        with EtcdConnection(config) as connection:
            registrars = []
            try:
                for info in infos:
                    registrar = Registrar(info, connection=connection, ttl=ttl,
                                          heartbeat=heartbeat)
                    while not stop.requested:
                        try:
                            registrar.start()
                            break
                        except EtcdError as error:  # etcd away: keep trying, as servers do
                            _log.warning("hprose-cluster: %s (retrying in 1 s)", error)
                            stop.wait(1.0)
                    else:
                        break
                    registrars.append(registrar)
                    _log.info("hprose-cluster: registered %s as %s", info.url, registrar.key)
                stop.wait_until_stopped(lambda: _drain(args.ready_fd, stop), interval=0.5)
            finally:
                for registrar in registrars:
                    registrar.close()
                    _log.info("hprose-cluster: deregistered %s", registrar.key)
    return 0


def _wait_ready(fd: int, stop: Any) -> bool:
    """Until a worker writes its byte (True), or a stop or the pipe's end (False)."""
    while not stop.requested:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            return bool(os.read(fd, 64))
    return False


def _drain(fd: int, stop: Any) -> None:
    """Read later workers' bytes; an end of the pipe means the master is gone."""
    ready, _, _ = select.select([fd], [], [], 0)
    if ready and not os.read(fd, 64):
        stop.request()


if __name__ == "__main__":
    sys.exit(keeper_main())
