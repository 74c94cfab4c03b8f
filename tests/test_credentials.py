"""Credentials on both transports: temporary credentials that expire during a call, and
anonymous access to a public bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import S3Target
from mpr_storage import ConfigError, Storage, StorageSettings
from quirks import QuirkProxy, read_generations, write_credential_process
from test_transfer import make_frames, tree

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


async def seed(s3: S3Target, tmp_path: Path, count: int) -> dict[str, bytes]:
    files = make_frames(tmp_path / "src", count)
    async with Storage(s3.settings()) as st:
        assert (await st.upload_frames(s3.prefix.strip("/"), tmp_path / "src", bucket=s3.bucket)).ok
    return files


def no_static_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@PATHS
async def test_a_long_prefetch_outlives_its_temporary_credentials(
    seaweed: S3Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    # SeaweedFS only knows its static keys and rejects session tokens: the proxy checks the
    # token's generation, then signs the request again for the server.
    files = await seed(seaweed, tmp_path, count=24)
    timeline = seaweed.prefix.strip("/")
    config, generations = write_credential_process(tmp_path / "creds", seaweed.server)
    no_static_credentials(monkeypatch)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    # Refreshed after 1 s, refused after 3 s: the slack covers a slow credential process.
    with QuirkProxy(seaweed.server, generations=generations, token_lifetime=3.0) as proxy:
        proxy.stall(10_000, seconds=0.3, method="GET")  # ~4 s for the prefetch at 2 at a time
        settings = StorageSettings.from_env(
            endpoint_url=proxy.url, fast_path=fast_path, max_attempts=3, max_concurrency=2
        )
        async with Storage(settings) as st:
            report = await st.prefetch_frames(timeline, tmp_path / "dst", bucket=seaweed.bucket)
    assert report.ok and tree(tmp_path / "dst") == files
    assert len(read_generations(generations)) > 1  # botocore's chain refreshed them meanwhile
    tokens = {s.headers.get("x-amz-security-token") for s in proxy.requests}
    assert len(tokens) > 1 and None not in tokens


@PATHS
async def test_anonymous_access_sends_unsigned_requests_to_a_public_bucket(
    s3: S3Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    files = await seed(s3, tmp_path, count=4)
    timeline = s3.prefix.strip("/")
    prefix = f"frames/{timeline}/"
    no_static_credentials(monkeypatch)
    with QuirkProxy(s3.server, public=True) as proxy:
        settings = StorageSettings.from_env(
            endpoint_url=proxy.url, anonymous=True, fast_path=fast_path, max_attempts=2
        )
        async with Storage(settings) as st:
            listed = await st.list_objects(s3.bucket, prefix)
            one = await st.download_file(s3.bucket, listed[0].key, tmp_path / "one.jpg")
            report = await st.prefetch_frames(timeline, tmp_path / "dst", bucket=s3.bucket)
    assert sorted(o.key for o in listed) == sorted(prefix + rel for rel in files)
    assert one.read_bytes() == files[listed[0].key.removeprefix(prefix)]
    assert report.ok and tree(tmp_path / "dst") == files
    assert proxy.count() > 0 and proxy.signed() == []


@PATHS
async def test_no_credentials_without_anonymous_says_what_to_set(
    s3: S3Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    no_static_credentials(monkeypatch)
    settings = StorageSettings.from_env(fast_path=fast_path, max_attempts=1)
    async with Storage(settings) as st:
        with pytest.raises(ConfigError) as listing:
            await st.list_objects(s3.bucket, s3.prefix)
        with pytest.raises(ConfigError) as download:
            await st.download_file(s3.bucket, s3.key("x.jpg"), tmp_path / "x.jpg")
    for info, operation in ((listing, "list_objects"), (download, "download_file")):
        message = str(info.value)
        assert "AWS_ACCESS_KEY_ID" in message and "S3_ANONYMOUS" in message
        assert info.value.operation == operation and s3.bucket in message
    assert not (tmp_path / "x.jpg").exists()
