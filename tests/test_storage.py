"""Client lifecycle: one shared client per loop, closed with the loop, explicit Storage."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import Storage, StorageSettings
from mpr_storage._storage import default_storage

# Above the wire: the transports are compared by the tests of the layers below.
pytestmark = pytest.mark.one_transport


async def test_one_shared_client_per_loop(s3: S3Target) -> None:
    first = await mpr_storage.get_s3_client()
    assert await mpr_storage.get_s3_client() is first
    await first.list_objects_v2(Bucket=s3.bucket, MaxKeys=1)


def test_default_storage_is_closed_when_its_loop_ends(s3: S3Target) -> None:
    async def use() -> Storage:
        await mpr_storage.list_objects(s3.bucket, s3.prefix)
        return await default_storage()

    first = asyncio.run(use())
    second = asyncio.run(use())
    assert first is not second
    assert first.closed and second.closed


def test_many_asyncio_runs_in_one_process_print_nothing(s3: S3Target) -> None:
    script = textwrap.dedent(
        """
        import asyncio, gc, mpr_storage
        async def main(i):
            await mpr_storage.list_objects(BUCKET)
            assert not await mpr_storage.object_exists(BUCKET, f"nope-{i}")
        for i in range(3):
            asyncio.run(main(i))
        gc.collect()
        print("ok")
        """
    ).replace("BUCKET", repr(s3.bucket))
    result = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout == "ok\n"
    assert result.stderr == ""


async def test_explicit_storage_lifecycle(s3: S3Target) -> None:
    st = Storage(s3.settings())
    async with st:
        assert await st.list_objects(s3.bucket, s3.prefix) == []
        assert await st.get_s3_client() is await st.client()
    assert st.closed
    with pytest.raises(RuntimeError, match="closed"):
        await st.list_objects(s3.bucket)
    await st.aclose()  # idempotent


def test_storage_belongs_to_one_loop(s3: S3Target) -> None:
    st = Storage(s3.settings())

    async def use() -> None:
        await st.list_objects(s3.bucket, s3.prefix)

    async def close() -> None:
        await st.aclose()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(use())
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(use())
        loop.run_until_complete(close())
    finally:
        loop.close()


async def test_settings_read_from_environment_lazily(
    s3: S3Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3_BUCKET_OUT", "lazy-out")
    st = Storage()
    assert st.settings.bucket_out == "lazy-out"
    assert st.settings.endpoint_url == s3.server.endpoint_url
    await st.aclose()


def test_bucket_constants() -> None:
    assert mpr_storage.BUCKET_IN == "mpr-media-in"
    assert mpr_storage.BUCKET_OUT == "mpr-media-out"
    assert StorageSettings().bucket_out == mpr_storage.BUCKET_OUT
