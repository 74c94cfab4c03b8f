"""Faults injected between client and server: throttling, cut bodies, stalls, resets.

Transfers must end byte-exact or fail cleanly, in bounded time, leaving no partial file.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from conftest import S3Target
from mpr_storage import (
    Storage,
    StorageConnectionError,
    StorageError,
    StorageTimeoutError,
    ThrottledError,
    TransferError,
    TransferReport,
)
from nettools import closed_port
from s3proxy import FaultProxy
from test_transfer import leftovers, make_frames, tree


def via(proxy: FaultProxy, s3: S3Target, **overrides: object) -> Storage:
    return Storage(s3.settings(endpoint_url=proxy.url, **overrides))


async def seeded(s3: S3Target, tmp_path: Path, count: int = 60) -> dict[str, bytes]:
    files = make_frames(tmp_path / "src", count, size=30_000)
    async with Storage(s3.settings()) as st:
        assert (await st.upload_frames(s3.prefix.strip("/"), tmp_path / "src", bucket=s3.bucket)).ok
    return files


async def test_second_prefetch_makes_no_object_get(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path
) -> None:
    files = await seeded(s3, tmp_path)
    timeline = s3.prefix.strip("/")
    async with via(proxy, s3) as st:
        first = await st.prefetch_frames(timeline, tmp_path / "dst", bucket=s3.bucket)
        assert len(first.done) == len(files)
        assert proxy.count("GET", objects_only=True) == len(files)  # one GET each, no HEAD
        assert proxy.count("HEAD") == 0
        proxy.reset()
        second = await st.prefetch_frames(timeline, tmp_path / "dst", bucket=s3.bucket)
    assert len(second.skipped) == len(files) and second.done == []
    assert proxy.count("GET", objects_only=True) == 0
    assert proxy.count() == 1  # the listing, nothing else


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
async def test_slowdown_is_retried_to_a_byte_exact_result(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    files = await seeded(s3, tmp_path)
    proxy.fail(12, status=503, code="SlowDown")
    async with via(proxy, s3, fast_path=fast_path, max_attempts=6) as st:
        report = await st.prefetch_frames(s3.prefix.strip("/"), tmp_path / "dst", bucket=s3.bucket)
    assert report.ok and tree(tmp_path / "dst") == files
    assert proxy.count("GET", objects_only=True) == len(files) + 12


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
async def test_cut_bodies_are_fetched_again_never_renamed_into_place(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    files = await seeded(s3, tmp_path)
    proxy.cut(8, after_bytes=10_000)
    async with via(proxy, s3, fast_path=fast_path, max_attempts=4) as st:
        report = await st.prefetch_frames(s3.prefix.strip("/"), tmp_path / "dst", bucket=s3.bucket)
    assert report.ok and tree(tmp_path / "dst") == files
    assert leftovers(tmp_path / "dst") == []


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
async def test_cut_body_of_a_single_download_is_retried(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    files = await seeded(s3, tmp_path, count=1)
    proxy.cut(2, after_bytes=5_000)
    async with via(proxy, s3, fast_path=fast_path, max_attempts=3) as st:
        key = f"frames/{s3.prefix.strip('/')}/frame_000000.jpg"
        out = await st.download_file(s3.bucket, key, tmp_path / "one.jpg")
    assert out.read_bytes() == files["frame_000000.jpg"]


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
async def test_large_single_download_survives_throttling_and_a_cut_stream(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    data = os.urandom(9 * 1024 * 1024 + 17)  # streamed in chunks, not read whole
    key = f"{s3.prefix}big.bin"
    (tmp_path / "big.bin").write_bytes(data)
    async with Storage(s3.settings()) as st:
        await st.upload_file(tmp_path / "big.bin", s3.bucket, key)
    proxy.fail(1, status=503, code="SlowDown")
    proxy.cut(1, after_bytes=3 * 1024 * 1024)
    async with via(proxy, s3, fast_path=fast_path, max_attempts=4) as st:
        out = await st.download_file(s3.bucket, key, tmp_path / "nested" / "copy.bin")
    assert out.read_bytes() == data
    assert leftovers(tmp_path / "nested") == []
    # the throttled one, the first 8 MiB (cut, then resumed from 3 MiB) and the last part
    gets = [r for r in proxy.requests if r.method == "GET" and r.is_object]
    assert len(gets) == 4
    assert sorted(r.headers.get("range", "") for r in gets[1:]) == [
        "bytes=0-8388607",
        "bytes=3145728-8388607",
        "bytes=8388608-9437200",
    ]


async def test_resets_and_stalls_recover(proxy: FaultProxy, s3: S3Target, tmp_path: Path) -> None:
    files = await seeded(s3, tmp_path, count=30)
    proxy.reset_connections(3)
    proxy.stall(3, seconds=30)
    started = time.monotonic()
    async with via(proxy, s3, read_timeout=1, max_attempts=4) as st:
        report = await st.prefetch_frames(s3.prefix.strip("/"), tmp_path / "dst", bucket=s3.bucket)
    assert report.ok and tree(tmp_path / "dst") == files
    assert time.monotonic() - started < 20


async def test_a_key_that_keeps_failing_fails_alone(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path
) -> None:
    files = await seeded(s3, tmp_path, count=20)
    async with Storage(s3.settings()) as st:
        listed = await st.list_objects(s3.bucket, f"frames/{s3.prefix.strip('/')}/")
    proxy.fail(100, status=500, code="InternalError")  # more than any retry budget
    async with via(proxy, s3, max_attempts=2, max_concurrency=4) as st:
        with pytest.raises(TransferError) as info:
            await st.download_many(
                s3.bucket,
                listed[:1],
                tmp_path / "dst",
                prefix=listed[0].key.rsplit("/", 1)[0] + "/",
            )
        proxy.reset()
        report = await st.download_many(
            s3.bucket, listed[1:], tmp_path / "dst", prefix=listed[0].key.rsplit("/", 1)[0] + "/"
        )
    assert list(info.value.report.failed) == [listed[0].key]
    assert info.value.report.failed[listed[0].key].code == "InternalError"
    assert report.ok and len(tree(tmp_path / "dst")) == len(files) - 1
    assert leftovers(tmp_path / "dst") == []


async def test_persistent_throttling_ends_in_bounded_time(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path
) -> None:
    await seeded(s3, tmp_path, count=200)
    proxy.fail(100_000, status=503, code="SlowDown")
    started = time.monotonic()
    async with via(proxy, s3, max_attempts=3) as st:
        with pytest.raises((ThrottledError, TransferError)):
            await st.prefetch_frames(s3.prefix.strip("/"), tmp_path / "dst", bucket=s3.bucket)
    assert time.monotonic() - started < 30
    assert proxy.count("GET", objects_only=True) < 200 * 3  # gave up instead of grinding on
    assert leftovers(tmp_path / "dst") == []


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
async def test_a_bulk_call_that_gives_up_still_reports(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    files = await seeded(s3, tmp_path, count=40)
    proxy.fail(100_000, status=503, code="SlowDownRead")
    # Fewer connections than keys: with the retries' waits skipped, 40 keys in flight at once
    # could all fail before the third failure's give-up reaches them, leaving none untried.
    settings = {"max_attempts": 2, "retry_budget": 5, "max_concurrency": 4}
    async with via(proxy, s3, fast_path=fast_path, **settings) as st:
        timeline, dest = s3.prefix.strip("/"), tmp_path / "dst"
        with pytest.raises(TransferError) as info:
            await st.prefetch_frames(timeline, dest, bucket=s3.bucket)
        assert "gave up" in str(info.value) and isinstance(info.value.__cause__, ThrottledError)
        raised = info.value.report
        report = await st.prefetch_frames(timeline, dest, bucket=s3.bucket, raise_on_error=False)
    for got in (raised, report):
        assert not got.ok and got.done == [] and got.skipped == []
        assert len(got.failed) == len(files)  # every listed key: the tried and the not tried
        tried = [k for k, e in got.failed.items() if isinstance(e, ThrottledError)]
        not_tried = [e for e in got.failed.values() if not isinstance(e, ThrottledError)]
        assert tried and not_tried  # it stopped instead of trying every key
        assert all("gave up" in str(e) for e in not_tried)
    assert proxy.count("GET", objects_only=True) < 2 * len(files) * 2
    assert leftovers(tmp_path / "dst") == []


def _accounted(report: TransferReport, keys: list[str]) -> None:
    """Each key in exactly one of done / skipped / failed."""
    parts = [*report.done, *report.skipped, *report.failed]
    assert sorted(parts) == sorted(keys)
    assert len(report.done) + len(report.skipped) + len(report.failed) == len(keys)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
async def test_a_call_that_gives_up_on_503_accounts_for_every_key(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    keys = [s3.key(f"k{i:02}.bin") for i in range(40)]  # none needs to exist: all answer 503
    proxy.fail(100_000, status=503, code="SlowDown")
    async with via(proxy, s3, fast_path=fast_path, max_attempts=1, max_concurrency=4) as st:
        report = await st.download_many(
            s3.bucket, keys, tmp_path / "dst", prefix=s3.prefix, raise_on_error=False
        )
        with pytest.raises(TransferError) as info:
            await st.download_many(s3.bucket, iter(keys), tmp_path / "dst", prefix=s3.prefix)
    for got in (report, info.value.report):
        _accounted(got, keys)
        assert got.done == [] and len(got.failed) == 40
        assert all(isinstance(e, StorageError) for e in got.failed.values())
        assert any("gave up" in str(e) for e in got.failed.values())
    assert proxy.count("GET", objects_only=True) < 2 * 40  # it did give up
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
async def test_a_call_that_gives_up_on_an_unreachable_endpoint_accounts_for_every_key(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    keys = [f"frames/k{i:02}.bin" for i in range(40)]
    settings = s3.settings(
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        fast_path=fast_path,
        max_attempts=1,
        connect_timeout=1,
        max_concurrency=2,
    )

    async def source() -> AsyncIterator[str]:
        for key in keys:
            yield key

    async with Storage(settings) as st:
        explicit = await st.download_many(
            s3.bucket, keys, tmp_path / "a", prefix="frames/", raise_on_error=False
        )
        streamed = await st.download_many(
            s3.bucket, source(), tmp_path / "b", prefix="frames/", raise_on_error=False
        )
    _accounted(explicit, keys)  # an explicit list: every key, also those never read
    assert not explicit.done and any("gave up" in str(e) for e in explicit.failed.values())
    assert not streamed.done and streamed.failed  # a stream: every key it read
    assert len(streamed.failed) == len(set(streamed.failed)) <= 40
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
async def test_persistent_stall_times_out(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    await seeded(s3, tmp_path, count=1)
    proxy.stall(100, seconds=60)
    started = time.monotonic()
    async with via(proxy, s3, fast_path=fast_path, read_timeout=1, max_attempts=2) as st:
        key = f"frames/{s3.prefix.strip('/')}/frame_000000.jpg"
        with pytest.raises(StorageTimeoutError) as info:
            await st.download_file(s3.bucket, key, tmp_path / "one.jpg")
    assert isinstance(info.value, StorageConnectionError) and key in str(info.value)
    assert time.monotonic() - started < 15
    assert not (tmp_path / "one.jpg").exists()


async def test_cancelled_multipart_upload_is_aborted(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path
) -> None:
    MiB = 1024 * 1024
    (tmp_path / "big.bin").write_bytes(b"v" * (16 * MiB))
    key = s3.key("cancelled.bin")
    proxy.stall(1000, method="PUT")  # every part upload hangs: the cancel lands mid-upload
    settings = dict(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    async with via(proxy, s3, **settings) as st:
        with anyio.move_on_after(1) as scope:
            await st.upload_file(tmp_path / "big.bin", s3.bucket, key)
        assert scope.cancelled_caught
    assert proxy.count("POST", objects_only=True) == 1  # CreateMultipartUpload
    assert proxy.count("DELETE", objects_only=True) == 1  # AbortMultipartUpload, shielded
    async with Storage(s3.settings()) as st:
        client = await st.client()
        uploads = await client.list_multipart_uploads(Bucket=s3.bucket, Prefix=key)
        assert uploads.get("Uploads", []) == []
        assert not await st.object_exists(s3.bucket, key)
