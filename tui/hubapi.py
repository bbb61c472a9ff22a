"""What the UI needs from a hub: the listener API, the live analyses and GPU history.

`monitor.hub.Hub` satisfies it; tests drive the app with a scripted hub that publishes hand-made
snapshots through the same calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from monitor.analysis import RunAnalysis
from monitor.gpu import GpuSnapshot
from monitor.hub import HubEvent, HubSnapshot


class HubLike(Protocol):
    """The hub as the UI sees it."""

    @property
    def gpu_history(self) -> Mapping[str, Sequence[GpuSnapshot]]: ...

    def add_snapshot_listener(self, cb: Callable[[HubSnapshot], Any]) -> None: ...

    def add_event_listener(self, cb: Callable[[HubEvent], Any]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def refresh(self) -> None: ...

    def analysis(self, run_id: str) -> RunAnalysis: ...
