"""What the library offers the CLI (and everyone): list_buckets, stat_object, byte progress
of single-object transfers, and a bulk total that is unknown until the listing ends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import ObjectInfo, ObjectNotFoundError, Storage, sync

# Above the wire: the transports are compared by the tests of the layers below.
pytestmark = pytest.mark.one_transport

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def fresh_portal() -> Iterator[None]:
    """The blocking twins' loop thread starts anew and reads this test's environment."""
    sync._portal.stop()
    yield
    sync._portal.stop()


async def test_list_buckets(s3: S3Target) -> None:
    names = await mpr_storage.list_buckets()
    assert {s3.bucket, "mpr-media-in", "mpr-media-out"} <= set(names)
    async with Storage(s3.settings()) as s:
        assert await s.list_buckets() == names


def test_list_buckets_blocking(s3: S3Target) -> None:
    assert s3.bucket in sync.list_buckets()


async def test_stat_object(s3: S3Target) -> None:
    key = s3.key("clip.mp4")
    client = await mpr_storage.get_s3_client()
    await client.put_object(
        Bucket=s3.bucket,
        Key=key,
        Body=b"0123456789",
        ContentType="video/mp4",
        Metadata={"timeline": "tl-1"},
    )
    info = await mpr_storage.stat_object(s3.bucket, key)
    assert (info.key, info.size, info.content_type) == (key, 10, "video/mp4")
    assert info.metadata == {"timeline": "tl-1"}
    assert info.last_modified is not None and len(info.etag) == 32
    # Listings don't know the metadata: they still compare (and hash) equal.
    [listed] = await mpr_storage.list_objects(s3.bucket, s3.prefix)
    assert listed.metadata is None
    assert {listed: 1}.get(ObjectInfo(key, 10, info.etag, listed.last_modified)) == 1
    with pytest.raises(ObjectNotFoundError) as err:
        await mpr_storage.stat_object(s3.bucket, s3.key("missing"))
    assert f"s3://{s3.bucket}/{s3.key('missing')}" in str(err.value)
    assert "stat_object" in str(err.value)


def test_stat_object_blocking(s3: S3Target, tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    sync.upload_file(tmp_path / "a.json", s3.bucket, s3.key("a.json"))
    info = sync.stat_object(s3.bucket, s3.key("a.json"))
    assert (info.size, info.content_type) == (2, "application/json")


async def test_byte_progress_of_upload_and_download(s3: S3Target, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = os.urandom(11 * MiB)
    src.write_bytes(data)
    settings = s3.settings(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    calls: list[tuple[int, int | None]] = []

    async def on_progress(done: int, total: int | None) -> None:  # a coroutine function works
        calls.append((done, total))

    async with Storage(settings) as s:
        await s.upload_file(src, s3.bucket, s3.key("big.bin"), on_progress=on_progress)
        ups = calls[:]
        calls.clear()
        await s.download_file(
            s3.bucket, s3.key("big.bin"), tmp_path / "back.bin", on_progress=on_progress
        )
    assert (tmp_path / "back.bin").read_bytes() == data
    for seen in (ups, calls):
        assert seen[-1] == (len(data), len(data))  # once at the end, with the total
        assert len([done for done, _ in seen if 0 < done < len(data)]) >= 2  # and on the way
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)
        assert {total for _, total in seen} == {len(data)}


def test_byte_progress_blocking(s3: S3Target, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 1000)
    calls: list[tuple[int, int | None]] = []
    sync.upload_file(tmp_path / "f", s3.bucket, s3.key("f"), on_progress=lambda *a: calls.append(a))
    assert calls == [(1000, 1000)]  # one PUT: the end, once
    calls.clear()
    sync.download_file(
        s3.bucket, s3.key("f"), tmp_path / "g", on_progress=lambda *a: calls.append(a)
    )
    assert calls[-1] == (1000, 1000)


async def test_bulk_total_is_none_until_the_listing_ends(s3: S3Target, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(30):
        (frames / f"f{i:03d}.jpg").write_bytes(os.urandom(100))
    timeline = s3.prefix.rstrip("/")
    await mpr_storage.upload_frames(timeline, frames, bucket=s3.bucket)
    calls: list[tuple[int, int | None, int]] = []
    report = await mpr_storage.prefetch_frames(
        timeline,
        tmp_path / "replay",
        bucket=s3.bucket,
        concurrency=2,  # the listing can't end before most frames are fetched
        on_progress=lambda *a: calls.append(a),
    )
    assert len(report.done) == 30
    totals = [total for _, total, _ in calls]
    assert totals[0] is None  # still listing
    known = totals.index(30)
    assert set(totals[:known]) == {None} and set(totals[known:]) == {30}  # never changes
    assert calls[-1] == (30, 30, 3000)
    # A list of keys is counted up front.
    calls.clear()
    keys = [o.key for o in await mpr_storage.list_objects(s3.bucket, f"frames/{timeline}/")]
    await mpr_storage.download_many(
        s3.bucket, keys, tmp_path / "again", on_progress=lambda *a: calls.append(a)
    )
    assert {total for _, total, _ in calls} == {30}
