"""Bulk transfers against real servers: byte-exact, skip/resume, key safety, failures, cancel."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import InvalidKeyError, ObjectInfo, ObjectNotFoundError, Storage, TransferError
from mpr_storage._manifest import MANIFEST_NAME


def make_frames(root: Path, count: int, *, size: int = 2000) -> dict[str, bytes]:
    """``count`` frames with distinct content, plus a nested one with an awkward name."""
    files: dict[str, bytes] = {}
    for i in range(count):
        files[f"frame_{i:06d}.jpg"] = os.urandom(size + i % 97)
    files["overlays/ünï a+b:c d.png"] = b"overlay"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


@pytest.mark.slow  # a thousand objects and more, on each server and transport
async def test_upload_many_and_download_many_round_trip(
    storage: Storage, s3: S3Target, tmp_path: Path
) -> None:
    files = make_frames(tmp_path / "src", 1000)
    progress: list[tuple[int, int, int]] = []
    up = await storage.upload_many(
        tmp_path / "src", s3.bucket, s3.prefix, on_progress=lambda *a: progress.append(a)
    )
    assert up.ok and sorted(up.done) == sorted(s3.prefix + k for k in files)
    assert up.bytes == sum(map(len, files.values()))
    assert progress[-1] == (len(files), len(files), up.bytes)  # final call carries the totals
    listed = await storage.list_objects(s3.bucket, s3.prefix)
    assert {o.key: o.etag for o in listed} == {
        s3.prefix + k: hashlib.md5(v).hexdigest() for k, v in files.items()
    }

    down = await storage.download_many(s3.bucket, listed, tmp_path / "dst", prefix=s3.prefix)
    assert down.ok and len(down.done) == len(files) and down.bytes == up.bytes
    assert tree(tmp_path / "dst") == files
    assert leftovers(tmp_path / "dst") == []


async def test_plain_key_strings_work_without_a_listing(
    storage: Storage, s3: S3Target, tmp_path: Path
) -> None:
    files = make_frames(tmp_path / "src", 5)
    await storage.upload_many(tmp_path / "src", s3.bucket, s3.prefix)
    keys = [s3.prefix + k for k in files]
    report = await storage.download_many(s3.bucket, keys, tmp_path / "dst", prefix=s3.prefix)
    assert report.ok and tree(tmp_path / "dst") == files
    again = await storage.download_many(s3.bucket, iter(keys), tmp_path / "dst", prefix=s3.prefix)
    assert sorted(again.skipped) == sorted(keys) and again.done == []  # trusted by the manifest


async def test_second_prefetch_skips_everything_and_refetches_damaged_files(
    s3: S3Target, tmp_path: Path
) -> None:
    files = make_frames(tmp_path / "src", 40)
    first = await mpr_storage.upload_frames("tl-skip", tmp_path / "src", bucket=s3.bucket)
    assert first.ok
    dst = tmp_path / "replay"
    one = await mpr_storage.prefetch_frames("tl-skip", dst, bucket=s3.bucket)
    assert len(one.done) == len(files) and tree(dst) == files
    two = await mpr_storage.prefetch_frames("tl-skip", dst, bucket=s3.bucket)
    assert two.done == [] and len(two.skipped) == len(files) and two.bytes == 0

    damaged = dst / "frame_000003.jpg"
    damaged.write_bytes(b"X" * len(files["frame_000003.jpg"]))  # same size, other bytes
    (dst / "frame_000004.jpg").write_bytes(b"short")  # truncated
    (dst / "frame_000005.jpg").unlink()  # gone
    three = await mpr_storage.prefetch_frames("tl-skip", dst, bucket=s3.bucket)
    prefix = mpr_storage.frame_cache_prefix("tl-skip")
    assert sorted(three.done) == [prefix + f"frame_00000{i}.jpg" for i in (3, 4, 5)]
    assert tree(dst) == files


async def test_skip_existing_false_downloads_again(
    storage: Storage, s3: S3Target, tmp_path: Path
) -> None:
    make_frames(tmp_path / "src", 3)
    await storage.upload_many(tmp_path / "src", s3.bucket, s3.prefix)
    listed = await storage.list_objects(s3.bucket, s3.prefix)
    await storage.download_many(s3.bucket, listed, tmp_path / "dst", prefix=s3.prefix)
    again = await storage.download_many(
        s3.bucket, listed, tmp_path / "dst", prefix=s3.prefix, skip_existing=False
    )
    assert len(again.done) == len(listed)


async def test_upload_skip_existing(storage: Storage, s3: S3Target, tmp_path: Path) -> None:
    files = make_frames(tmp_path / "src", 10)
    await storage.upload_many(tmp_path / "src", s3.bucket, s3.prefix)
    (tmp_path / "src" / "frame_000001.jpg").write_bytes(b"changed content")
    report = await storage.upload_many(tmp_path / "src", s3.bucket, s3.prefix, skip_existing=True)
    assert report.done == [s3.prefix + "frame_000001.jpg"]
    assert len(report.skipped) == len(files) - 1


async def test_missing_key_among_good_ones(storage: Storage, s3: S3Target, tmp_path: Path) -> None:
    make_frames(tmp_path / "src", 5)
    await storage.upload_many(tmp_path / "src", s3.bucket, s3.prefix)
    keys = [o.key for o in await storage.list_objects(s3.bucket, s3.prefix)]
    missing = s3.prefix + "frame_999999.jpg"
    with pytest.raises(TransferError) as info:
        await storage.download_many(
            s3.bucket, [*keys[:3], missing, *keys[3:]], tmp_path / "dst", prefix=s3.prefix
        )
    report = info.value.report
    assert list(report.failed) == [missing]
    assert isinstance(report.failed[missing], ObjectNotFoundError)
    assert sorted(report.done) == sorted(keys)
    assert missing in str(info.value)
    quiet = await storage.download_many(
        s3.bucket, [missing], tmp_path / "dst", prefix=s3.prefix, raise_on_error=False
    )
    assert not quiet.ok and list(quiet.failed) == [missing]


@pytest.mark.parametrize(
    "bad", ["../escape.jpg", "a/../../escape.jpg", "/abs.jpg", "a//b.jpg", "./x.jpg"]
)
async def test_an_unsafe_key_in_an_explicit_list_raises_before_anything_is_written(
    storage: Storage, s3: S3Target, tmp_path: Path, bad: str
) -> None:
    client = await storage.client()
    good = s3.prefix + "good.jpg"
    await client.put_object(Bucket=s3.bucket, Key=good, Body=b"good")
    dest = tmp_path / "inner" / "dest"
    with pytest.raises(InvalidKeyError) as info:
        await storage.download_many(
            s3.bucket, [good, s3.prefix + bad], dest, prefix=s3.prefix, raise_on_error=False
        )
    assert info.value.key == s3.prefix + bad
    assert list(tmp_path.iterdir()) == []  # not even the destination directory


async def test_an_unsafe_key_from_a_listing_stream_is_a_per_key_failure(
    storage: Storage, s3: S3Target, tmp_path: Path
) -> None:
    client = await storage.client()
    good = s3.prefix + "good.jpg"
    await client.put_object(Bucket=s3.bucket, Key=good, Body=b"good")
    bad = s3.prefix + "../escape.jpg"

    async def listing() -> AsyncIterator[str]:
        for key in (bad, good):
            yield key

    dest = tmp_path / "inner" / "dest"
    report = await storage.download_many(
        s3.bucket, listing(), dest, prefix=s3.prefix, raise_on_error=False
    )
    assert report.done == [good]
    assert isinstance(report.failed[bad], InvalidKeyError)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == [f"inner/dest/{MANIFEST_NAME}", "inner/dest/good.jpg"]


async def test_cancellation_leaves_only_complete_files(s3: S3Target, tmp_path: Path) -> None:
    files = make_frames(tmp_path / "src", 300, size=20_000)
    async with Storage(s3.settings()) as st:
        await st.upload_many(tmp_path / "src", s3.bucket, s3.prefix)
        listed = await st.list_objects(s3.bucket, s3.prefix)
        one_done = anyio.Event()
        with anyio.CancelScope() as scope:

            def note_done(done: int, total: int | None, nbytes: int) -> None:
                if done:
                    one_done.set()

            async def keys() -> AsyncIterator[ObjectInfo]:
                # Half the keys, then a cancel once an object is done: never too late, as a
                # cancel from the progress callback alone is when the whole call takes less
                # than its pace (0.1 s); the callback keeps coming while the keys wait.
                for i, info in enumerate(listed):
                    if i == len(listed) // 2:
                        await one_done.wait()
                        scope.cancel()
                    yield info

            await st.download_many(
                s3.bucket,
                keys(),
                tmp_path / "dst",
                prefix=s3.prefix,
                concurrency=8,
                on_progress=note_done,
            )
        assert scope.cancelled_caught
        got = tree(tmp_path / "dst")
        assert 0 < len(got) < len(files)
        assert all(files[rel] == data for rel, data in got.items())  # only complete files
        assert leftovers(tmp_path / "dst") == []
        # The storage still works, and a new prefetch completes the rest.
        rest = await st.download_many(s3.bucket, listed, tmp_path / "dst", prefix=s3.prefix)
        assert len(rest.skipped) == len(got) and tree(tmp_path / "dst") == files


async def test_frame_cache_helpers(s3: S3Target, tmp_path: Path) -> None:
    assert mpr_storage.frame_cache_prefix("tl-42") == "frames/tl-42/"
    assert mpr_storage.frame_cache_prefix(42) == "frames/42/"
    for bad in ("", "a/b", "..", "."):
        with pytest.raises(InvalidKeyError):
            mpr_storage.frame_cache_prefix(bad)
    assert not await mpr_storage.frame_cache_exists("tl-none", bucket=s3.bucket)
    with pytest.raises(ObjectNotFoundError, match="tl-none"):
        await mpr_storage.prefetch_frames("tl-none", tmp_path / "x", bucket=s3.bucket)
    make_frames(tmp_path / "src", 2)
    await mpr_storage.upload_frames("tl-some", tmp_path / "src", bucket=s3.bucket)
    assert await mpr_storage.frame_cache_exists("tl-some", bucket=s3.bucket)


async def test_frame_caches_default_to_bucket_out(s3: S3Target, tmp_path: Path) -> None:
    make_frames(tmp_path / "src", 2)
    timeline = f"default-{s3.prefix.strip('/')}"
    report = await mpr_storage.upload_frames(timeline, tmp_path / "src")
    assert report.ok
    keys = [
        o.key for o in await mpr_storage.list_objects(mpr_storage.BUCKET_OUT, f"frames/{timeline}/")
    ]
    assert len(keys) == 3
    assert (await mpr_storage.prefetch_frames(timeline, tmp_path / "dst")).ok


async def test_botocore_path_keeps_the_same_guarantees(s3: S3Target, tmp_path: Path) -> None:
    files = make_frames(tmp_path / "src", 20)
    async with Storage(s3.settings(fast_path=False)) as st:
        up = await st.upload_many(tmp_path / "src", s3.bucket, s3.prefix)
        assert up.ok
        listed = await st.list_objects(s3.bucket, s3.prefix)
        with pytest.raises(InvalidKeyError):
            await st.download_many(s3.bucket, [*listed, s3.prefix + "../x.jpg"], tmp_path / "dst")
        assert not (tmp_path / "dst").exists()
        missing = s3.prefix + "nope.jpg"
        report = await st.download_many(
            s3.bucket, [*listed, missing], tmp_path / "dst", prefix=s3.prefix, raise_on_error=False
        )
        assert tree(tmp_path / "dst") == files
        assert list(report.failed) == [missing]
        assert isinstance(report.failed[missing], ObjectNotFoundError)
        again = await st.download_many(s3.bucket, listed, tmp_path / "dst", prefix=s3.prefix)
        assert again.done == [] and len(again.skipped) == len(files)


async def test_bad_arguments(storage: Storage, s3: S3Target, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        await storage.download_many(s3.bucket, [], tmp_path, concurrency=0)
    with pytest.raises(NotADirectoryError):
        await storage.upload_many(tmp_path / "missing", s3.bucket, s3.prefix)


async def test_a_failing_progress_callback_surfaces_its_own_error(
    storage: Storage, s3: S3Target, tmp_path: Path
) -> None:
    make_frames(tmp_path / "src", 3)

    def broken(done: int, total: int, nbytes: int) -> None:
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        await storage.upload_many(tmp_path / "src", s3.bucket, s3.prefix, on_progress=broken)


@pytest.mark.slow  # a thousand objects and more, on each server and transport
async def test_uploads_start_before_the_source_tree_is_fully_walked(
    storage: Storage, s3: S3Target, tmp_path: Path
) -> None:
    files = make_frames(tmp_path / "src", 1000, size=100)
    totals: list[int] = []
    report = await storage.upload_many(
        tmp_path / "src", s3.bucket, s3.prefix, on_progress=lambda d, t, b: totals.append(t)
    )
    assert report.ok and len(report.done) == len(files)
    assert totals[0] != len(files)  # the first upload finished before the walk did
    assert totals[-1] == len(files)
