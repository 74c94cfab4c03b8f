"""Arguments and limits: key iterables, multipart part counts, temp names, temp file modes."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import anyio
import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import Storage, StorageSettings, _checksums, _sizes, sync
from mpr_storage._checksums import part_size_for
from mpr_storage._files import temp_path_for


@pytest.fixture
def fresh_portal() -> Iterator[None]:
    """The sync shim's loop thread reads this test's environment, and stops after it."""
    sync._portal.stop()
    yield
    sync._portal.stop()


async def in_thread(fn: Callable[..., object], *args: object) -> object:
    return await anyio.to_thread.run_sync(partial(fn, *args))


@pytest.mark.parametrize("keys", ["a/key", b"a/key"])
@pytest.mark.usefixtures("fresh_portal")
async def test_delete_objects_refuses_a_single_key(
    storage: Storage, s3: S3Target, tmp_path: Path, keys: str | bytes
) -> None:
    (tmp_path / "f").write_bytes(b"1")
    one_char = [s3.key(c) for c in "akey"]  # what iterating "a/key" would delete (not "/")
    for key in [*one_char, s3.key("a/key")]:
        await storage.upload_file(tmp_path / "f", s3.bucket, key)
    before = await storage.list_objects(s3.bucket, s3.prefix)
    bad = s3.prefix + keys if isinstance(keys, str) else s3.prefix.encode() + keys
    with pytest.raises(TypeError, match="iterable of keys"):
        await storage.delete_objects(s3.bucket, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable of keys"):
        await mpr_storage.delete_objects(s3.bucket, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable of keys"):
        await in_thread(sync.delete_objects, s3.bucket, bad)
    assert await storage.list_objects(s3.bucket, s3.prefix) == before  # nothing deleted
    await storage.delete_objects(s3.bucket, {s3.key("a/key")})  # any other iterable works
    await in_thread(sync.delete_objects, s3.bucket, iter(one_char[:2]))
    left = [o.key for o in await storage.list_objects(s3.bucket, s3.prefix)]
    assert left == sorted(one_char[2:])


def test_part_size_grows_to_stay_under_the_part_limit() -> None:
    mib, gib = 1024 * 1024, 1024 * 1024 * 1024
    assert part_size_for(100 * mib, 8 * mib) == 8 * mib  # the configured size suffices
    assert part_size_for(10_000 * 8 * mib, 8 * mib) == 8 * mib  # exactly 10,000 parts
    assert part_size_for(10_000 * 8 * mib + 1, 8 * mib) == 9 * mib
    for size in (78 * gib, 1024 * gib, 5 * 1024 * gib):  # up to S3's 5 TiB object limit
        part = part_size_for(size, 8 * mib)
        assert -(-size // part) <= 10_000 and part % mib == 0 and part <= 5 * gib
    assert part_size_for(100 * mib, 64 * mib) == 64 * mib
    assert part_size_for(12 * mib, 5 * mib, max_parts=2) == 6 * mib
    assert part_size_for(1, 1) == 5 * mib  # never under S3's 5 MiB minimum


def test_the_documented_memory_bound_comes_from_the_sizes() -> None:
    """README, "Memory a transfer uses": ``concurrency x 1 MiB`` (bodies up to 1 MiB whole,
    larger ones in 256 KiB blocks with at most 384 KiB read ahead), plus the multipart parts
    in flight, each streamed, ``S3_PART_CONCURRENCY x ~512 KiB`` (5 MiB with the defaults)."""
    kib, mib = 1024, 1024 * 1024
    sizes = (_sizes.SMALL_BODY, _sizes.STREAM_CHUNK, _sizes.READ_AHEAD_HELD)
    assert sizes == (mib, 256 * kib, 384 * kib)
    held = _sizes.HELD_PER_TRANSFER
    assert held == mib and _sizes.SMALL_BODY <= held  # a body read whole
    assert _sizes.STREAM_CHUNK + _sizes.READ_AHEAD_HELD <= held  # a download's block
    assert 2 * _sizes.STREAM_CHUNK <= held  # an upload's read, and the one the socket holds
    s = StorageSettings.from_env({})
    defaults = (s.max_concurrency, s.part_concurrency, s.multipart_chunksize)
    assert defaults == (_sizes.MAX_CONCURRENCY, _sizes.PART_CONCURRENCY, _sizes.MULTIPART_CHUNKSIZE)
    assert _sizes.HELD_PER_PART == 2 * _sizes.STREAM_CHUNK == 512 * kib
    assert _sizes.memory_bound(0) == 5 * mib  # the parts alone
    assert _sizes.memory_bound(64, part_concurrency=0) == 64 * mib  # the data alone
    bound = _sizes.memory_bound(s.max_concurrency, part_concurrency=s.part_concurrency)
    assert bound == _sizes.memory_bound() == 69 * mib


async def test_multipart_upload_grows_its_parts_to_the_part_limit(
    s3: S3Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_checksums, "MAX_PARTS", 2)  # as if S3's limit were 2 parts
    mib = 1024 * 1024
    data = os.urandom(mib) * 12  # 3 parts of the configured 5 MiB; 2 parts of 6 MiB
    (tmp_path / "big").write_bytes(data)
    settings = s3.settings(multipart_threshold=5 * mib, multipart_chunksize=5 * mib)
    async with Storage(settings) as st:
        info = await st.upload_file(tmp_path / "big", s3.bucket, s3.key("big.bin"))
        assert info.etag.endswith("-2"), info.etag  # a multipart ETag names its part count
        await st.download_file(s3.bucket, s3.key("big.bin"), tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data


def test_temp_names_are_cut_by_bytes(tmp_path: Path) -> None:
    for name in ("影" * 85, "é" * 127 + "x", "a" * 255, "ab" + "影" * 84 + "a"):  # 255 bytes each
        assert len(name.encode()) == 255
        fd, tmp = temp_path_for(tmp_path / name)
        os.close(fd)
        assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith("." + name[:20])
        assert len(Path(tmp).name.encode()) <= 255
        Path(tmp).unlink()


async def test_long_cjk_file_names_download(storage: Storage, s3: S3Target, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"frame")
    name = "影" * 85  # 255 bytes: the longest valid file name
    await storage.upload_file(tmp_path / "f", s3.bucket, s3.key("frame.jpg"))
    dest = await storage.download_file(s3.bucket, s3.key("frame.jpg"), tmp_path / "out" / name)
    assert dest.read_bytes() == b"frame"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [name]  # no temp file left


async def test_download_to_temp_is_private(
    storage: Storage, s3: S3Target, tmp_path: Path, private_tempdir: Path
) -> None:
    (tmp_path / "f").write_bytes(b"secret")
    await storage.upload_file(tmp_path / "f", s3.bucket, s3.key("clip.mp4"))
    old = os.umask(0o022)
    try:
        path = await storage.download_to_temp(s3.bucket, s3.key("clip.mp4"))
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"secret"
        assert os.listdir(private_tempdir) == [path.name]  # nothing else
    finally:
        path.unlink()
    with pytest.raises(mpr_storage.ObjectNotFoundError):
        await storage.download_to_temp(s3.bucket, s3.key("missing.mp4"))
    assert os.listdir(private_tempdir) == []
