"""`monitor.aiotime.wait_for` keeps a cancellation that arrives as the awaited thing finishes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from monitor.aiotime import wait_for


async def _cancel_as_it_finishes(wf: Callable[[Awaitable[Any], float], Awaitable[Any]]) -> str:
    ev = asyncio.Event()

    async def waiter() -> str:
        await wf(ev.wait(), 10)
        return "ran on"

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    ev.set()
    task.cancel()  # the same loop turn as the event: Python 3.11's asyncio.wait_for lost this
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


def test_a_cancel_in_the_same_turn_as_the_wake_is_kept() -> None:
    assert asyncio.run(_cancel_as_it_finishes(wait_for)) == "cancelled"


def test_timeout_and_result() -> None:
    async def main() -> None:
        assert await wait_for(asyncio.sleep(0, "x"), 1) == "x"
        with pytest.raises(TimeoutError):
            await wait_for(asyncio.Event().wait(), 0.01)
        assert await wait_for(asyncio.sleep(0, "y"), None) == "y"

    asyncio.run(main())
