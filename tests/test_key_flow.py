"""How keys flow through a bulk call: workers scale with the keys in flight, never with the
concurrency setting alone, and a key starts as soon as its source yields it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Generator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import S3Target
from mpr_storage import Storage, TransferReport

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])


async def seed(s3: S3Target, count: int) -> list[str]:
    keys = [s3.key(f"f{i:02}.bin") for i in range(count)]
    async with Storage(s3.settings()) as st:
        client = await st.client()
        for i, key in enumerate(keys):
            await client.put_object(Bucket=s3.bucket, Key=key, Body=bytes([65 + i]) * 100)
    return keys


class TaskCounter:
    """Counts the tasks created on the running loop (every anyio task is one)."""

    def __init__(self) -> None:
        self.created = 0

    def __call__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any],
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        self.created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)


@PATHS
async def test_a_huge_concurrency_on_three_keys_starts_a_handful_of_tasks(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    keys = await seed(s3, 3)
    loop = asyncio.get_running_loop()
    counter = TaskCounter()
    async with Storage(s3.settings(fast_path=fast_path, max_concurrency=200_000)) as st:
        listed = await st.list_objects(s3.bucket, s3.prefix)  # connections opened already
        before = loop.get_task_factory()
        loop.set_task_factory(counter)
        try:
            by_name = await st.download_many(s3.bucket, keys, tmp_path / "a", prefix=s3.prefix)
            streamed = await st.download_many(
                s3.bucket, st.iter_objects(s3.bucket, s3.prefix), tmp_path / "b", prefix=s3.prefix
            )
            uploaded = await st.upload_many(tmp_path / "a", s3.bucket, s3.key("up/"))
        finally:
            loop.set_task_factory(before)
    assert len(listed) == 3
    for report in (by_name, streamed, uploaded):
        assert report.ok and len(report.done) == 3
    # 3 workers, a producer, a key reader, the transport's own: never one per unit of
    # concurrency (before: 200,000 workers and end marks per call)
    assert counter.created < 3 * 30, counter.created


@PATHS
async def test_keys_from_a_trickling_source_start_at_once_and_progress_ticks(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    keys = await seed(s3, 10)
    dest = tmp_path / "dst"
    paths = [dest / key.removeprefix(s3.prefix) for key in keys]
    release = anyio.Event()
    calls: list[tuple[int, int | None, int]] = []

    async def source() -> AsyncIterator[str]:  # 10 frames appear, then the producer waits
        for key in keys:
            yield key
        await release.wait()

    def on_progress(done: int, total: int | None, nbytes: int) -> None:
        calls.append((done, total, nbytes))

    result: list[TransferReport] = []
    async with Storage(s3.settings(fast_path=fast_path)) as st:

        async def run() -> None:
            report = await st.download_many(
                s3.bucket, source(), dest, prefix=s3.prefix, on_progress=on_progress
            )
            result.append(report)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            for _ in range(600):  # bounded: 30 s at most, ends as soon as the files exist
                if all(p.exists() for p in paths):
                    break
                await anyio.sleep(0.05)
            assert all(p.exists() for p in paths), "keys held back while the source waits"
            seen = len(calls)
            for _ in range(600):  # progress goes on while no key moves
                if len(calls) >= seen + 3:
                    break
                await anyio.sleep(0.05)
            assert len(calls) >= seen + 3 and not release.is_set()
            assert calls[-1][0] == 10 and calls[-1][1] is None  # total unknown: still listing
            release.set()
    assert len(result[0].done) == 10
    assert calls[-1] == (10, 10, 1000)
