"""The registry record: bytes as the Go registry writes them, and what readers refuse."""

import json

import pytest

from hprose_cluster import ConfigError, RecordError, ServerInfo
from hprose_cluster.record import validate_domain


def test_value_is_byte_for_byte_the_go_record():
    info = ServerInfo("tcp.hello.server", "tcp4://127.0.0.1:4321/", uuid="u-1", cpu=8)
    assert info.to_json() == (b'{"UUID":"u-1","Domain":"tcp.hello.server",'
                              b'"ServerUrl":"tcp4://127.0.0.1:4321/","CPU":8}')
    assert info.key() == "hprose-service/tcp.hello.server/u-1"
    assert info.key("custom/prefix") == "custom/prefix/tcp.hello.server/u-1"


def test_extra_fields_are_read_and_written_after_the_four():
    value = b'{"UUID":"u","Domain":"d.x","ServerUrl":"http://h:1/","CPU":2,"Weight":5,"Zone":"a"}'
    info = ServerInfo.from_json(value, "hprose-service/d.x/u")
    assert info.weight == 5.0 and info.extra["Zone"] == "a"
    assert info.to_json() == value


def test_uuid_defaults_to_a_fresh_uuid4_and_cpu_to_usable_cores():
    a, b = ServerInfo("d.x", "http://h:1/"), ServerInfo("d.x", "http://h:1/")
    assert a.uuid != b.uuid and len(a.uuid) == 36
    assert a.cpu >= 1


@pytest.mark.parametrize("value, complaint", [
    (b"not json", "not valid JSON"),
    (b"[1,2]", "not a JSON object"),
    (b'{"UUID":"u","Domain":"d.x","ServerUrl":"http://h:1/"}', "lacks the field CPU"),
    (b'{"UUID":"u","Domain":"d.x","ServerUrl":"http://h:1/","CPU":"8"}', "field CPU"),
    (b'{"UUID":"u","Domain":"d.x","ServerUrl":"http://h:1/","CPU":true}', "field CPU"),
    (b'{"UUID":"u","Domain":"d.x","ServerUrl":"ftp://h:1/","CPU":1}', "scheme 'ftp'"),
    (b'{"UUID":"u","Domain":"d.x","ServerUrl":"http://h:1/","CPU":0}', "CPU must be"),
    (b'{"UUID":"v","Domain":"d.x","ServerUrl":"http://h:1/","CPU":1}', "UUID 'v'"),
    (b'{"UUID":"u","Domain":"d.y","ServerUrl":"http://h:1/","CPU":1}', "Domain 'd.y'"),
    (b'{"UUID":"u","Domain":"d.x","ServerUrl":"http://h:1/","CPU":1,"Pad":"'
     + b"x" * 70000 + b'"}', "over the 65536 byte limit"),
])
def test_bad_records_are_refused_naming_the_key(value, complaint):
    with pytest.raises(RecordError) as caught:
        ServerInfo.from_json(value, "hprose-service/d.x/u")
    assert complaint in str(caught.value)
    assert "hprose-service/d.x/u" in str(caught.value)


@pytest.mark.parametrize("domain", ["", "a/b", "a b", "tab\there", "nl\n", "bell\x07", None, 3])
def test_bad_domains_are_refused(domain):
    with pytest.raises(ConfigError, match="domain"):
        validate_domain(domain)


@pytest.mark.parametrize("field, kwargs", [
    ("ServerUrl", {"url": "tcp://nohost"}),
    ("ServerUrl", {"url": "unix:tmp/sock"}),  # unix: needs an absolute path
    ("ServerUrl", {"url": "http://:80/"}),
    ("UUID", {"uuid": "a/b"}),
    ("CPU", {"cpu": -1}),
])
def test_bad_fields_name_the_field(field, kwargs):
    values = {"domain": "d.x", "url": "http://h:1/", **kwargs}
    with pytest.raises(ConfigError, match=field):
        ServerInfo(**values)


def test_record_round_trips_through_json():
    info = ServerInfo("d.x", "tcp6://[::1]:99", uuid="z", cpu=3)
    assert ServerInfo.from_json(info.to_json(), info.key()) == info
    assert json.loads(info.to_json())["ServerUrl"] == "tcp6://[::1]:99"


@pytest.mark.parametrize("url", ["ws://127.0.0.1:52677/", "wss://h/", "ws://[::1]:80/any/path",
                                 "unix:/tmp/hello.sock", "unix:///tmp/hello.sock",
                                 "unix://localhost/tmp/hello.sock"])
def test_websocket_and_unix_urls_are_records(url):
    info = ServerInfo.from_json(ServerInfo("ws.hello.server", url, uuid="u").to_json())
    assert info.url == url


@pytest.mark.parametrize("url, complaint", [
    ("ws://:80/", "no host"),
    ("wss://h:0/", "port 0"),
    ("unix:relative.sock", "absolute"),
    ("unix://otherhost/tmp/a.sock", "local"),
    ("unix:/" + "x" * 120, "longer than 107"),
])
def test_bad_websocket_and_unix_urls_name_the_problem(url, complaint):
    with pytest.raises(ConfigError, match=complaint):
        ServerInfo("d.x", url)
