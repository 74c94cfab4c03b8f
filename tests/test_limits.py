"""Arguments and limits: key iterables, multipart part counts, temp names, temp file modes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import partial
import stat
from pathlib import Path

import anyio
import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import Storage, sync


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
