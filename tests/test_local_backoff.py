"""An idle local file is polled less and less often (up to a cap); growth snaps polling back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor.sources.local import IDLE_AFTER, MAX_NAP, LocalTail


class Naps:
    """A fake clock advanced only by the tail's naps, which it records."""

    def __init__(self) -> None:
        self.now = 0.0
        self.delays: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self.now += delay
        await asyncio.sleep(0)


async def _next_after_naps(tail: LocalTail, naps: Naps, count: int) -> None:
    """Let the tail nap `count` times, then stop waiting for it."""
    task = asyncio.ensure_future(anext(tail))
    while len(naps.delays) < count and not task.done():
        await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, StopAsyncIteration):
        pass


def test_idle_file_backs_off_to_the_cap_and_growth_snaps_back(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"step=1 loss=2\n")
    naps = Naps()

    async def scenario() -> None:
        tail = LocalTail(log, poll=0.1, clock=naps.clock, sleep=naps.sleep)
        first = await anext(tail)
        assert first.data == b"step=1 loss=2\n"
        await _next_after_naps(tail, naps, 80)
        assert naps.delays[0] == 0.1  # just grew: the normal poll
        assert naps.delays == sorted(naps.delays)  # longer and longer while idle...
        assert max(naps.delays) == MAX_NAP  # ...up to the cap
        busy = round(IDLE_AFTER / 0.1) - 1
        assert naps.delays[:busy] == [0.1] * busy  # a file written every few seconds is polled as usual
        with log.open("ab") as f:
            f.write(b"step=2 loss=1\n")
        chunk = await anext(tail)
        assert chunk.data == b"step=2 loss=1\n"
        naps.delays.clear()
        await _next_after_naps(tail, naps, 1)
        assert naps.delays == [0.1]  # growth: back to the normal poll
        tail.close()

    asyncio.run(scenario())


def test_a_long_poll_is_never_shortened(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"")
    naps = Naps()

    async def scenario() -> None:
        tail = LocalTail(log, poll=5.0, clock=naps.clock, sleep=naps.sleep)
        await _next_after_naps(tail, naps, 5)
        assert set(naps.delays) == {5.0}
        tail.close()

    asyncio.run(scenario())
