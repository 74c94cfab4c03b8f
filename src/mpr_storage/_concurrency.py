"""A bulk call's requests in flight: its ``concurrency`` checked, the limit that adapts to it."""

from __future__ import annotations

import logging
import time

import anyio

__all__ = ["AdaptiveLimit", "check_concurrency"]

_log = logging.getLogger(__name__)


class AdaptiveLimit:
    """How many requests a bulk call has in flight: halves on throttling, grows back by one
    per window of successes.

    Acquiring costs nothing while under the limit: no checkpoint, no turn of the event loop
    (anyio's ``CapacityLimiter`` yields once per acquire, which per object of a bulk call
    cost more than the limit itself). Only while throttled do workers wait, woken whenever a
    request ends or the limit grows.
    """

    def __init__(self, maximum: int, *, operation: str = "") -> None:
        self.operation = operation  # named in the log line of a cut
        self.maximum = self.total = maximum
        self.active = 0
        self._streak = 0
        self._last_cut = 0.0
        self._changed: anyio.Event | None = None

    async def acquire(self) -> None:
        while self.active >= self.total:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._wake()

    def throttled(self) -> None:
        now = time.monotonic()
        if now - self._last_cut > 0.5:  # one cut per burst, not one per failed request
            self._last_cut = now
            if self.total > 1:
                _log.info(
                    "%s: throttled by the server: at most %d requests in flight (was %d)",
                    self.operation or "a bulk call", self.total // 2, self.total,
                )  # fmt: skip
            self.total = max(1, self.total // 2)
        self._streak = 0

    def succeeded(self) -> None:
        if self.total < self.maximum:
            self._streak += 1
            if self._streak >= self.total:
                self._streak = 0
                self.total += 1
                self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def check_concurrency(value: int) -> int:
    """``value``, if it is a positive ``int`` (a ``bool`` is not), else ``ValueError``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"concurrency must be a positive integer, got {value!r}")
    return value
