"""Progress callbacks, throttled once for every call: at most every 0.1 s, the last one always."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable

from ._models import BytesCallback

__all__ = ["INTERVAL", "ByteProgress", "Pace", "deliver"]

INTERVAL = 0.1
"""Seconds between two progress calls (unless a call is due anyway: see :meth:`Pace.due`)."""
_BYTES_STEP = 1024 * 1024  # a byte count calls back at least once per this many bytes moved


class Pace:
    """When the next progress call is due: :data:`INTERVAL` after the last one (the first at
    once), or at once when the caller says so (the end, or enough moved meanwhile)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0.0

    @property
    def next_at(self) -> float:
        """When (``time.monotonic()``) the next call is due."""
        return self._last + INTERVAL

    def due(self, *, anyway: bool = False) -> bool:
        """Whether a call is due now (always with ``anyway``); if so, it counts as made."""
        now = time.monotonic()
        if not anyway and now - self._last < INTERVAL:
            return False
        self._last = now
        return True


async def deliver(callback: Callable[..., object], *args: object) -> None:
    """``callback(*args)``, awaited when it is a coroutine function (or returns an awaitable)."""
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


class ByteProgress:
    """Calls ``on_progress(done_bytes, total_bytes)`` as bytes move (at most every 0.1 s or
    every MiB, whichever comes first) and once more at the end; a retry starts from 0."""

    def __init__(self, callback: BytesCallback | None) -> None:
        self._callback = callback
        self.done = 0
        self.total: int | None = None
        self._pace = Pace()
        self._last_done = 0
        self._reported: tuple[int, int | None] | None = None

    def start(self, total: int | None) -> None:
        """An attempt begins (again): ``total`` bytes are to move."""
        self.done = self._last_done = 0
        self.total = total

    async def add(self, nbytes: int) -> None:
        self.done += nbytes
        if self._callback is None:
            return
        if self._pace.due(anyway=self.done - self._last_done >= _BYTES_STEP):
            self._last_done = self.done
            await self._call()

    async def finish(self) -> None:
        if self._callback is not None:
            await self._call()

    async def _call(self) -> None:
        assert self._callback is not None
        if (self.done, self.total) == self._reported:
            return  # the end, already said
        self._reported = (self.done, self.total)
        await deliver(self._callback, self.done, self.total)
