"""Choosing the server for a call, from the current view of a domain.

Every selector answers ``pick(view, exclude, ejector)`` with one server (or None) in O(1)
expected time whatever the domain's size, so a client costs the same with 1 or 100,000
servers.  At 100,000 servers (~40 MB of records) every memory access outside the few
structures a selector builds once per view is a cache miss: a pick reads one slot of the
view's tuple and, only when a call has tried servers already or a server is cooling down,
the chosen server's UUID and URL.
``exclude`` holds the UUIDs of the servers already tried by this call; ``ejector`` says which URLs are cooling
down after repeated failures.  When every remaining server is cooling down, they are tried
anyway: a possibly-bad server beats no server.
"""

from __future__ import annotations

import array
import bisect
import itertools
import random
from typing import Collection, Protocol

from .discovery import ServerView
from .errors import ConfigError
from .failover import Ejector
from .record import ServerInfo

_RANDOM_TRIES = 8


class Selector(Protocol):
    def pick(self, view: ServerView, exclude: Collection[str], ejector: Ejector) -> ServerInfo | None:
        """The server for the next attempt of a call."""

    def failed(self, server: ServerInfo) -> None:
        """A call on ``server`` failed: stop preferring it."""


def _usable(server: ServerInfo, exclude: Collection[str], ejector: Ejector) -> bool:
    # the first attempt of a call excludes nothing, and usually no server is cooling down:
    # then the server's fields are not read at all
    return ((not exclude or server.uuid not in exclude)
            and (not ejector.ejecting or not ejector.is_ejected(server.url)))


def _scan(view: ServerView, exclude: Collection[str], ejector: Ejector,
          choose=random.choice) -> ServerInfo | None:
    """The slow path: filter the whole view (only when quick random draws kept missing)."""
    untried = [s for s in view.servers if s.uuid not in exclude]
    if not untried:
        return None
    healthy = [s for s in untried if not ejector.is_ejected(s.url)]
    return choose(healthy or untried)


def _random_usable(view: ServerView, exclude: Collection[str], ejector: Ejector) -> ServerInfo | None:
    servers = view.servers
    if not servers:
        return None
    for _ in range(_RANDOM_TRIES):
        server = random.choice(servers)
        if _usable(server, exclude, ejector):
            return server
    return _scan(view, exclude, ejector)


class RandomPrimary:
    """The seed's behaviour: one random primary takes every call until it fails or leaves."""

    name = "random"

    def __init__(self) -> None:
        self._primary: ServerInfo | None = None
        self._avoid: str | None = None  # the last primary that failed: not chosen next time

    def pick(self, view: ServerView, exclude: Collection[str], ejector: Ejector) -> ServerInfo | None:
        primary = self._primary
        if primary is not None and view.by_uuid.get(primary.uuid) == primary \
                and _usable(primary, exclude, ejector):
            return primary
        avoid = self._avoid
        if avoid is not None and avoid not in exclude and len(view) > 1:
            exclude = set(exclude) | {avoid}
        server = _random_usable(view, exclude, ejector)
        if server is not None:
            self._primary = server
            self._avoid = None
        return server

    def failed(self, server: ServerInfo) -> None:
        if self._primary is not None and self._primary.uuid == server.uuid:
            self._primary = None
            self._avoid = server.uuid

    @property
    def primary(self) -> ServerInfo | None:
        return self._primary


class RoundRobin:
    """Each call goes to the next server in key order."""

    name = "round-robin"

    def __init__(self) -> None:
        # next() of an itertools.count is one C call under the GIL: threads get distinct
        # numbers without a lock
        self._counter = itertools.count()

    def pick(self, view: ServerView, exclude: Collection[str], ejector: Ejector) -> ServerInfo | None:
        servers = view.servers
        size = len(servers)
        if not size:
            return None
        start = next(self._counter)
        server = servers[start % size]
        if _usable(server, exclude, ejector):
            return server
        for offset in range(1, min(size, _RANDOM_TRIES)):
            server = servers[(start + offset) % size]
            if _usable(server, exclude, ejector):
                return server
        return _scan(view, exclude, ejector, choose=lambda items: items[start % len(items)])

    def failed(self, server: ServerInfo) -> None:
        pass


class WeightedRandom:
    """Each call goes to a random server, chosen in proportion to its weight (its CPU count,
    or the optional ``Weight`` field of its record).

    Built once per view: when every server weighs the same (the usual case), a uniform
    draw; when there are a few distinct weights (CPU counts), the servers grouped by weight,
    so a draw chooses a group by its share of the total (a bisection over a few sums) and
    then a server of the group uniformly; else a bisection over the cumulative weights.
    The first two cost the same at 100,000 servers as at one."""

    name = "weighted"

    def __init__(self) -> None:
        self._cache: tuple[ServerView, _WeightTable] | None = None

    def _table(self, view: ServerView) -> "_WeightTable":
        cache = self._cache
        if cache is not None and cache[0] is view:
            return cache[1]
        table = _WeightTable(view.servers)
        self._cache = (view, table)
        return table

    def pick(self, view: ServerView, exclude: Collection[str], ejector: Ejector) -> ServerInfo | None:
        if not view.servers:
            return None
        draw = self._table(view).draw
        for _ in range(_RANDOM_TRIES):
            server = draw()
            if _usable(server, exclude, ejector):
                return server
        return _scan(view, exclude, ejector,
                     choose=lambda items: random.choices(items, [s.weight for s in items])[0])

    def failed(self, server: ServerInfo) -> None:
        pass


_MAX_GROUPS = 64  # more distinct weights than this: a bisection over all the servers


class _WeightTable:
    """What a weighted draw needs of one view (see WeightedRandom); ``draw()`` is one server,
    with probability proportional to its weight."""

    __slots__ = ("draw", "_groups", "_sums", "_total")

    def __init__(self, servers: tuple[ServerInfo, ...]):
        weights = [server.weight for server in servers]
        distinct = set(weights)
        self._groups: list[tuple[ServerInfo, ...]] = []
        self._sums: array.array[float] | list[float] = []
        self._total = 0.0
        if len(distinct) == 1:
            self._groups = [servers]
            self.draw = self._uniform
        elif len(distinct) <= _MAX_GROUPS:
            by_weight: dict[float, list[ServerInfo]] = {weight: [] for weight in sorted(distinct)}
            for server, weight in zip(servers, weights):
                by_weight[weight].append(server)
            self._groups = [tuple(group) for group in by_weight.values()]
            self._sums = list(itertools.accumulate(weight * len(group)
                                                   for weight, group in by_weight.items()))
            self._total = self._sums[-1]
            self.draw = self._grouped
        else:
            self._groups = [servers]
            self._sums = array.array("d", itertools.accumulate(weights))
            self._total = self._sums[-1]
            self.draw = self._bisect

    def _uniform(self) -> ServerInfo:
        servers = self._groups[0]
        return servers[int(random.random() * len(servers))]

    def _grouped(self) -> ServerInfo:
        index = bisect.bisect_right(self._sums, random.random() * self._total)
        group = self._groups[min(index, len(self._groups) - 1)]
        return group[int(random.random() * len(group))]

    def _bisect(self) -> ServerInfo:
        servers = self._groups[0]
        index = bisect.bisect_right(self._sums, random.random() * self._total)
        return servers[min(index, len(servers) - 1)]


SELECTORS: dict[str, type[Selector]] = {
    "random": RandomPrimary, "round-robin": RoundRobin, "weighted": WeightedRandom}


def make_selector(selector: "str | Selector") -> Selector:
    if isinstance(selector, str):
        try:
            return SELECTORS[selector]()
        except KeyError:
            raise ConfigError("unknown selector %r; choose one of %s"
                              % (selector, ", ".join(SELECTORS))) from None
    if not hasattr(selector, "pick"):
        raise ConfigError("selector must be a name or an object with pick(), got %r" % (selector,))
    return selector
