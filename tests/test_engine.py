"""The bulk engine on its own: its bound on requests in flight, throttling, cancellation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from mpr_storage._engine import Engine

Send = Callable[[tuple[str, int]], Awaitable[None]]


class InFlight:
    """Counts the work running at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.done: list[str] = []

    async def run(self, key: str, delay: float) -> int:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await anyio.sleep(delay)
        finally:
            self.now -= 1
        self.done.append(key)
        return 1


def _engine(concurrency: int) -> Engine[int]:
    return Engine(operation="test", bucket="b", concurrency=concurrency, on_progress=None)


def _keys(n: int) -> Callable[[Send], Awaitable[None]]:
    async def produce(send: Send) -> None:
        for i in range(n):
            await send((f"k{i}", i))

    return produce


async def test_at_most_concurrency_keys_run_at_once_and_every_key_runs() -> None:
    engine, seen = _engine(8), InFlight()
    await engine.run(_keys(100), lambda key, _: seen.run(key, 0.002))
    assert seen.peak == 8
    assert sorted(seen.done) == sorted(f"k{i}" for i in range(100))
    assert len(engine.report.done) == 100 and engine.report.bytes == 100


async def test_throttling_halves_the_keys_in_flight_then_successes_grow_it_back() -> None:
    engine, seen = _engine(16), InFlight()
    while_throttled: list[int] = []

    async def work(key: str, i: int) -> int:
        if i == 20:
            engine.limit.throttled()  # the server said SlowDown: 16 -> 8
        if 30 <= i < 40:  # a few successes later: 8 or 9, never the 16 before
            while_throttled.append(seen.now + 1)
        return await seen.run(key, 0.002)

    await engine.run(_keys(2000), work)
    assert len(engine.report.done) == 2000
    assert while_throttled and max(while_throttled) <= 10
    assert engine.limit.total == 16 and seen.peak == 16  # grown back by one per window


async def test_cancelling_a_throttled_engine_ends_at_once() -> None:
    engine, seen = _engine(8), InFlight()

    async def work(key: str, i: int) -> int:
        engine.limit.throttled()
        return await seen.run(key, 10)  # every worker waits: in flight, or for the limit

    with anyio.move_on_after(0.5) as scope:
        await engine.run(_keys(100), work)
    assert scope.cancelled_caught
    assert engine.limit.active == 0  # every slot given back


async def test_a_failing_producer_stops_the_workers_and_surfaces_its_error() -> None:
    engine, seen = _engine(4), InFlight()

    async def produce(send: Send) -> None:
        await send(("k0", 0))
        raise RuntimeError("the listing broke")

    with pytest.raises(RuntimeError, match="the listing broke"):
        await engine.run(produce, lambda key, _: seen.run(key, 10))
