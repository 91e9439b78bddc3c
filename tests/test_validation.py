"""Bad input, wherever it enters: arguments, environment variables, and records read from etcd.

A bad argument raises ConfigError naming the field and the value before anything is started
(no socket, no thread, no etcd connection).  A bad record in etcd is skipped with exactly one
warning, whether it was there at the first read or arrived through the watch, and the valid
servers next to it keep answering.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from hprose_cluster import (ClusterClient, ClusterHttpServer, ClusterTcpServer, ConfigError,
                            Discovery, EtcdConfig, Registrar, ServerInfo)
from hprose_cluster.etcd import EtcdConnection
from hprose_cluster.record import MAX_RECORD_BYTES

UNREACHABLE = "127.0.0.1:1"  # validation must fail before any connection attempt


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


# --------------------------------------------------------------------------- ServerInfo


@pytest.mark.parametrize("field, value, kwargs", [
    ("domain", "''", {"domain": ""}),
    ("domain", "'a/b'", {"domain": "a/b"}),
    ("domain", "'a b'", {"domain": "a b"}),
    ("domain", "'x\\n'", {"domain": "x\n"}),
    ("domain", "None", {"domain": None}),
    ("domain", "'" + "d" * 20, {"domain": "d" * 300}),
    ("UUID", "'a/b'", {"uuid": "a/b"}),
    ("UUID", "''", {"uuid": ""}),
    ("UUID", "'tab\\there'", {"uuid": "tab\there"}),
    ("UUID", "42", {"uuid": 42}),
    ("ServerUrl", "'ftp://h:1/'", {"url": "ftp://h:1/"}),
    ("ServerUrl", "'127.0.0.1:80'", {"url": "127.0.0.1:80"}),
    ("ServerUrl", "'tcp://h'", {"url": "tcp://h"}),
    ("ServerUrl", "'http://:80/'", {"url": "http://:80/"}),
    ("ServerUrl", "'http://h:99999/'", {"url": "http://h:99999/"}),
    ("ServerUrl", "'tcp://h:0'", {"url": "tcp://h:0"}),
    ("ServerUrl", "'http://h ost:80/'", {"url": "http://h ost:80/"}),
    ("ServerUrl", "''", {"url": ""}),
    ("ServerUrl", "None", {"url": None}),
    ("CPU", "0", {"cpu": 0}),
    ("CPU", "-3", {"cpu": -3}),
    ("CPU", "2.5", {"cpu": 2.5}),
    ("CPU", "True", {"cpu": True}),
    ("CPU", "'4'", {"cpu": "4"}),
])
def test_server_info_names_the_bad_field_and_value(field: str, value: str, kwargs: dict) -> None:
    values = {"domain": "d.x", "url": "http://127.0.0.1:1/", **kwargs}
    with pytest.raises(ConfigError) as caught:
        ServerInfo(**values)
    assert field in str(caught.value)
    assert value in str(caught.value)


@pytest.mark.parametrize("url", ["http://h/", "https://h/", "http://[::1]:8080/",
                                 "tcp4://127.0.0.1:4321", "tcp6://[::1]:4321/", "tcp://host:1"])
def test_good_urls_are_accepted(url: str) -> None:
    assert ServerInfo("d.x", url).url == url


# --------------------------------------------------------------------------- EtcdConfig


@pytest.mark.parametrize("kwargs, words", [
    ({"endpoints": ""}, ["no etcd endpoint"]),
    ({"endpoints": []}, ["no etcd endpoint"]),
    ({"endpoints": "ftp://h:1"}, ["endpoint", "'ftp://h:1'", "scheme"]),
    ({"endpoints": "h:notaport"}, ["endpoint", "'h:notaport'", "port"]),
    ({"endpoints": "h:70000"}, ["endpoint", "'h:70000'", "port"]),
    ({"endpoints": "h:0"}, ["endpoint", "'h:0'", "port"]),
    ({"endpoints": ":2379"}, ["endpoint", "':2379'", "no host"]),
    ({"endpoints": "http://h:1/v3"}, ["endpoint", "'http://h:1/v3'", "path"]),
    ({"endpoints": "h 1:2379"}, ["endpoint", "'h 1:2379'", "whitespace"]),
    ({"endpoints": ["127.0.0.1:2379", 5]}, ["endpoint", "5"]),
    ({"endpoints": 2379}, ["endpoints", "2379"]),
    ({"prefix": ""}, ["prefix", "''"]),
    ({"prefix": "hprose-service/"}, ["prefix", "'hprose-service/'"]),
    ({"prefix": "a b"}, ["prefix", "'a b'"]),
    ({"prefix": None}, ["prefix", "None"]),
    ({"timeout": 0}, ["timeout", "0"]),
    ({"timeout": -1.0}, ["timeout", "-1.0"]),
    ({"timeout": "5"}, ["timeout", "'5'"]),
    ({"user": "svc"}, ["user and password"]),
    ({"password": "pw"}, ["user and password"]),
    ({"user": "", "password": "pw"}, ["user", "''"]),
    ({"cert_file": "/nonexistent/c.pem"}, ["cert_file", "key_file"]),
    ({"ca_file": "/nonexistent/ca.pem"}, ["ca_file", "'/nonexistent/ca.pem'"]),
    ({"cert_file": "/nonexistent/c.pem", "key_file": "/nonexistent/k.pem"},
     ["cert_file", "'/nonexistent/c.pem'"]),
])
def test_etcd_config_names_the_bad_setting(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        EtcdConfig(**kwargs)
    for word in words:
        assert word in str(caught.value)


def test_etcd_config_normalizes_endpoints_and_turns_on_tls(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here; grpc reads it when connecting")
    config = EtcdConfig("http://127.0.0.1:1, [::1]:2,localhost")
    assert config.endpoints == ("127.0.0.1:1", "[::1]:2", "localhost:2379")
    assert not config.tls
    assert EtcdConfig("https://127.0.0.1:1").tls
    assert EtcdConfig("127.0.0.1:1", ca_file=str(ca)).tls
    assert EtcdConfig("127.0.0.1:1", cert_file=ca, key_file=ca).tls  # a client cert means TLS
    assert "pw" not in repr(EtcdConfig(user="u", password="pw"))


def test_environment_variables_are_read_and_checked(monkeypatch, tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-")
    monkeypatch.setenv("HPROSE_CLUSTER_ETCD", "https://127.0.0.1:7,127.0.0.1:8")
    monkeypatch.setenv("HPROSE_CLUSTER_PREFIX", "my/prefix")
    monkeypatch.setenv("HPROSE_CLUSTER_ETCD_CA", str(ca))
    monkeypatch.setenv("HPROSE_CLUSTER_ETCD_CERT", str(ca))
    monkeypatch.setenv("HPROSE_CLUSTER_ETCD_KEY", str(ca))
    monkeypatch.setenv("HPROSE_CLUSTER_ETCD_USER", "svc")
    monkeypatch.setenv("HPROSE_CLUSTER_ETCD_PASSWORD", "secret")
    config = EtcdConfig.coerce(None)
    assert config.endpoints == ("127.0.0.1:7", "127.0.0.1:8") and config.tls
    assert config.prefix == "my/prefix"
    assert (config.ca_file, config.cert_file, config.key_file) == (str(ca),) * 3
    assert (config.user, config.password) == ("svc", "secret")
    assert EtcdConfig.coerce(None, user="other", password="x").user == "other"

    monkeypatch.setenv("HPROSE_CLUSTER_ETCD_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="ca_file .*missing.pem"):
        EtcdConfig.coerce(None)
    monkeypatch.setenv("HPROSE_CLUSTER_ETCD", "ftp://x:1")
    with pytest.raises(ConfigError, match="'ftp://x:1'"):
        EtcdConfig.coerce(None)


# --------------------------------------------------------------------------- public classes


@pytest.mark.parametrize("domain, value", [("", "''"), ("a/b", "'a/b'"), ("a b", "'a b'"),
                                           (None, "None")])
def test_cluster_client_refuses_a_bad_domain_before_connecting(domain: Any, value: str) -> None:
    before = _threads()
    with pytest.raises(ConfigError) as caught:
        ClusterClient(domain, etcd=UNREACHABLE)
    assert "domain" in str(caught.value) and value in str(caught.value)
    assert _threads() <= before


def test_cluster_client_refuses_a_bad_endpoint() -> None:
    with pytest.raises(ConfigError, match="'nohost:x'"):
        ClusterClient("d.x", etcd="nohost:x")


@pytest.mark.parametrize("server_class", [ClusterHttpServer, ClusterTcpServer])
@pytest.mark.parametrize("kwargs, field, value", [
    ({"domain": "a/b"}, "domain", "'a/b'"),
    ({"domain": ""}, "domain", "''"),
    ({"uuid": "has space"}, "UUID", "'has space'"),
    ({"uuid": "a/b"}, "UUID", "'a/b'"),
    ({"advertise_url": "ftp://h:1/"}, "ServerUrl", "'ftp://h:1/'"),
    ({"advertise_url": "tcp://nohost"}, "ServerUrl", "'tcp://nohost'"),
    ({"cpu": 0}, "CPU", "0"),
    ({"cpu": "8"}, "CPU", "'8'"),
    ({"etcd": "h:bad"}, "endpoint", "'h:bad'"),
])
def test_servers_refuse_bad_arguments_before_listening(server_class: type, kwargs: dict,
                                                       field: str, value: str) -> None:
    arguments = {"domain": "d.x", "etcd": UNREACHABLE, **kwargs}
    domain = arguments.pop("domain")
    before = _threads()
    with pytest.raises(ConfigError) as caught:
        server = server_class(domain, "127.0.0.1", 0, **arguments)
        server.stop(drain_timeout=0)  # only reached if the constructor accepted the input
    assert field in str(caught.value) and value in str(caught.value)
    assert _threads() <= before


@pytest.mark.parametrize("kwargs, words", [
    ({"ttl": 0}, ["ttl", "0"]),
    ({"ttl": 2.5}, ["ttl", "2.5"]),
    ({"ttl": 2, "heartbeat": 2}, ["heartbeat", "2"]),
    ({"heartbeat": -1}, ["heartbeat", "-1"]),
    ({"etcd": "h:bad"}, ["endpoint", "'h:bad'"]),
])
def test_registrar_refuses_bad_settings(kwargs: dict, words: list[str]) -> None:
    info = ServerInfo("d.x", "tcp://127.0.0.1:1", uuid="u")
    kwargs.setdefault("etcd", UNREACHABLE)
    with pytest.raises(ConfigError) as caught:
        Registrar(info, **kwargs)
    for word in words:
        assert word in str(caught.value)


def test_discovery_refuses_a_bad_domain() -> None:
    with pytest.raises(ConfigError, match="domain 'a/b'"):
        Discovery("a/b", etcd=UNREACHABLE)


# --------------------------------------------------------------------------- records in etcd


def _record(domain: str, uuid: str, url: str, **extra: Any) -> bytes:
    return ServerInfo(domain, url, uuid=uuid, cpu=1, extra=extra).to_json()


def _bad_records(domain: str, tag: str) -> dict[str, bytes]:
    """Keys (under hprose-service/<domain>/) and values a reader must skip."""
    good_url = "tcp://127.0.0.1:1"
    return {
        f"{tag}-notjson": b"{not json",
        f"{tag}-array": b"[1, 2, 3]",
        f"{tag}-nocpu": b'{"UUID":"%s-nocpu","Domain":"%s","ServerUrl":"%s"}'
                        % (f"{tag}".encode(), domain.encode(), good_url.encode()),
        f"{tag}-oversized": _record(domain, f"{tag}-oversized", good_url,
                                    Pad="x" * (MAX_RECORD_BYTES + 1)),
        f"{tag}-uuid": _record(domain, "someone-else", good_url),
        f"{tag}-domain": _record("other.domain", f"{tag}-domain", good_url),
        f"{tag}-scheme": b'{"UUID":"%s-scheme","Domain":"%s","ServerUrl":"ftp://h:1/","CPU":1}'
                         % (f"{tag}".encode(), domain.encode()),
        f"{tag}-deep": b"[" * 50000 + b"]" * 50000,
        f"{tag}-binary": b"\xff\xfe\x00garbage",
    }


@pytest.mark.timeout(60)
def test_bad_records_in_etcd_are_skipped_once_and_valid_servers_still_answer(
        etcd, domain, hello_servers, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="hprose_cluster.discovery")
    prefix = f"hprose-service/{domain}/"
    first = hello_servers(domain, "tcp")
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as writer:
        early = _bad_records(domain, "early")   # there before the client's first read
        for uuid, value in early.items():
            writer.put(prefix + uuid, value)
        with ClusterClient(domain, etcd=etcd.endpoint, check_interval=0.2) as client:
            assert [s.uuid for s in client.servers()] == [first.uuid]
            late = _bad_records(domain, "late")  # arriving through the watch
            for uuid, value in late.items():
                writer.put(prefix + uuid, value)
            second = hello_servers(domain, "http")  # registered after the bad ones
            assert client.discovery.wait_for(lambda view: second.uuid in view, timeout=5)
            assert {s.uuid for s in client.servers()} == {first.uuid, second.uuid}

            # The view stays right through re-reads and periodic checks: no repeated warning.
            for _ in range(3):
                client.discovery._resync()
            time.sleep(0.7)  # a few periodic checks (check_interval=0.2)

            urls = {client.whoami().split(" ")[0] for _ in range(40)}
            assert urls <= {first.url, second.url}
            client.selector.failed(client.primary)  # rotate the primary: the other one answers
            urls |= {client.whoami().split(" ")[0] for _ in range(5)}
            assert urls == {first.url, second.url}

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for key in list(early) + list(late):
        mine = [w for w in warnings if prefix + key in w]
        assert len(mine) == 1, (key, mine)
    assert len(warnings) == len(early) + len(late), warnings
    assert client.discovery.resyncs >= 3


def test_a_bad_value_replacing_a_good_record_removes_that_server(etcd, domain, caplog) -> None:
    """Overwriting a server's key with garbage takes the server out of the view (the key no
    longer says where it is); writing a valid record back brings it back."""
    caplog.set_level(logging.WARNING, logger="hprose_cluster.discovery")
    key = f"hprose-service/{domain}/u1"
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as writer, \
            Discovery(domain, etcd=etcd.endpoint) as discovery:
        writer.put(key, _record(domain, "u1", "tcp://127.0.0.1:1"))
        assert discovery.wait_for(lambda view: "u1" in view, timeout=5)
        writer.put(key, b'{"UUID":"u1"}')
        assert discovery.wait_for(lambda view: "u1" not in view, timeout=5)
        writer.put(key, _record(domain, "u1", "tcp://127.0.0.1:2"))
        assert discovery.wait_for(
            lambda view: "u1" in view and view.by_uuid["u1"].url == "tcp://127.0.0.1:2", timeout=5)
    assert len([r for r in caplog.records if key in r.getMessage()]) == 1
