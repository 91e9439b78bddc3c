"""The selectors' choices (a unit of logic: views are built in memory, no etcd needed).

The weighted selector builds one of three tables per view (uniform, grouped by weight, or
cumulative weights); each must draw every server in proportion to its weight.
"""

from __future__ import annotations

import collections
import random
import threading

import pytest

from hprose_cluster.failover import Ejector
from hprose_cluster.record import ServerInfo
from hprose_cluster.selector import RoundRobin, WeightedRandom, make_selector
from hprose_cluster.view import ServerView

DOMAIN = "unit.selector"


def _view(weights: list[tuple[int, float | None]]) -> ServerView:
    """A view of servers with (cpu, Weight or None) each, keys in list order."""
    by_key = {}
    for i, (cpu, weight) in enumerate(weights):
        info = ServerInfo(DOMAIN, "tcp://127.0.0.1:%d" % (10000 + i), uuid="u%06d" % i,
                          cpu=cpu, extra={"Weight": weight} if weight is not None else {})
        by_key[info.key()] = info
    return ServerView(by_key)


def _shares(view: ServerView, draws: int, exclude=(), ejector=None) -> dict[str, float]:
    selector = WeightedRandom()
    ejector = ejector or Ejector()
    counts = collections.Counter(selector.pick(view, exclude, ejector).uuid
                                 for _ in range(draws))
    return {uuid: count / draws for uuid, count in counts.items()}


@pytest.fixture(autouse=True)
def _seeded():
    state = random.getstate()
    random.seed(1234)
    yield
    random.setstate(state)


@pytest.mark.parametrize("weights", [
    [(1, None)] * 4,                                   # one weight: a uniform draw
    [(1, None), (2, None), (4, None), (4, None)],      # a few CPU counts: grouped
    [(1, float(w)) for w in range(1, 101)],            # 100 distinct weights: bisection
    [(8, None), (1, 0.5), (1, 2.5)],                   # Weight fields and CPU counts mixed
])
def test_weighted_draws_each_server_in_proportion_to_its_weight(weights):
    view = _view(weights)
    total = sum(server.weight for server in view.servers)
    draws = 200_000
    shares = _shares(view, draws)
    assert set(shares) == {server.uuid for server in view.servers}
    for server in view.servers:
        expected = server.weight / total
        # 5 standard deviations of a binomial share: fails for a wrong table, not by chance
        tolerance = 5 * (expected * (1 - expected) / draws) ** 0.5
        assert abs(shares[server.uuid] - expected) <= tolerance, (server.weight, shares)


def test_weighted_skips_excluded_and_cooling_servers_but_uses_them_as_a_last_resort():
    view = _view([(1, None), (2, None), (4, None), (8, None)])
    servers = view.servers
    shares = _shares(view, 20_000, exclude={servers[3].uuid})
    assert servers[3].uuid not in shares and len(shares) == 3
    ejector = Ejector(after=1)
    ejector.failure(servers[2].url, certain=True)
    assert ejector.ejecting
    shares = _shares(view, 20_000, exclude={servers[3].uuid}, ejector=ejector)
    assert set(shares) == {servers[0].uuid, servers[1].uuid}
    # every untried server is cooling down: one of them all the same
    everything_but_2 = {s.uuid for s in servers} - {servers[2].uuid}
    assert _shares(view, 100, exclude=everything_but_2, ejector=ejector) == {servers[2].uuid: 1}
    assert WeightedRandom().pick(view, {s.uuid for s in servers}, ejector) is None


def test_weighted_rebuilds_its_table_for_a_new_view():
    selector, ejector = WeightedRandom(), Ejector()
    first = _view([(1, None)] * 3)
    assert selector.pick(first, (), ejector) in first.servers
    second = _view([(1, None), (4, None)])
    picks = collections.Counter(selector.pick(second, (), ejector).uuid for _ in range(5000))
    assert set(picks) == {s.uuid for s in second.servers}
    assert picks[second.servers[1].uuid] > 3 * picks[second.servers[0].uuid]
    assert selector.pick(ServerView({}), (), ejector) is None


def test_round_robin_goes_through_the_servers_in_key_order_and_skips_the_excluded():
    view = _view([(1, None)] * 5)
    servers = view.servers
    selector, ejector = RoundRobin(), Ejector()
    assert [selector.pick(view, (), ejector) for _ in range(10)] == list(servers) * 2
    exclude = {servers[1].uuid, servers[2].uuid}
    picks = [selector.pick(view, exclude, ejector) for _ in range(5)]
    assert servers[1] not in picks and servers[2] not in picks
    assert set(picks) == {servers[0], servers[3], servers[4]}
    assert selector.pick(view, {s.uuid for s in servers}, ejector) is None


def test_round_robin_shares_calls_exactly_evenly_between_threads():
    view = _view([(1, None)] * 4)
    selector, ejector = make_selector("round-robin"), Ejector()
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def run() -> None:
        mine = collections.Counter(selector.pick(view, (), ejector).uuid for _ in range(2000))
        with lock:
            counts.update(mine)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counts.values()) == [4000] * 4
