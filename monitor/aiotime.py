"""`wait_for` that never loses a cancellation.

Python 3.11's `asyncio.wait_for` swallows a `cancel()` that arrives in the same loop turn as the
awaited thing finishing (CPython gh-86296, fixed by 3.12's rewrite): a task stopped then keeps
running, and whoever awaits its end waits forever (a hub's `stop()` hung on its publisher, about
one start/stop in a hundred on a loaded machine). `asyncio.timeout` (3.11+) has no such race.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """Await `aw` for at most `timeout` seconds (None: no limit); TimeoutError past it."""
    async with asyncio.timeout(timeout):
        return await aw
