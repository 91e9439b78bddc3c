"""Choosing the server for a call, from the current view of a domain.

Every selector answers ``pick(view, exclude, ejector)`` with one server (or None) in O(1)
expected time whatever the domain's size, so a client costs the same with 1 or 10,000 servers.
``exclude`` holds the UUIDs of the servers already tried by this call; ``ejector`` says which URLs are cooling
down after repeated failures.  When every remaining server is cooling down, they are tried
anyway: a possibly-bad server beats no server.
"""

from __future__ import annotations

import bisect
import itertools
import random
import threading
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
    return server.uuid not in exclude and not ejector.is_ejected(server.url)


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
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def pick(self, view: ServerView, exclude: Collection[str], ejector: Ejector) -> ServerInfo | None:
        servers = view.servers
        if not servers:
            return None
        with self._lock:
            start = next(self._counter)
        for offset in range(min(len(servers), _RANDOM_TRIES)):
            server = servers[(start + offset) % len(servers)]
            if _usable(server, exclude, ejector):
                return server
        return _scan(view, exclude, ejector, choose=lambda items: items[start % len(items)])

    def failed(self, server: ServerInfo) -> None:
        pass


class WeightedRandom:
    """Each call goes to a random server, chosen in proportion to its weight (its CPU count,
    or the optional ``Weight`` field of its record)."""

    name = "weighted"

    def __init__(self) -> None:
        self._cache: tuple[ServerView, list[float]] | None = None

    def _cumulative(self, view: ServerView) -> list[float]:
        cache = self._cache
        if cache is not None and cache[0] is view:
            return cache[1]
        totals = list(itertools.accumulate(s.weight for s in view.servers))
        self._cache = (view, totals)
        return totals

    def pick(self, view: ServerView, exclude: Collection[str], ejector: Ejector) -> ServerInfo | None:
        servers = view.servers
        if not servers:
            return None
        totals = self._cumulative(view)
        for _ in range(_RANDOM_TRIES):
            index = bisect.bisect_right(totals, random.uniform(0, totals[-1]))
            server = servers[min(index, len(servers) - 1)]
            if _usable(server, exclude, ejector):
                return server
        return _scan(view, exclude, ejector,
                     choose=lambda items: random.choices(items, [s.weight for s in items])[0])

    def failed(self, server: ServerInfo) -> None:
        pass


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
