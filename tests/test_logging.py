"""Logging under the ``mpr_storage`` logger: retries (INFO), throttling cuts and region
redirects (INFO), give-ups (WARNING), each fast-path request (DEBUG); never a secret, and
nothing at all when the application configured no logging."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import mpr_storage._retry
from conftest import S3Target
from mpr_storage import Storage, TransferError
from nettools import closed_port
from quirks import QuirkProxy
from s3proxy import FaultProxy
from test_transfer import make_frames

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])


@pytest.fixture
def front(seaweed: S3Target) -> Iterator[FaultProxy]:
    with FaultProxy(seaweed.server.endpoint_url) as p:
        yield p


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without waiting (the waits themselves are tested in test_retries.py)."""
    monkeypatch.setattr(mpr_storage._retry, "backoff_delay", lambda attempt, base: 0.001)


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.name.startswith("mpr_storage")
    ]


def _assert_no_secret(caplog: pytest.LogCaptureFixture, secret: str) -> None:
    assert secret
    for record in caplog.records:
        text = record.getMessage()
        assert secret not in text and "Signature" not in text and "X-Amz-" not in text


async def _seed(s3: S3Target, tmp_path: Path, count: int = 1) -> dict[str, bytes]:
    files = make_frames(tmp_path / "src", count, size=2000)
    async with Storage(s3.settings()) as st:
        assert (await st.upload_frames(s3.prefix.strip("/"), tmp_path / "src", bucket=s3.bucket)).ok
    return files


@PATHS
async def test_each_retry_is_logged_at_info(
    seaweed: S3Target,
    front: FaultProxy,
    tmp_path: Path,
    fast_path: bool,
    no_backoff: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "up.bin").write_bytes(b"payload")
    settings = seaweed.settings(endpoint_url=front.url, fast_path=fast_path)
    caplog.set_level(logging.INFO, logger="mpr_storage")
    front.fail(2, status=503, code="SlowDown", method="PUT")
    async with Storage(settings) as st:
        await st.upload_file(tmp_path / "up.bin", seaweed.bucket, seaweed.key("up.bin"))
    key = seaweed.key("up.bin")
    assert _lines(caplog, logging.INFO) == [
        f"upload_file s3://{seaweed.bucket}/{key}: SlowDown (HTTP 503) at attempt {n} of 5: "
        "retrying in 0.00 s"
        for n in (1, 2)
    ]
    _assert_no_secret(caplog, settings.secret_access_key or "")


async def test_each_request_is_logged_at_debug_on_the_fast_path(
    seaweed: S3Target,
    front: FaultProxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = await _seed(seaweed, tmp_path, count=2)
    prefix = f"frames/{seaweed.prefix.strip('/')}/"
    settings = seaweed.settings(endpoint_url=front.url, fast_path=True)
    caplog.set_level(logging.DEBUG, logger="mpr_storage")
    async with Storage(settings) as st:
        listed = await st.list_objects(seaweed.bucket, prefix)
        await st.download_file(seaweed.bucket, listed[0].key, tmp_path / "one.jpg")
    debug = _lines(caplog, logging.DEBUG)
    assert len(debug) == len(front.requests) == 2 and len(listed) == len(files)
    assert debug[0].startswith(f"list_objects GET s3://{seaweed.bucket}/{prefix}: HTTP 200 in ")
    assert debug[1].startswith(
        f"download_file GET s3://{seaweed.bucket}/{listed[0].key}: HTTP 206"
    )  # its first range
    assert all(line.endswith(" ms") for line in debug)
    _assert_no_secret(caplog, settings.secret_access_key or "")


@PATHS
async def test_a_bulk_call_that_gives_up_logs_a_warning(
    seaweed: S3Target, tmp_path: Path, fast_path: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = seaweed.settings(
        endpoint_url=f"http://127.0.0.1:{closed_port()}", fast_path=fast_path, max_attempts=1
    )
    caplog.set_level(logging.WARNING, logger="mpr_storage")
    async with Storage(settings) as st:
        with pytest.raises(TransferError):
            await st.download_many(
                seaweed.bucket, [f"k{i}" for i in range(6)], tmp_path / "dst", concurrency=1
            )
    warnings = _lines(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"download_many s3://{seaweed.bucket}: gave up after 3 keys in a row failed at the "
        "endpoint (0 done, 3 failed so far): "
    )


@PATHS
async def test_throttling_cuts_are_logged_at_info(
    seaweed: S3Target,
    front: FaultProxy,
    tmp_path: Path,
    fast_path: bool,
    no_backoff: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = await _seed(seaweed, tmp_path, count=4)
    settings = seaweed.settings(endpoint_url=front.url, fast_path=fast_path)
    caplog.set_level(logging.INFO, logger="mpr_storage")
    front.fail(1, status=503, code="SlowDown", method="GET")
    async with Storage(settings) as st:
        report = await st.prefetch_frames(
            seaweed.prefix.strip("/"), tmp_path / "dst", bucket=seaweed.bucket, concurrency=8
        )
    assert report.ok and len(report.done) == len(files)
    cuts = [line for line in _lines(caplog, logging.INFO) if "throttled" in line]
    assert [line.partition(": ")[2] for line in cuts] == [
        "throttled by the server: at most 4 requests in flight (was 8)"
    ]
    assert cuts[0].startswith(("prefetch_frames", "download_many"))  # the call


@PATHS
async def test_a_region_redirect_is_logged_at_info(
    s3: S3Target, tmp_path: Path, fast_path: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mpr_storage")
    with QuirkProxy(s3.server, bucket_region="eu-west-3") as proxy:
        settings = s3.settings(endpoint_url=proxy.url, region=None, fast_path=fast_path)
        async with Storage(settings) as st:
            await st.list_objects(s3.bucket, s3.prefix)
            await st.list_objects(s3.bucket, s3.prefix)
    lines = _lines(caplog, logging.INFO)
    # the call: ours on the fast path (list_objects), botocore's operation (ListObjectsV2)
    assert [line.partition(" ")[0] for line in lines] == [
        "list_objects" if fast_path else "ListObjectsV2"
    ]
    assert lines[0].partition(" ")[2] == (
        f"s3://{s3.bucket}: the bucket is in region eu-west-3, not us-east-1: "
        "signing for it (set AWS_REGION=eu-west-3 to save the redirect)"
    )


def test_nothing_is_logged_when_nobody_configured_logging(tmp_path: Path) -> None:
    # A give-up is a WARNING: without the package's NullHandler, Python's last-resort
    # handler would print it to stderr.
    script = textwrap.dedent(
        f"""
        import asyncio, logging, mpr_storage
        async def main():
            try:
                await mpr_storage.download_many(
                    "b", ["k1", "k2", "k3", "k4"], {str(tmp_path / "dst")!r}, concurrency=1
                )
            except mpr_storage.TransferError as exc:
                print("gave up" if "gave up" in str(exc) else exc)
        asyncio.run(main())
        assert logging.getLogger("mpr_storage").handlers, "no NullHandler"
        """
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}",
        "S3_MAX_ATTEMPTS": "1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": ":".join(sys.path),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert (done.stdout, done.stderr, done.returncode) == ("gave up\n", "", 0)
