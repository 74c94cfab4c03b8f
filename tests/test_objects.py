"""Single-object operations against real servers (each test runs on moto and on SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import anyio
import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import (
    AccessDeniedError,
    BucketNotFoundError,
    InvalidKeyError,
    ObjectNotFoundError,
    Storage,
    StorageConnectionError,
)

MiB = 1024 * 1024
SPECIAL_KEYS = ["a b.jpg", "a+b.jpg", "c:d.jpg", "ünï cödé ✓.png", "a..b.bin", "deep/er/ key+:.png"]


def _write(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("size", [0, 1, 3 * MiB + 17])
async def test_round_trip_byte_exact(
    storage: Storage, s3: S3Target, tmp_path: Path, size: int
) -> None:
    data = _write(tmp_path / "src.bin", size)
    key = s3.key(f"obj-{size}.bin")
    info = await storage.upload_file(tmp_path / "src.bin", s3.bucket, key)
    assert (info.key, info.size) == (key, size)
    assert info.etag == hashlib.md5(data).hexdigest()
    out = await storage.download_file(s3.bucket, key, tmp_path / "new" / "dir" / "out.bin")
    assert out.read_bytes() == data
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.bin"]  # no temp file left


@pytest.mark.parametrize("name", SPECIAL_KEYS)
async def test_special_keys_round_trip(
    storage: Storage, s3: S3Target, tmp_path: Path, name: str
) -> None:
    data = _write(tmp_path / "src", 1000)
    key = s3.key(name)
    await storage.upload_file(tmp_path / "src", s3.bucket, key)
    assert [o.key for o in await storage.list_objects(s3.bucket, s3.prefix)] == [key]
    assert await storage.object_exists(s3.bucket, key)
    assert (await storage.download_file(s3.bucket, key, tmp_path / "out")).read_bytes() == data


@pytest.mark.slow  # a thousand objects and more, on each server and transport
async def test_listing_pages_suffixes_and_batched_delete(storage: Storage, s3: S3Target) -> None:
    client = await storage.client()
    keys = [s3.key(f"f/{i:05d}.{'jpg' if i % 3 else 'PNG'}") for i in range(1100)]
    limiter = anyio.CapacityLimiter(32)

    async def put(key: str) -> None:
        async with limiter:
            await client.put_object(Bucket=s3.bucket, Key=key, Body=b"x" * (len(key) % 7))

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(put, key)
    listed = await storage.list_objects(s3.bucket, s3.prefix)
    assert [o.key for o in listed] == sorted(keys)  # all pages, key order
    assert all(o.size == len(o.key) % 7 and o.last_modified is not None for o in listed)
    pngs = await storage.list_objects(s3.bucket, s3.prefix, suffixes=".png")  # case-insensitive
    assert [o.key for o in pngs] == sorted(k for k in keys if k.endswith(".PNG"))
    streamed = [o.key async for o in storage.iter_objects(s3.bucket, s3.prefix, suffixes=[".jpg"])]
    assert len(streamed) == len(keys) - len(pngs)
    await storage.delete_objects(s3.bucket, keys)  # two DeleteObjects batches
    assert await storage.list_objects(s3.bucket, s3.prefix) == []


async def test_delete_one_by_one_on_providers_without_batch_delete(
    s3: S3Target, tmp_path: Path
) -> None:
    (tmp_path / "f").write_bytes(b"1")
    async with Storage(s3.settings(provider="gcs", region="us-east-1")) as st:
        assert not st.settings.profile.batch_delete
        keys = [s3.key(f"{i}.txt") for i in range(5)]
        for key in keys:
            await st.upload_file(tmp_path / "f", s3.bucket, key)
        await st.delete_objects(s3.bucket, [*keys, s3.key("never-existed")])
        assert await st.list_objects(s3.bucket, s3.prefix) == []


async def test_download_to_temp_suffix_and_ownership(
    storage: Storage, s3: S3Target, tmp_path: Path
) -> None:
    data = _write(tmp_path / "v", 2048)
    await storage.upload_file(tmp_path / "v", s3.bucket, s3.key("chunks/match-01.mp4"))
    path = await storage.download_to_temp(s3.bucket, s3.key("chunks/match-01.mp4"))
    try:
        assert path.suffix == ".mp4" and path.read_bytes() == data
    finally:
        path.unlink()
    path = await storage.download_to_temp(s3.bucket, s3.key("chunks/match-01.mp4"), suffix=".video")
    assert path.name.endswith(".video")
    path.unlink()


async def test_missing_key_raises_and_leaves_nothing(
    storage: Storage, s3: S3Target, tmp_path: Path
) -> None:
    dest = tmp_path / "sub" / "out.jpg"
    with pytest.raises(ObjectNotFoundError) as info:
        await storage.download_file(s3.bucket, s3.key("missing.jpg"), dest)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.bucket == s3.bucket and info.value.key == s3.key("missing.jpg")
    assert s3.key("missing.jpg") in str(info.value) and "download_file" in str(info.value)
    assert list(tmp_path.rglob("*")) == []
    assert not await storage.object_exists(s3.bucket, s3.key("missing.jpg"))


async def test_download_to_temp_leaves_no_temp_file_on_failure(
    storage: Storage, s3: S3Target, private_tempdir: Path
) -> None:
    with pytest.raises(ObjectNotFoundError):
        await storage.download_to_temp(s3.bucket, s3.key("missing.mp4"))
    assert os.listdir(private_tempdir) == []


async def test_missing_bucket(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(BucketNotFoundError, match="no-such-bucket-xyz"):
        await storage.list_objects("no-such-bucket-xyz")
    with pytest.raises((BucketNotFoundError, ObjectNotFoundError)):
        await storage.download_file("no-such-bucket-xyz", "k.jpg", tmp_path / "k.jpg")
    assert not (tmp_path / "k.jpg").exists()


async def test_invalid_keys_are_refused_before_any_request(
    storage: Storage, s3: S3Target, tmp_path: Path
) -> None:
    (tmp_path / "f").write_bytes(b"1")
    with pytest.raises(InvalidKeyError):
        await storage.upload_file(tmp_path / "f", s3.bucket, "")
    with pytest.raises(InvalidKeyError):
        await storage.download_file(s3.bucket, "k" * 1025, tmp_path / "o")
    with pytest.raises(FileNotFoundError):
        await storage.upload_file(tmp_path / "does-not-exist", s3.bucket, s3.key("x"))


async def test_wrong_secret_is_access_denied(seaweed: S3Target, tmp_path: Path) -> None:
    # SeaweedFS verifies signatures as MinIO and AWS do (moto does not).
    secret = "definitely-not-the-secret-123"
    settings = seaweed.settings(secret_access_key=secret, max_attempts=1)
    (tmp_path / "f").write_bytes(b"1")
    async with Storage(settings) as st:
        with pytest.raises(AccessDeniedError) as info:
            await st.upload_file(tmp_path / "f", seaweed.bucket, seaweed.key("x"))
        assert isinstance(info.value, PermissionError)
        assert secret not in str(info.value) and "upload_file" in str(info.value)
        with pytest.raises(AccessDeniedError):
            await st.list_objects(seaweed.bucket)
        with pytest.raises(AccessDeniedError):
            await st.object_exists(seaweed.bucket, seaweed.key("x"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_closed_port_fails_fast_with_connection_error(tmp_path: Path) -> None:
    settings = mpr_storage.StorageSettings(
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        access_key_id="a",
        secret_access_key="b",
        max_attempts=2,
        connect_timeout=1,
    )
    started = time.monotonic()
    async with Storage(settings) as st:
        with pytest.raises(StorageConnectionError) as info:
            await st.download_file("bucket", "key.jpg", tmp_path / "k.jpg")
    assert time.monotonic() - started < 15
    assert isinstance(info.value, ConnectionError) and "s3://bucket/key.jpg" in str(info.value)
    assert list(tmp_path.iterdir()) == []


async def test_module_level_functions_use_the_environment(s3: S3Target, tmp_path: Path) -> None:
    data = _write(tmp_path / "f.jpg", 500)
    await mpr_storage.upload_file(tmp_path / "f.jpg", s3.bucket, s3.key("f.jpg"))
    listed = await mpr_storage.list_objects(s3.bucket, s3.prefix)
    assert [(o.key, o.size) for o in listed] == [(s3.key("f.jpg"), 500)]
    assert [o.key async for o in mpr_storage.iter_objects(s3.bucket, s3.prefix)] == [
        s3.key("f.jpg")
    ]
    assert await mpr_storage.object_exists(s3.bucket, s3.key("f.jpg"))
    out = await mpr_storage.download_file(s3.bucket, s3.key("f.jpg"), tmp_path / "o.jpg")
    assert out.read_bytes() == data
    tmp = await mpr_storage.download_to_temp(s3.bucket, s3.key("f.jpg"))
    assert tmp.read_bytes() == data
    tmp.unlink()
    await mpr_storage.delete_objects(s3.bucket, [s3.key("f.jpg")])
    assert not await mpr_storage.object_exists(s3.bucket, s3.key("f.jpg"))
