"""Provider quirks (GCS, AWS regions, listing encodings, broken listings) on both transports.

Each test runs on the fast path and on botocore, against moto and SeaweedFS, through a
:class:`quirks.QuirkProxy` that answers the way the emulated provider does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import S3Target
from mpr_storage import AccessDeniedError, Storage, StorageError
from quirks import QuirkProxy
from test_transfer import make_frames, tree

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])


async def seed_frames(s3: S3Target, tmp_path: Path, count: int = 6) -> dict[str, bytes]:
    files = make_frames(tmp_path / "src", count)
    async with Storage(s3.settings()) as st:
        assert (await st.upload_frames(s3.prefix.strip("/"), tmp_path / "src", bucket=s3.bucket)).ok
    return files


# --- Google Cloud Storage ------------------------------------------------------------------


@PATHS
async def test_gcs_listing_namespace_is_understood(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    files = await seed_frames(s3, tmp_path)
    timeline = s3.prefix.strip("/")
    with QuirkProxy(s3.server, gcs=True) as proxy:
        settings = s3.settings(endpoint_url=proxy.url, provider="gcs", fast_path=fast_path)
        async with Storage(settings) as st:
            listed = await st.list_objects(s3.bucket, f"frames/{timeline}/")
            report = await st.prefetch_frames(timeline, tmp_path / "dst", bucket=s3.bucket)
    expected = {
        f"frames/{timeline}/{rel}": hashlib.md5(data).hexdigest() for rel, data in files.items()
    }
    assert {o.key: o.etag for o in listed} == expected
    assert report.ok and len(report.done) == len(files)
    assert tree(tmp_path / "dst") == files


@PATHS
async def test_gcs_upload_many_skip_existing_skips_everything_the_second_time(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    files = make_frames(tmp_path / "src", 5)
    with QuirkProxy(s3.server, gcs=True) as proxy:
        settings = s3.settings(endpoint_url=proxy.url, provider="gcs", fast_path=fast_path)
        async with Storage(settings) as st:
            first = await st.upload_many(tmp_path / "src", s3.bucket, s3.prefix, skip_existing=True)
            proxy.reset()
            second = await st.upload_many(
                tmp_path / "src", s3.bucket, s3.prefix, skip_existing=True
            )
    assert first.ok and len(first.done) == len(files)
    assert second.done == [] and len(second.skipped) == len(files)
    assert proxy.count("PUT") == 0


@PATHS
async def test_gcs_one_refused_delete_is_one_error_and_the_others_are_deleted(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    files = await seed_frames(s3, tmp_path)
    prefix = f"frames/{s3.prefix.strip('/')}/"
    with QuirkProxy(s3.server, gcs=True) as proxy:
        settings = s3.settings(endpoint_url=proxy.url, provider="gcs", fast_path=fast_path)
        async with Storage(settings) as st:
            keys = [o.key for o in await st.list_objects(s3.bucket, prefix)]
            proxy.fail(1, status=403, code="AccessDenied", method="DELETE")
            with pytest.raises(AccessDeniedError) as info:  # one error, not an ExceptionGroup
                await st.delete_objects(s3.bucket, keys)
            left = [o.key for o in await st.list_objects(s3.bucket, prefix)]
    assert len(keys) == len(files) and proxy.count("POST") == 0  # one by one, as GCS needs
    assert len(left) == 1 and left[0] in str(info.value)  # the refused key, named
    assert f"1 of {len(keys)} keys were not deleted" in str(info.value)


# --- AWS regions ---------------------------------------------------------------------------


@PATHS
async def test_bucket_in_another_region_is_found_and_remembered(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    files = await seed_frames(s3, tmp_path, count=3)
    timeline = s3.prefix.strip("/")
    (tmp_path / "up.bin").write_bytes(b"uploaded")
    with QuirkProxy(s3.server, bucket_region="eu-west-3") as proxy:
        settings = s3.settings(endpoint_url=proxy.url, region=None, fast_path=fast_path)
        async with Storage(settings) as st:
            listed = await st.list_objects(s3.bucket, f"frames/{timeline}/")
            one = await st.download_file(s3.bucket, listed[0].key, tmp_path / "one.jpg")
            await st.upload_file(tmp_path / "up.bin", s3.bucket, s3.key("up.bin"))
            assert await st.object_exists(s3.bucket, s3.key("up.bin"))
            report = await st.prefetch_frames(timeline, tmp_path / "dst", bucket=s3.bucket)
    assert len(listed) == len(files)
    assert one.read_bytes() == files[listed[0].key.rpartition(f"{timeline}/")[2]]
    assert report.ok and tree(tmp_path / "dst") == files
    assert proxy.refused_region == 1  # only the first request; the region is remembered


@PATHS
@pytest.mark.parametrize("head_status", [400, 301])
async def test_region_is_found_when_the_first_call_is_a_head(
    s3: S3Target, tmp_path: Path, fast_path: bool, head_status: int
) -> None:
    async with Storage(s3.settings()) as st:
        (tmp_path / "x.bin").write_bytes(b"x")
        await st.upload_file(tmp_path / "x.bin", s3.bucket, s3.key("x.bin"))
    with QuirkProxy(s3.server, bucket_region="eu-west-3", head_status=head_status) as proxy:
        settings = s3.settings(endpoint_url=proxy.url, region=None, fast_path=fast_path)
        async with Storage(settings) as st:
            assert await st.object_exists(s3.bucket, s3.key("x.bin"))
            assert not await st.object_exists(s3.bucket, s3.key("missing.bin"))
            out = await st.download_file(s3.bucket, s3.key("x.bin"), tmp_path / "x.out")
    assert out.read_bytes() == b"x"
    assert proxy.refused_region == 1


@PATHS
async def test_region_mismatch_is_not_reported_as_a_credentials_problem(
    s3: S3Target, fast_path: bool
) -> None:
    # A gateway that refuses every region: the client can't recover, and must say why.
    with QuirkProxy(s3.server) as proxy:
        proxy.fail(
            100,
            status=400,
            code="AuthorizationHeaderMalformed",
            target="any",
            method=None,
            headers={"x-amz-bucket-region": "eu-west-3"},
        )
        settings = s3.settings(endpoint_url=proxy.url, region=None, fast_path=fast_path)
        async with Storage(settings) as st:
            with pytest.raises(StorageError) as info:
                await st.list_objects(s3.bucket, s3.prefix)
    message = str(info.value)
    assert "region" in message.lower() and "check the credentials" not in message
    assert info.value.operation == "list_objects" and s3.bucket in message


# --- listing keys and bodies ---------------------------------------------------------------

AWKWARD_KEYS = ["a+b%20c.jpg", "plain.jpg", "sp ace.jpg", "100%.jpg", "amp&lt.jpg", "é+ü.jpg"]


@PATHS
@pytest.mark.parametrize("echo", [True, False], ids=["echoed", "not-echoed"])
async def test_listed_keys_come_back_exactly_as_stored(
    s3: S3Target, tmp_path: Path, fast_path: bool, echo: bool
) -> None:
    (tmp_path / "one.bin").write_bytes(b"1")
    async with Storage(s3.settings()) as st:
        for name in AWKWARD_KEYS:
            await st.upload_file(tmp_path / "one.bin", s3.bucket, s3.key(name))
    with QuirkProxy(s3.server, echo_encoding=echo) as proxy:
        async with Storage(s3.settings(endpoint_url=proxy.url, fast_path=fast_path)) as st:
            listed = await st.list_objects(s3.bucket, s3.prefix)
    assert sorted(o.key for o in listed) == sorted(s3.key(name) for name in AWKWARD_KEYS)


NOT_XML = {
    "text": b"Service is up. Have a nice day.\n",
    "html": b"<html><body><h1>Gateway</h1><p>Welcome<br></body></html>",
    "truncated": b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.'
    b'amazonaws.com/doc/2006-03-01/"><Name>mpr-test</Name><Contents><Key>frame_0',
}


@PATHS
@pytest.mark.parametrize("body", list(NOT_XML.values()), ids=list(NOT_XML))
async def test_a_listing_that_is_not_xml_raises_a_typed_error(
    s3: S3Target, tmp_path: Path, fast_path: bool, body: bytes
) -> None:
    await seed_frames(s3, tmp_path, count=1)
    with QuirkProxy(s3.server, list_body=body) as proxy:
        settings = s3.settings(endpoint_url=proxy.url, fast_path=fast_path, max_attempts=2)
        async with Storage(settings) as st:
            with pytest.raises(StorageError) as info:
                await st.list_objects(s3.bucket, s3.prefix)
    assert info.value.operation == "list_objects"
    assert f"s3://{s3.bucket}" in str(info.value)
