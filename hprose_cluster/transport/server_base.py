"""``ServerBase``: the public surface every transport server shares, over one ``Serving``.

A transport server is ``class XServer(ServerBase, <hprose service class>)``.  Its
``__init__`` creates ``self._serving = Serving(handler, ..., on_listening=lambda:
self._on_listening(), before_stop=lambda: self._before_stop())`` and defines ``scheme`` and
``url``.  ``ServerBase`` then supplies what ``hprose_cluster.server.ClusterServer`` relies on:
``listen()``, ``address``, ``start(block)``, ``stop(drain_timeout)``, ``in_flight``,
``serving_state`` and the two hooks.
"""

from __future__ import annotations

from typing import Any

from .connection import State
from .serving import Serving

__all__ = ["ServerBase"]


class ServerBase:
    _serving: Serving

    @property
    def url(self) -> str:  # defined by each transport
        raise NotImplementedError

    @property
    def address(self) -> Any:
        """The bound ``(host, port)`` once listening, else None."""
        return self._serving.address

    @property
    def in_flight(self) -> int:
        """How many requests are being executed right now."""
        return self._serving.in_flight

    @property
    def serving_state(self) -> State:
        """Where the server is in its lifecycle (``transport.connection.State``)."""
        return self._serving.state

    def listen(self) -> None:
        """Bind and listen (once); ``address`` then holds the real address (port 0 resolved)."""
        serving = self._serving
        if serving.address is not None:
            return
        # host and port are plain attributes of the server: use them as they are now
        serving.host = getattr(self, "host", serving.host)
        serving.port = getattr(self, "port", serving.port)
        serving.listen()
        serving.name = self.url
        serving.log.info("listening on %s", serving.name)

    def start(self, block: bool = True) -> None:
        """Listen, run ``_on_listening()``, then serve until ``stop()``.

        ``block=True`` serves in the calling thread; in the main thread SIGTERM and SIGINT
        (Ctrl-C) then stop the server gracefully and ``start()`` returns.  ``block=False``
        serves on a daemon thread and returns at once.
        """
        self.listen()
        self._serving.start(block, stop=self.stop)

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop gracefully: ``_before_stop()`` while still accepting and serving, then stop
        accepting, close idle connections, let running requests finish (up to
        ``drain_timeout`` seconds), close every connection, join every thread.

        Idempotent; a second call waits for the first to finish.
        """
        self._serving.stop(drain_timeout)

    def close(self) -> None:
        """Same as ``stop()``."""
        self.stop()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _on_listening(self) -> None:
        """Hook: the socket listens and nothing is served yet (ClusterServer registers)."""

    def _before_stop(self) -> None:
        """Hook: first thing in stop(), while the server still accepts and serves
        (ClusterServer deregisters, then waits its drain delay)."""
