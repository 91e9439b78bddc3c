"""The ``hprose-cluster`` command, run as a user runs it: a subprocess against a real etcd.

Servers are real ClusterTcpServer/ClusterHttpServer instances in this process (ttl=2,
heartbeat=0.5); etcd is the session's.  Long-running subcommands (watch, register, etcd) are
started with Popen, read line by line with a deadline, and stopped with SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator
from uuid import uuid4

import pytest

from hprose_cluster import ClusterClient
from hprose_cluster.cli import build_parser
from hprose_cluster.cli import main as cli_main
from hprose_cluster.demo import make_server
from hprose_cluster.embedded import EmbeddedEtcd, free_port
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from hprose_cluster.transport.tcp import TcpServer

pytestmark = pytest.mark.timeout(120)

COMMAND = [sys.executable, "-m", "hprose_cluster"]


def _env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPROSE_CLUSTER_")}
    env["HPROSE_CLUSTER_ETCD"] = endpoint
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(endpoint: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(COMMAND + list(args), env=_env(endpoint), capture_output=True,
                          text=True, timeout=timeout)


class Lines:
    """A running subcommand whose stdout is read on a thread, so reads can have deadlines."""

    def __init__(self, endpoint: str, *args: str):
        self.proc = subprocess.Popen(COMMAND + list(args), env=_env(endpoint), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True, name="test-cli-reader")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, predicate, timeout: float = 20) -> str:
        """The first new line for which ``predicate`` holds; fails at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching line within %g s; got %r" % (timeout, self.seen))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("the command exited (%s) before a matching line; got %r; "
                                     "stderr %r" % (self.proc.wait(5), self.seen, self.stderr()))
            self.seen.append(line)
            if predicate(line):
                return line

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def lines(etcd: EmbeddedEtcd) -> Iterator:
    started: list[Lines] = []

    def start(*args: str) -> Lines:
        started.append(Lines(etcd.endpoint, *args))
        return started[-1]

    try:
        yield start
    finally:
        for item in started:
            item.close()


def _unique(kind: str) -> str:
    return "%s%s.cli" % (kind, uuid4().hex[:8])


@pytest.fixture(scope="module")
def cluster(etcd: EmbeddedEtcd) -> Iterator[dict]:
    """Two TCP servers in one domain, one HTTP server in another (ttl=2, heartbeat=0.5)."""
    tcp_domain, http_domain = _unique("tcp"), _unique("http")
    servers = [make_server("tcp", tcp_domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5),
               make_server("tcp", tcp_domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5),
               make_server("http", http_domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5)]
    for server in servers:
        server.drain_delay = 0
        server.start(block=False)
    try:
        yield {"tcp": tcp_domain, "http": http_domain, "servers": servers,
               "endpoint": etcd.endpoint}
    finally:
        for server in servers:
            server.stop()


# --- ls and get ----------------------------------------------------------------------------------

def test_ls_lists_domains_with_counts_and_warns_about_malformed_records(cluster, etcd):
    bad_domain = _unique("bad")
    bad_key = "hprose-service/%s/broken" % bad_domain
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as connection:
        connection.put(bad_key, b"{not json")
        try:
            table = run(etcd.endpoint, "ls")
            as_json = run(etcd.endpoint, "ls", "--json")
        finally:
            connection.delete(bad_key)
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["DOMAIN", "SERVERS", "SKIPPED"]
    assert [cluster["tcp"], "2", "0"] in rows
    assert [cluster["http"], "1", "0"] in rows
    assert [bad_domain, "0", "1"] in rows
    assert "warning: skipping record %s is not valid JSON" % bad_key in table.stderr
    assert as_json.returncode == 0, as_json.stderr
    listed = {row["domain"]: row for row in json.loads(as_json.stdout)}
    assert listed[cluster["tcp"]] == {"domain": cluster["tcp"], "servers": 2, "skipped": 0}
    assert listed[cluster["http"]]["servers"] == 1
    assert listed[bad_domain] == {"domain": bad_domain, "servers": 0, "skipped": 1}


def test_ls_domain_shows_each_server_with_its_lease_ttl(cluster, etcd):
    servers = cluster["servers"][:2]
    table = run(etcd.endpoint, "ls", cluster["tcp"])
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["UUID", "URL", "CPU", "TTL"]
    rows = {row[0]: row for row in (line.split() for line in lines[1:])}
    assert set(rows) == {s.uuid for s in servers}
    for server in servers:
        uuid, url, cpu, ttl = rows[server.uuid]
        assert (url, int(cpu)) == (server.url, server.cpu)
        assert 0 <= int(ttl) <= 2
    # Columns are aligned: every URL starts at the same offset.
    assert len({line.index("tcp4://") for line in lines[1:]}) == 1

    as_json = run(etcd.endpoint, "ls", cluster["tcp"], "--json")
    assert as_json.returncode == 0, as_json.stderr
    entries = json.loads(as_json.stdout)
    assert sorted(e["value"]["UUID"] for e in entries) == sorted(s.uuid for s in servers)
    for entry in entries:
        assert entry["key"] == "hprose-service/%s/%s" % (cluster["tcp"], entry["value"]["UUID"])
        assert entry["lease"] > 0 and 0 <= entry["ttl"] <= 2 and entry["mod_revision"] > 0


def test_get_prints_the_record_as_stored(cluster, etcd):
    server = cluster["servers"][2]
    raw = run(etcd.endpoint, "get", cluster["http"], server.uuid)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.rstrip("\n").encode() == server.info.to_json()

    as_json = run(etcd.endpoint, "get", cluster["http"], server.uuid, "--json")
    assert as_json.returncode == 0, as_json.stderr
    entry = json.loads(as_json.stdout)
    assert entry["key"] == server.info.key()
    assert entry["lease"] == server.registrar.lease_id
    assert 0 <= entry["ttl"] <= 2 and entry["mod_revision"] > 0
    assert entry["value"] == json.loads(server.info.to_json())

    missing = run(etcd.endpoint, "get", cluster["http"], "no-such-uuid")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.strip() == ("hprose-cluster: error: no server no-such-uuid in domain "
                                      "%r (etcd %s)" % (cluster["http"], etcd.endpoint))


def test_unknown_domain_fails_with_a_message_naming_it(etcd):
    domain = _unique("none")
    for args in (["ls", domain], ["call", domain, "hello", "x"]):
        result = run(etcd.endpoint, *args)
        assert result.returncode == 1, args
        assert result.stdout == ""
        assert result.stderr.startswith("hprose-cluster: error: ")
        assert repr(domain) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no traceback


# --- call ----------------------------------------------------------------------------------------

def test_call_prints_results_and_reports_remote_errors(cluster, etcd):
    hello = run(etcd.endpoint, "call", cluster["tcp"], "hello", "world")
    assert (hello.returncode, hello.stdout, hello.stderr) == (0, "Hello world\n", "")

    total = run(etcd.endpoint, "call", cluster["http"], "sum", "1", "2", "--json")
    assert (total.returncode, json.loads(total.stdout)) == (0, 3)

    # A JSON string argument stays a string: "42" is not the number 42.
    quoted = run(etcd.endpoint, "call", cluster["tcp"], "hello", '"42"', "--json",
                 "--idempotent", "--timeout", "5")
    assert (quoted.returncode, json.loads(quoted.stdout)) == (0, "Hello 42")

    failed = run(etcd.endpoint, "call", cluster["tcp"], "fail")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.strip() == ("hprose-cluster: error: fail failed on domain %r: boom"
                                     % cluster["tcp"])

    debug = run(etcd.endpoint, "call", cluster["tcp"], "fail", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# --- watch ---------------------------------------------------------------------------------------

def test_watch_sees_servers_join_and_leave(cluster, etcd, lines):
    domain = cluster["tcp"]
    everything = lines("watch")
    one_domain = lines("watch", domain, "--json")
    present = {s.uuid for s in cluster["servers"]}
    for _ in present:  # both print the servers already there first
        everything.wait_for(lambda line: " present " in line and line.split()[3] in present)
    for _ in range(2):
        one_domain.wait_for(lambda line: json.loads(line)["event"] == "present")

    newcomer = make_server("tcp", domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5)
    newcomer.drain_delay = 0
    newcomer.start(block=False)
    try:
        line = everything.wait_for(lambda line: newcomer.uuid in line)
        assert line.split()[1:] == ["joined", domain, newcomer.uuid, newcomer.url]
        event = json.loads(one_domain.wait_for(lambda line: newcomer.uuid in line))
        assert (event["event"], event["domain"], event["url"]) == ("joined", domain, newcomer.url)
    finally:
        newcomer.stop()
    assert everything.wait_for(lambda line: newcomer.uuid in line).split()[1] == "left"
    assert json.loads(one_domain.wait_for(lambda line: newcomer.uuid in line))["event"] == "left"

    assert everything.stop(signal.SIGINT) == 0
    assert one_domain.stop(signal.SIGTERM) == 0
    assert "Traceback" not in everything.stderr() + one_domain.stderr()


def test_watch_of_the_whole_prefix_reports_a_record_deleted_behind_its_back(etcd, lines):
    """A put and a delete that no server made (what `etcdctl` would do) show up too."""
    domain = _unique("raw")
    key = "hprose-service/%s/u1" % domain
    watcher = lines("watch", "--json")
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as connection:
        # Wait until the watch is up: its first read is done when it printed or stayed quiet;
        # a record put repeatedly until it is seen removes the race.
        seen = threading.Event()

        def keep_putting() -> None:
            while not seen.is_set():
                connection.put(key, json.dumps({"UUID": "u1", "Domain": domain,
                                                "ServerUrl": "tcp://h:1", "CPU": 1}).encode())
                seen.wait(0.5)

        putter = threading.Thread(target=keep_putting, daemon=True)
        putter.start()
        try:
            event = json.loads(watcher.wait_for(lambda line: domain in line))
        finally:
            seen.set()
            putter.join(5)
        assert event["event"] in ("joined", "present") and event["uuid"] == "u1"
        connection.delete(key)
    assert json.loads(watcher.wait_for(lambda line: domain in line))["event"] == "left"
    assert watcher.stop() == 0


# --- register ------------------------------------------------------------------------------------

def test_register_makes_a_plain_server_reachable_until_interrupted(etcd, lines):
    domain = _unique("plain")
    server = TcpServer("127.0.0.1", 0)
    server.addFunction(lambda name: "plain hello %s" % name, "hello")
    server.start(block=False)
    try:
        registered = lines("register", domain, server.url, "--cpu", "3", "--ttl", "2",
                           "--heartbeat", "0.5")
        key = registered.wait_for(lambda line: True)
        assert key.startswith("hprose-service/%s/" % domain)
        with ClusterClient(domain, etcd=etcd.endpoint, timeout=5) as client:
            assert client.hello("bob") == "plain hello bob"
            (info,) = client.servers()
            assert (info.url, info.cpu, info.key()) == (server.url, 3, key)
        assert registered.stop(signal.SIGINT) == 0
        # Revoked on exit, not left to expire: gone right away.
        with EtcdConnection(EtcdConfig(etcd.endpoint)) as connection:
            assert not connection.get(key).kvs
        assert "removed %s" % key in registered.stderr()
    finally:
        server.stop()


def test_register_json_and_given_uuid_then_sigterm(etcd, lines):
    domain = _unique("plain")
    uuid = "fixed-" + uuid4().hex[:6]
    port = free_port()  # nothing listens there: registering still works, with a warning
    registered = lines("register", domain, "http://127.0.0.1:%d/" % port, "--uuid", uuid,
                       "--ttl", "2", "--heartbeat", "0.5", "--json")
    record = json.loads(registered.wait_for(lambda line: True))
    assert record["key"] == "hprose-service/%s/%s" % (domain, uuid)
    assert (record["uuid"], record["ttl"]) == (uuid, 2)
    time.sleep(2.5)  # longer than the TTL: the heartbeat keeps it
    listed = run(etcd.endpoint, "get", domain, uuid, "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["lease"] == record["lease"]
    assert registered.stop(signal.SIGTERM) == 0
    assert "nothing answers at" in registered.stderr()
    assert run(etcd.endpoint, "get", domain, uuid).returncode == 1


# --- usage errors and an unreachable etcd --------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["ls", "bad domain"], "hprose-cluster: error: domain 'bad domain' contains ' '"),
    (["get", "a.b", "x/y"], "hprose-cluster: error: UUID 'x/y' contains '/'"),
    (["register", "a.b", "ftp://h:1"], "hprose-cluster: error: ServerUrl 'ftp://h:1' has scheme"),
    (["register", "a.b", "tcp://h:1", "--cpu", "0"], "hprose-cluster: error: CPU must be"),
    (["register", "a.b", "tcp://h:1", "--ttl", "2", "--heartbeat", "3"], "heartbeat must be"),
    (["--etcd", "ftp://h:1", "ls"], "scheme must be http or https"),
    (["call", "a.b", "m", "--timeout", "x"], "invalid float value: 'x'"),
])
def test_usage_errors_exit_2_with_one_clear_line(etcd, args, message):
    result = run(etcd.endpoint, *args)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_etcd_is_named():
    port = free_port()  # nobody listens here
    endpoint = "127.0.0.1:%d" % port
    for args in (["ls"], ["watch", "x.y"], ["call", "x.y", "hello"]):
        result = run(endpoint, *args, timeout=60)
        assert result.returncode == 1, (args, result)
        assert result.stderr.startswith("hprose-cluster: error: ")
        assert endpoint in result.stderr and "Connection refused" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_silent_etcd_fails_within_the_timeout(etcd_factory, capsys):
    """A paused (SIGSTOPped) etcd accepts connections and never answers: every command must
    give up after --timeout, naming the endpoint.  Run in-process so that the bound measures
    the command, not the interpreter start on a busy machine."""
    server = etcd_factory()
    server.pause()
    try:
        for args in (["ls"], ["ls", "x.y"], ["get", "x.y", "u"], ["watch", "x.y"],
                     ["watch"], ["call", "x.y", "hello"]):
            started = time.monotonic()
            code = cli_main(["--etcd", server.endpoint, "--timeout", "1"] + args)
            elapsed = time.monotonic() - started
            err = capsys.readouterr().err
            assert code == 1, (args, err)
            assert err.startswith("hprose-cluster: error: ") and server.endpoint in err, err
            assert elapsed < 1 + 4, (args, elapsed)  # the timeout plus slack, not a hang
    finally:
        server.resume()


def test_every_subcommand_has_help_with_an_example():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    assert set(subparsers) == {"ls", "get", "watch", "call", "register", "etcd", "demo", "top"}
    for name, sub in subparsers.items():
        text = sub.format_help()
        assert "example:" in text and "hprose-cluster %s" % name in text, name
    shown = subprocess.run(COMMAND + ["watch", "--help"], capture_output=True, text=True,
                           timeout=30)
    assert shown.returncode == 0 and "hprose-cluster watch tcp.hello.server" in shown.stdout


# --- etcd and demo -------------------------------------------------------------------------------

def test_etcd_subcommand_serves_until_sigterm(tmp_path, lines):
    data_dir = tmp_path / "data"
    client_port, peer_port = free_port(), free_port()
    server = lines("etcd", "--data-dir", str(data_dir), "--client-port", str(client_port),
                   "--peer-port", str(peer_port))
    endpoint = "127.0.0.1:%d" % client_port
    assert server.wait_for(lambda line: line.startswith("etcd is up"), 30).startswith(
        "etcd is up at %s" % endpoint)
    assert server.wait_for(lambda line: True) == "export HPROSE_CLUSTER_ETCD=%s" % endpoint
    with EtcdConnection(EtcdConfig(endpoint, timeout=3)) as connection:
        connection.put("hprose-service/x.y/z", b"{}")
        assert connection.get("hprose-service/x.y/z").kvs[0].value == b"{}"
    assert server.stop(signal.SIGTERM, timeout=30) == 0
    assert (data_dir / "member").is_dir()  # a given data dir is kept
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", client_port), timeout=2).close()


@pytest.mark.slow
def test_demo_subcommand_runs_without_a_failed_call():
    result = subprocess.run(COMMAND + ["demo", "--rounds", "2"], capture_output=True, text=True,
                            timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed calls" in result.stdout


def test_watch_of_the_whole_prefix_survives_an_etcd_restart(etcd_factory):
    """The etcd client's watch dies with its stream; `watch` must re-read and watch again."""
    server = etcd_factory()
    endpoint = server.endpoint
    domain = _unique("restart")
    watcher = Lines(endpoint, "watch")
    try:
        with EtcdConnection(EtcdConfig(endpoint, timeout=3)) as connection:
            def record(uuid: str) -> bytes:
                return json.dumps({"UUID": uuid, "Domain": domain, "ServerUrl": "tcp://h:1",
                                   "CPU": 1}).encode()

            connection.put("hprose-service/%s/before" % domain, record("before"))
            watcher.wait_for(lambda line: "before" in line)
            connection.put("hprose-service/%s/ready" % domain, record("ready"))
            watcher.wait_for(lambda line: "ready" in line)  # the watch is live
            server.stop()
            server.start()
            deadline = time.monotonic() + 20
            while True:  # the connection itself reconnects; retry while etcd comes back
                try:
                    connection.put("hprose-service/%s/after" % domain, record("after"))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            line = watcher.wait_for(lambda line: "after" in line)
            assert line.split()[1:4] == ["joined", domain, "after"]
            connection.delete("hprose-service/%s/before" % domain)
            assert watcher.wait_for(lambda line: "before" in line).split()[1] == "left"
        assert watcher.stop() == 0
    finally:
        watcher.close()
