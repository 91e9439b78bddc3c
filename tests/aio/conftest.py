"""Fixtures of the asyncio tests: run a coroutine to the end with a bound, and nothing left.

Tests stay plain functions that call ``arun(coro)`` (``asyncio.run`` inside), so no pytest
plugin is needed; ``arun`` fails a test that leaves a task running on its loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest


def _run(coro: Awaitable[Any], timeout: float = 60.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            result = await coro
        await asyncio.sleep(0)  # let close callbacks run before looking
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not left, "tasks left on the loop: %r" % left
        return result

    return asyncio.run(bounded())


@pytest.fixture
def arun() -> Callable[..., Any]:
    """``arun(coro, timeout=60)``: run ``coro`` on a new event loop and return its result."""
    return _run
