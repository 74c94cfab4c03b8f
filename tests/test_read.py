"""Objects read into memory or as streams, written from memory: open_object, get_bytes,
put_bytes on both servers and both transports."""

from __future__ import annotations

import gc
import os
import tracemalloc

import anyio
import anyio.lowlevel
import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import (
    InvalidRangeError,
    ObjectExistsError,
    ObjectNotFoundError,
    Storage,
    StorageError,
    sync,
)
from mpr_storage._body import Body
from mpr_storage._read import ObjectBody

MiB = 1024 * 1024


async def seed(st: Storage, s3: S3Target, name: str, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    key = s3.key(name)
    await st.put_bytes(data, s3.bucket, key)
    return key, data


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def tcp_sockets() -> int:
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            found += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return found


async def test_open_object_streams_the_whole_object_or_a_range(s3: S3Target) -> None:
    async with Storage(s3.settings()) as st:
        key, data = await seed(st, s3, "v.mp4", 3 * MiB + 5)
        async with st.open_object(s3.bucket, key) as body:
            assert (body.start, body.end) == (0, len(data))
            assert body.info.size == len(data)
            assert body.info.content_type == "video/mp4"
            chunks = [chunk async for chunk in body]
        assert all(0 < len(c) <= MiB for c in chunks)
        assert b"".join(chunks) == data
        async with st.open_object(s3.bucket, key, start=MiB, end=2 * MiB + 3) as body:
            assert (body.start, body.end) == (MiB, 2 * MiB + 3)
            assert body.info.size == len(data)  # the whole object's
            assert await body.read() == data[MiB : 2 * MiB + 3]
        async with st.open_object(s3.bucket, key, start=-10) as body:
            assert (body.start, body.end) == (len(data) - 10, len(data))
            assert await body.read() == data[-10:]
        async with st.open_object(s3.bucket, key, start=5) as body:
            first = await anext(body)
            assert first == data[5 : 5 + len(first)]
            assert await body.read() == data[5 + len(first) :]


async def test_open_object_refuses_a_range_beyond_and_a_missing_key(s3: S3Target) -> None:
    async with Storage(s3.settings()) as st:
        key, _ = await seed(st, s3, "small.bin", 100)
        with pytest.raises(InvalidRangeError) as caught:
            async with st.open_object(s3.bucket, key, start=100):
                pass
        assert caught.value.size == 100
        assert isinstance(caught.value, ValueError)
        with pytest.raises(ObjectNotFoundError):
            async with st.open_object(s3.bucket, s3.key("missing.bin")):
                pass
        with pytest.raises(ValueError, match="backward"):
            async with st.open_object(s3.bucket, key, start=10, end=10):
                pass


async def test_get_bytes_slices_and_clamps_the_end(s3: S3Target) -> None:
    async with Storage(s3.settings()) as st:
        key, data = await seed(st, s3, "overlay.json", 1000)
        assert await st.get_bytes(s3.bucket, key) == data
        assert await st.get_bytes(s3.bucket, key, start=10, end=20) == data[10:20]
        assert await st.get_bytes(s3.bucket, key, start=-7) == data[-7:]
        assert await st.get_bytes(s3.bucket, key, start=-5000) == data  # as slicing
        # an end beyond the object is clamped to its size, as S3 and slicing do
        assert await st.get_bytes(s3.bucket, key, start=990, end=5000) == data[990:]
        with pytest.raises(InvalidRangeError) as caught:
            await st.get_bytes(s3.bucket, key, start=1000)
        assert caught.value.size == 1000
        with pytest.raises(ObjectNotFoundError):
            await st.get_bytes(s3.bucket, s3.key("nope.json"))


async def test_put_bytes_takes_any_bytes_like_and_guesses_the_type(s3: S3Target) -> None:
    async with Storage(s3.settings()) as st:
        for i, data in enumerate([b"abc", bytearray(b"defg"), memoryview(b"xhijk")[1:]]):
            key = s3.key(f"o{i}.json")
            info = await st.put_bytes(data, s3.bucket, key)
            assert (info.key, info.size, info.content_type) == (key, len(data), "application/json")
            assert await st.get_bytes(s3.bucket, key) == bytes(data)
            head = await st.stat_object(s3.bucket, key)
            assert head.content_type == "application/json" and head.etag == info.etag
        key = s3.key("x.bin")
        await st.put_bytes(b"1", s3.bucket, key, content_type="text/plain")
        assert (await st.stat_object(s3.bucket, key)).content_type == "text/plain"


async def test_put_bytes_create_only_leaves_an_existing_key_alone(s3: S3Target) -> None:
    async with Storage(s3.settings()) as st:
        key = s3.key("once.json")
        await st.put_bytes(b"first", s3.bucket, key, overwrite=False)
        with pytest.raises(ObjectExistsError) as caught:
            await st.put_bytes(b"second", s3.bucket, key, overwrite=False)
        assert isinstance(caught.value, FileExistsError)
        assert await st.get_bytes(s3.bucket, key) == b"first"
        await st.put_bytes(b"third", s3.bucket, key)  # overwrite=True replaces it
        assert await st.get_bytes(s3.bucket, key) == b"third"


async def test_of_concurrent_create_only_writers_exactly_one_wins(s3: S3Target) -> None:
    key = s3.key("race.json")
    won: list[int] = []
    lost: list[int] = []

    async with Storage(s3.settings()) as st:

        async def write(i: int) -> None:
            try:
                await st.put_bytes(b"writer-%d" % i, s3.bucket, key, overwrite=False)
                won.append(i)
            except ObjectExistsError:
                lost.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(write, i)
        assert len(won) == 1 and len(lost) == 7
        assert await st.get_bytes(s3.bucket, key) == b"writer-%d" % won[0]


async def test_abandoned_streams_leave_no_connections_descriptors_or_memory(
    s3: S3Target,
) -> None:
    async with Storage(s3.settings(max_concurrency=10)) as st:
        key, data = await seed(st, s3, "big.bin", 4 * MiB)
        async with st.open_object(s3.bucket, key) as body:  # warm up: pool, TLS, imports
            await anext(body)
        fds, sockets = open_fds(), tcp_sockets()
        tracemalloc.start()
        try:
            for _ in range(200):
                async with st.open_object(s3.bucket, key) as body:
                    first = await anext(body)
                    assert first == data[: len(first)]
            # a cancellation and an exception inside the block also release the connection
            with anyio.CancelScope() as scope:
                async with st.open_object(s3.bucket, key) as body:
                    await anext(body)
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()  # the cancellation lands here
            with pytest.raises(RuntimeError):
                async with st.open_object(s3.bucket, key) as body:
                    await anext(body)
                    raise RuntimeError("handler failed")
            gc.collect()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 64 * MiB  # 200 x 4 MiB never held: at most a few chunks at once
        assert tcp_sockets() <= sockets + 10  # no more than the pool's size kept alive
        assert open_fds() <= fds + 10
        # the pool still works: nothing is stuck waiting for a released connection
        assert await st.get_bytes(s3.bucket, key, start=-3) == data[-3:]
    assert tcp_sockets() <= sockets


async def test_the_module_level_forms(s3: S3Target) -> None:
    key = s3.key("m.json")
    info = await mpr_storage.put_bytes(b"hello", s3.bucket, key)
    assert info.size == 5
    assert await mpr_storage.get_bytes(s3.bucket, key, start=1) == b"ello"
    async with mpr_storage.open_object(s3.bucket, key, end=2) as body:
        assert (body.start, body.end, body.info.size) == (0, 2, 5)
        assert await body.read() == b"he"


def test_the_sync_twins(s3: S3Target) -> None:
    key = s3.key("s.bin")
    data = os.urandom(2 * MiB + 1)
    assert sync.put_bytes(data, s3.bucket, key).size == len(data)
    assert sync.get_bytes(s3.bucket, key, start=-1) == data[-1:]
    with sync.open_object(s3.bucket, key, start=1) as body:
        assert (body.start, body.end, body.info.size) == (1, len(data), len(data))
        chunks = list(body)
    assert all(len(c) <= MiB for c in chunks) and b"".join(chunks) == data[1:]
    with sync.open_object(s3.bucket, key) as body:  # left after one chunk
        first = next(iter(body))
        assert 0 < len(first) <= MiB and first == data[: len(first)]
    with sync.open_object(s3.bucket, key, start=5, end=9) as body:
        assert body.read() == data[5:9]
    with pytest.raises(ObjectExistsError):
        sync.put_bytes(b"x", s3.bucket, key, overwrite=False)
    with pytest.raises(InvalidRangeError), sync.open_object(s3.bucket, key, start=len(data)):
        pass


async def test_create_only_is_refused_where_the_provider_has_no_conditional_put(
    s3: S3Target,
) -> None:
    key = s3.key("gcs.json")
    async with Storage(s3.settings(provider="gcs")) as st:
        with pytest.raises(StorageError, match="create-only writes") as caught:
            await st.put_bytes(b"x", s3.bucket, key, overwrite=False)
        assert not isinstance(caught.value, ObjectExistsError)
        assert s3.bucket in str(caught.value) and key in str(caught.value)
        assert not await st.object_exists(s3.bucket, key)  # nothing was written
        await st.put_bytes(b"y", s3.bucket, key)  # a plain write still works
        assert await st.get_bytes(s3.bucket, key) == b"y"


def whole_answer(data: bytes) -> Body:
    """A 200 with the whole object, as a server without ranges answers a Range request."""
    pieces = [data[i : i + 4] for i in range(0, len(data), 4)]

    async def read(n: int) -> bytes:
        if n == -1:
            rest = b"".join(pieces)
            pieces.clear()
            return rest
        return pieces.pop(0) if pieces else b""

    headers = {"content-length": str(len(data)), "content-type": "text/plain"}
    return Body(200, headers, read, ("open_object", "b", "k"))


@pytest.mark.parametrize(("start", "end"), [(3, 11), (0, 5), (-6, None), (7, None), (2, 99)])
async def test_a_whole_answer_to_a_range_serves_just_the_range(start: int, end: int | None) -> None:
    data = bytes(range(20))
    body = ObjectBody(whole_answer(data), "b", "k", start, end)
    want = data[start:end]
    assert (body.start, body.end, body.info.size) == (start % 20, start % 20 + len(want), 20)
    assert b"".join([chunk async for chunk in body]) == want
    assert await ObjectBody(whole_answer(data), "b", "k", start, end).read() == want
    with pytest.raises(InvalidRangeError) as caught:
        ObjectBody(whole_answer(data), "b", "k", 20, None)
    assert caught.value.size == 20 and "s3://b/k" in str(caught.value)
