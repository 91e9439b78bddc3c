"""How reads and watch responses become views (hprose_cluster/view.py), as units of logic;
the same paths against real etcd are in test_discovery_*.py and test_registry.py."""

from __future__ import annotations

from hprose_cluster.etcd import Event
from hprose_cluster.record import ServerInfo
from hprose_cluster.view import ServerView, apply_events, diff

DOMAIN = "unit.view"


def _info(i: int, cpu: int = 1) -> ServerInfo:
    return ServerInfo(DOMAIN, "tcp://127.0.0.1:%d" % (10000 + i), uuid="u%03d" % i, cpu=cpu)


def _by_key(*infos: ServerInfo) -> dict[str, ServerInfo]:
    return {info.key(): info for info in infos}


def test_diff_from_an_empty_view_is_everything_in_key_order():
    new = _by_key(_info(3), _info(1), _info(2))
    added, removed = diff({}, new)
    assert added == [_info(1), _info(2), _info(3)] and removed == []
    view = ServerView(new, servers=tuple(added))
    assert view.servers == ServerView(new).servers


def test_diff_names_only_real_changes():
    old = _by_key(_info(1), _info(2), _info(3))
    new = _by_key(_info(1), _info(2, cpu=4), _info(4))
    assert diff(old, new) == ([_info(2, cpu=4), _info(4)], [_info(2), _info(3)])
    assert diff(old, old) == ([], [])
    # only the keys said to have changed are compared
    assert diff(old, new, changed=[_info(4).key()]) == ([_info(4)], [])


def test_apply_events_skips_what_is_applied_and_keeps_every_event_of_a_transaction():
    base = _by_key(_info(1))
    one, two = _info(2), _info(3)
    events = [Event(_info(1).key(), b"", 5, True),                 # applied already
              Event(one.key(), one.to_json(), 7, False),           # one transaction ...
              Event(two.key(), two.to_json(), 7, False),           # ... one revision
              Event("hprose-service/%s/bad" % DOMAIN, b"{", 8, False)]
    changed: set[str] = set()
    skipped: dict[str, str] = {}
    by_key, newest = apply_events(events, 5, base, None, changed, skipped)
    assert newest == 8
    assert by_key == _by_key(_info(1), one, two)
    assert base == _by_key(_info(1))  # a copy was changed, not the view's own mapping
    assert changed == {one.key(), two.key(), "hprose-service/%s/bad" % DOMAIN}
    assert list(skipped) == ["hprose-service/%s/bad" % DOMAIN]
    gone, newest = apply_events([Event(one.key(), b"", 9, True)], 8, by_key, None, set(),
                                skipped)
    assert gone == _by_key(_info(1), two) and newest == 9
    assert apply_events([], 9, base, None, set(), skipped) == (None, 0)
