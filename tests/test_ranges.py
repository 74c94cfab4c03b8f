"""Large downloads: byte ranges on several connections, one version, resumed where cut."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest
from aiohttp import web

from conftest import S3Target
from mpr_storage import ObjectInfo, PreconditionFailedError, Storage
from mpr_storage._ranges import Ranges
from s3proxy import FaultProxy, Seen
from test_transfer import leftovers

MiB = 1024 * 1024
PART = MiB  # S3_RANGE_PART_SIZE of these tests: small objects, many ranges
FAST = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])


def via(proxy: FaultProxy, s3: S3Target, fast_path: bool, **overrides: Any) -> Storage:
    """Through ``proxy``, 1 MiB parts on 4 connections, whichever speed the first part comes at
    (``range_stream_rate=0``: on loopback it comes fast enough to fetch the rest alone)."""
    settings = {
        "range_part_size": PART,
        "range_concurrency": 4,
        "range_stream_rate": 0,
        "max_attempts": 4,
        **overrides,
    }
    return Storage(s3.settings(endpoint_url=proxy.url, fast_path=fast_path, **settings))


async def seed(s3: S3Target, tmp_path: Path, name: str, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(data)
    key = s3.key(name)
    async with Storage(s3.settings()) as st:
        await st.upload_file(tmp_path / name, s3.bucket, key)
    (tmp_path / name).unlink()
    return key, data


def object_gets(proxy: FaultProxy) -> list[Seen]:
    return [r for r in proxy.requests if r.method == "GET" and r.is_object]


def test_parts_are_sized_from_the_object() -> None:
    ranges = Ranges(8 * MiB, 16, 400 * MiB)
    assert ranges.alone_until(8 * MiB) == 0.02  # 8 MiB in 20 ms: one connection is enough
    assert Ranges(8 * MiB, 16, 0).alone_until(8 * MiB) == 0  # ranges at once
    assert ranges.parts(8 * MiB, 12 * MiB) == [(8 * MiB, 12 * MiB)]
    parts = ranges.parts(8 * MiB, 256 * MiB)  # 16 MiB each: about 16 at once
    assert {b - a for a, b in parts[:-1]} == {16 * MiB} and len(parts) == 16
    parts = ranges.parts(8 * MiB, 4096 * MiB)  # at most 8 x the part size
    assert max(b - a for a, b in parts) == 64 * MiB
    assert parts[-1][1] == 4096 * MiB
    assert all(a == b for (_, a), (b, _) in zip(parts, parts[1:], strict=False))
    assert not Ranges(8 * MiB, 1).enabled


@FAST
async def test_ranges_above_the_part_size_one_request_below(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    big, big_data = await seed(s3, tmp_path, "big.bin", 5 * MiB + 17)
    small, small_data = await seed(s3, tmp_path, "small.bin", PART - 1)
    async with via(proxy, s3, fast_path) as st:
        etag = (await st.stat_object(s3.bucket, big)).etag
        proxy.reset()
        out = await st.download_file(s3.bucket, small, tmp_path / "small.bin")
        assert out.read_bytes() == small_data
        assert len(object_gets(proxy)) == 1  # one request for an object under one part
        proxy.reset()
        out = await st.download_file(s3.bucket, big, tmp_path / "big.bin")
    assert out.read_bytes() == big_data
    gets = object_gets(proxy)
    # the first part, then 5 MiB in parts of 2 MiB (size / 4 connections, whole MiB)
    assert sorted(r.headers["range"] for r in gets) == [
        f"bytes=0-{MiB - 1}",
        f"bytes={MiB}-{3 * MiB - 1}",
        f"bytes={3 * MiB}-{5 * MiB - 1}",
        f"bytes={5 * MiB}-{5 * MiB + 16}",
    ]
    first = min(gets, key=lambda r: r.at)
    assert "if-match" not in first.headers
    assert all(r.headers["if-match"] == f'"{etag}"' for r in gets if r is not first)
    assert proxy.sent() == len(big_data)  # no byte fetched twice
    assert leftovers(tmp_path) == []


@FAST
async def test_a_first_part_fast_enough_alone_brings_the_rest_in_one_request(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    key, data = await seed(s3, tmp_path, "big.bin", 5 * MiB + 17)
    calls: list[int] = []
    # 1 byte/s: whatever the first part's time, it is in time (a connection as fast as needed)
    async with via(proxy, s3, fast_path, range_stream_rate=1) as st:
        etag = (await st.stat_object(s3.bucket, key)).etag
        proxy.reset()
        out = await st.download_file(
            s3.bucket, key, tmp_path / "out.bin", on_progress=lambda d, t: calls.append(d)
        )
    assert out.read_bytes() == data
    gets = sorted(object_gets(proxy), key=lambda r: r.at)
    assert [r.headers["range"] for r in gets] == [
        f"bytes=0-{MiB - 1}",
        f"bytes={MiB}-{5 * MiB + 16}",
    ]
    assert gets[1].headers["if-match"] == f'"{etag}"'  # the same version, as ranges are
    assert proxy.max_in_flight == 1 and proxy.sent() == len(data)
    assert calls == sorted(calls) and calls[-1] == len(data)
    assert leftovers(tmp_path) == []


class _Upstream(FaultProxy):
    """A proxy that also reads the store itself, through boto3."""

    def __init__(self, upstream: str, s3: S3Target) -> None:
        super().__init__(upstream)
        self._client = boto3.client("s3", **s3.settings().client_kwargs())

    def close(self) -> None:
        super().close()
        self._client.close()


class _SlowFirst(_Upstream):
    """Sends the first ranged GET's answer in two halves, ``pause`` seconds apart."""

    def __init__(self, upstream: str, s3: S3Target, pause: float) -> None:
        super().__init__(upstream, s3)
        self.pause = pause
        self.slowed: float | None = None  # when the first answer's second half went out

    async def intercept(self, request: web.BaseRequest, body: bytes) -> web.Response | None:
        if request.method != "GET" or "Range" not in request.headers or self.slowed:
            return None
        self.slowed = -1.0
        bucket, _, key = request.path.lstrip("/").partition("/")
        got = await anyio.to_thread.run_sync(
            lambda: self._client.get_object(Bucket=bucket, Key=key, Range=request.headers["Range"])
        )
        data = got["Body"].read()
        headers = {"ETag": got["ETag"], "Content-Range": got["ContentRange"]}
        response = web.StreamResponse(status=206, headers=headers)
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        await anyio.sleep(self.pause)
        self.slowed = time.monotonic()
        await response.write(data[len(data) // 2 :])
        await response.write_eof()
        return response  # type: ignore[return-value]  # prepared and sent: served as is


@FAST
async def test_a_slow_first_part_starts_the_other_ranges_meanwhile(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    key, data = await seed(s3, tmp_path, "big.bin", 5 * MiB + 17)
    with _SlowFirst(s3.server.endpoint_url, s3, pause=0.3) as proxy:
        # 1 MiB at 32 MiB/s: alone it had 1/32 s, and takes over 0.3 s
        async with via(proxy, s3, fast_path, range_stream_rate=32 * MiB) as st:
            out = await st.download_file(s3.bucket, key, tmp_path / "out.bin")
    assert out.read_bytes() == data
    gets = object_gets(proxy)
    assert len(gets) == 4  # the first part, then 3 ranges of 2 MiB
    first = min(gets, key=lambda r: r.at)
    assert first.headers["range"] == f"bytes=0-{MiB - 1}"
    # every range went out while the first part was still held back: started meanwhile
    # (how many overlap each other depends on the machine: the last one is 17 bytes)
    assert proxy.slowed is not None and all(r.at < proxy.slowed for r in gets)
    # the first part went out of intercept() (not counted): the rest, none of it twice
    assert proxy.sent() == len(data) - MiB
    assert leftovers(tmp_path) == []


@FAST
async def test_bulk_ranges_only_the_large_members(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    big, big_data = await seed(s3, tmp_path, "m/big.bin", 3 * MiB + 5)
    small, small_data = await seed(s3, tmp_path, "m/small.bin", 1000)
    prefix = s3.key("m/")
    async with via(proxy, s3, fast_path) as st:
        listing = await st.list_objects(s3.bucket, prefix)
        proxy.reset()
        report = await st.download_many(s3.bucket, listing, tmp_path / "dst", prefix=prefix)
    assert report.ok and len(report.done) == 2
    assert (tmp_path / "dst" / "big.bin").read_bytes() == big_data
    assert (tmp_path / "dst" / "small.bin").read_bytes() == small_data
    by_key = {}
    for r in object_gets(proxy):
        by_key.setdefault(r.path.rsplit("/", 1)[-1], []).append(r.headers.get("range"))
    assert by_key["small.bin"] == [None]  # a listed small object: one plain GET
    assert len(by_key["big.bin"]) == 4 and None not in by_key["big.bin"]  # 1 MiB parts


@FAST
@pytest.mark.parametrize("concurrency", [1, 4], ids=["one-stream", "ranges"])
async def test_a_body_cut_at_90_percent_resumes_where_it_stopped(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool, concurrency: int
) -> None:
    size = 5 * MiB + 17
    key, data = await seed(s3, tmp_path, "big.bin", size)
    if concurrency == 1:
        proxy.cut(1, after_bytes=size * 9 // 10)  # the one stream, at 90%
    else:  # the last part (3 MiB .. 5 MiB + 17), cut at 90% of the object
        proxy.cut(1, after_bytes=size * 9 // 10 - 3 * MiB, range_from=3 * MiB)
    calls: list[tuple[int, int | None]] = []
    async with via(proxy, s3, fast_path, range_concurrency=concurrency) as st:
        out = await st.download_file(
            s3.bucket, key, tmp_path / "out.bin", on_progress=lambda d, t: calls.append((d, t))
        )
    assert out.read_bytes() == data
    gets = object_gets(proxy)
    assert len(gets) == (2 if concurrency == 1 else 4 + 1)
    resumed = max(gets, key=lambda r: r.at).headers["range"]
    start = int(resumed.removeprefix("bytes=").split("-")[0])
    assert size * 9 // 10 - MiB <= start <= size * 9 // 10  # from where it stopped, not from 0
    assert size <= proxy.sent() <= size + MiB  # at most what was unread at the cut, again
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)  # never backwards
    assert calls[-1] == (size, size)
    assert leftovers(tmp_path) == []


class _Replacing(_Upstream):
    """Replaces the object (a new version, same size) right after answering the first GET."""

    def __init__(self, upstream: str, s3: S3Target, key: str, data: bytes) -> None:
        super().__init__(upstream, s3)
        self._put = {"Bucket": s3.bucket, "Key": key, "Body": data}
        self.replaced = False

    def rewrite(
        self, request: web.BaseRequest, status: int, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if request.method == "GET" and "Range" in request.headers and not self.replaced:
            self.replaced = True  # the first answer is the old version; every later one new
            self._client.put_object(**self._put)
        return status, headers, body


@FAST
async def test_an_object_replaced_between_ranges_never_mixes(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    key, old = await seed(s3, tmp_path, "big.bin", 4 * MiB)
    dest = tmp_path / "dst" / "big.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"what was there before")
    with _Replacing(s3.server.endpoint_url, s3, key, os.urandom(4 * MiB)) as proxy:
        async with via(proxy, s3, fast_path) as st:
            with pytest.raises(PreconditionFailedError) as info:
                await st.download_file(s3.bucket, key, dest)
    assert proxy.replaced
    assert info.value.key == key and info.value.operation == "download_file"
    assert dest.read_bytes() == b"what was there before"  # untouched: nothing mixed
    assert leftovers(dest.parent) == []
    assert old  # the old version was never renamed into place either


@FAST
async def test_cancelling_mid_range_leaves_nothing(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    key, _ = await seed(s3, tmp_path, "big.bin", 6 * MiB)
    dest = tmp_path / "dst" / "big.bin"
    async with via(proxy, s3, fast_path) as st:
        with anyio.CancelScope() as scope:

            def cancel_half_way(done: int, total: int | None) -> None:
                if done >= 2 * MiB:
                    scope.cancel()

            await st.download_file(s3.bucket, key, dest, on_progress=cancel_half_way)
    assert scope.cancelled_caught
    assert len(object_gets(proxy)) > 1  # ranges were in flight
    assert not dest.exists()
    assert leftovers(tmp_path) == []


@FAST
async def test_an_empty_object_and_a_server_without_ranges(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    client = boto3.client("s3", **s3.settings().client_kwargs())
    try:
        client.put_object(Bucket=s3.bucket, Key=s3.key("empty"), Body=b"")
    finally:
        client.close()
    async with via(proxy, s3, fast_path) as st:
        out = await st.download_file(s3.bucket, s3.key("empty"), tmp_path / "empty")
    assert out.read_bytes() == b""
    key, data = await seed(s3, tmp_path, "big.bin", 3 * MiB)
    with _NoRanges(s3.server.endpoint_url, s3) as plain:
        async with via(plain, s3, fast_path) as st:
            out = await st.download_file(s3.bucket, key, tmp_path / "big.out")
    assert out.read_bytes() == data
    assert len(object_gets(plain)) == 1  # a 200 to the first range: one stream


class _NoRanges(_Upstream):
    """A server that ignores Range headers: answers 200 with the whole object."""

    async def intercept(self, request: web.BaseRequest, body: bytes) -> web.Response | None:
        if request.method != "GET" or "Range" not in request.headers:
            return None
        bucket, _, key = request.path.lstrip("/").partition("/")
        got = self._client.get_object(Bucket=bucket, Key=key)
        return web.Response(status=200, body=got["Body"].read(), headers={"ETag": got["ETag"]})


async def test_info_of_a_ranged_body(s3: S3Target, tmp_path: Path) -> None:
    key, data = await seed(s3, tmp_path, "b.bin", 3000)
    async with Storage(s3.settings()) as st:
        transport = await st.transport()
        async with transport.get(s3.bucket, key, operation="t", range=(1000, 2000)) as body:
            assert body is not None
            assert (body.status, body.start, body.length, body.size) == (206, 1000, 1000, 3000)
            info = body.info(key)
            assert await body.read() == data[1000:2000]
        assert isinstance(info, ObjectInfo) and info.size == 3000 and info.etag == body.etag
        async with transport.get(s3.bucket, key, operation="t", range=(-10, None)) as body:
            assert body is not None and await body.read() == data[-10:]
            assert body.start == 2990
        async with transport.get(s3.bucket, key, operation="t", if_none_match=info.etag) as body:
            assert body is None


@FAST
async def test_ranges_hold_about_one_mib_per_connection(
    seaweed: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    """SeaweedFS only: moto serves from a thread of this process, its memory counted too."""
    s3 = seaweed
    key, data = await seed(s3, tmp_path, "big.bin", 48 * MiB)
    settings = s3.settings(
        fast_path=fast_path, range_part_size=MiB, range_concurrency=16, range_stream_rate=0
    )
    async with Storage(settings) as st:
        await st.stat_object(s3.bucket, key)  # the client is up before counting
        tracemalloc.start()
        try:
            out = await st.download_file(s3.bucket, key, tmp_path / "out.bin")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert out.read_bytes() == data
    # the bound: 16 connections x (a 256 KiB block + what aiohttp reads ahead) < 16 MiB
    assert peak < 16 * MiB, f"{peak / MiB:.1f} MiB allocated at the peak"
