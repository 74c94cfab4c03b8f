"""Retries on both transports: every retryable status on every kind of request, Retry-After,
listings that resume from the failed page, token and clock-skew answers.

The fault proxy answers in front of SeaweedFS (the server does not matter to a fault the
client never sees it past); the same assertions hold on the fast path and on botocore.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from conftest import S3Target, VirtualClock
from mpr_storage import AccessDeniedError, Storage, ThrottledError
from quirks import QuirkProxy
from test_transfer import make_frames, tree

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])

HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></html>"
SERVER_ERRORS = {
    "503-SlowDown": (503, "SlowDown", None),
    "503-SlowDownRead": (503, "SlowDownRead", None),
    "503-SlowDownWrite": (503, "SlowDownWrite", None),
    "503-XMinioServerNotInitialized": (503, "XMinioServerNotInitialized", None),
    "503-ServiceUnavailable": (503, "ServiceUnavailable", None),
    "500-InternalError": (500, "InternalError", None),
    "502-html": (502, "", HTML_502),
    "504-empty": (504, "", b""),
}


async def seed(s3: S3Target, tmp_path: Path, count: int = 3, size: int = 2000) -> dict[str, bytes]:
    files = make_frames(tmp_path / "src", count, size=size)
    async with Storage(s3.settings(max_concurrency=32)) as st:
        assert (await st.upload_frames(s3.prefix.strip("/"), tmp_path / "src", bucket=s3.bucket)).ok
    return files


@PATHS
@pytest.mark.parametrize(
    ("status", "code", "body"), list(SERVER_ERRORS.values()), ids=list(SERVER_ERRORS)
)
async def test_server_errors_are_retried_on_lists_gets_puts_and_heads(
    seaweed: S3Target,
    tmp_path: Path,
    fast_path: bool,
    status: int,
    code: str,
    body: bytes | None,
) -> None:
    files = await seed(seaweed, tmp_path)
    timeline = seaweed.prefix.strip("/")
    prefix = f"frames/{timeline}/"
    (tmp_path / "up.bin").write_bytes(b"uploaded")

    def fail(n: int, **where: str) -> None:
        proxy.fail(n, status=status, code=code, body=body, **where)  # type: ignore[arg-type]

    with QuirkProxy(seaweed.server) as proxy:
        settings = seaweed.settings(endpoint_url=proxy.url, fast_path=fast_path, max_attempts=3)
        async with Storage(settings) as st:
            fail(1, target="list")
            listed = await st.list_objects(seaweed.bucket, prefix)
            fail(1, method="GET")
            first = prefix + "frame_000000.jpg"
            one = await st.download_file(seaweed.bucket, first, tmp_path / "1")
            fail(1, method="PUT")
            await st.upload_file(tmp_path / "up.bin", seaweed.bucket, seaweed.key("up.bin"))
            fail(1, method="HEAD")
            assert await st.object_exists(seaweed.bucket, seaweed.key("up.bin"))
            fail(1, target="list")
            fail(2, method="GET")
            report = await st.prefetch_frames(timeline, tmp_path / "dst", bucket=seaweed.bucket)
    assert sorted(o.key for o in listed) == sorted(prefix + rel for rel in files)
    assert one.read_bytes() == files["frame_000000.jpg"]
    assert report.ok and tree(tmp_path / "dst") == files
    assert [s.status for s in proxy.requests].count(status) == 7  # every fault was answered


@PATHS
@pytest.mark.parametrize("target", ["list", "object"])
async def test_retry_after_is_honoured(
    seaweed: S3Target, tmp_path: Path, fast_path: bool, target: str, backoff: VirtualClock
) -> None:
    files = await seed(seaweed, tmp_path, count=1)
    prefix = f"frames/{seaweed.prefix.strip('/')}/"
    with QuirkProxy(seaweed.server) as proxy:
        settings = seaweed.settings(endpoint_url=proxy.url, fast_path=fast_path, max_attempts=3)
        async with Storage(settings) as st:
            proxy.fail(
                1,
                status=503,
                code="SlowDown",
                target="list" if target == "list" else "object",
                headers={"Retry-After": "2"},
            )
            listed = await st.list_objects(seaweed.bucket, prefix)
            out = await st.download_file(seaweed.bucket, listed[0].key, tmp_path / "one.jpg")
    assert out.read_bytes() == files[listed[0].key.removeprefix(prefix)]
    hit = [s for s in proxy.requests if (s.is_list if target == "list" else s.is_object)]
    # download_file's first request asks for its first range: a 206
    assert [s.status for s in hit] == [503, 200 if target == "list" else 206]
    assert backoff.waits == [2.0]  # not before the server said it may be asked again


@pytest.mark.slow  # a thousand and one keys, through a proxy, twice
@PATHS
async def test_a_listing_resumes_from_the_page_that_failed(
    seaweed: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    files = await seed(seaweed, tmp_path, count=1001, size=1)  # two pages of 1000
    timeline = seaweed.prefix.strip("/")
    prefix = f"frames/{timeline}/"
    with QuirkProxy(seaweed.server) as proxy:
        settings = seaweed.settings(endpoint_url=proxy.url, fast_path=fast_path, max_attempts=3)
        async with Storage(settings) as st:
            proxy.fail(1, status=503, code="SlowDown", target="page2")
            listed = await st.list_objects(seaweed.bucket, prefix)
            lists = [s for s in proxy.requests if s.is_list]
            proxy.reset()
            proxy.fail(1, status=500, code="InternalError", target="page2")
            report = await st.prefetch_frames(timeline, tmp_path / "dst", bucket=seaweed.bucket)
            prefetch_lists = [s for s in proxy.requests if s.is_list]
    keys = [o.key for o in listed]
    assert len(keys) == len(set(keys)) == len(files)
    assert sorted(keys) == sorted(prefix + rel for rel in files)
    for seen, status in ((lists, 503), (prefetch_lists, 500)):
        pages = [(s.continues, s.status) for s in seen]
        assert pages == [(False, 200), (True, status), (True, 200)]
        assert seen[1].query == seen[2].query  # the same continuation token, page 1 not again
    assert report.ok and len(report.done) == len(files)


@PATHS
async def test_the_retry_budget_bounds_one_request(
    seaweed: S3Target, tmp_path: Path, fast_path: bool, backoff: VirtualClock
) -> None:
    await seed(seaweed, tmp_path, count=1)
    key = f"frames/{seaweed.prefix.strip('/')}/frame_000000.jpg"
    with QuirkProxy(seaweed.server) as proxy:
        proxy.fail(1000, status=503, code="SlowDown", headers={"Retry-After": "1"})
        settings = seaweed.settings(
            endpoint_url=proxy.url, fast_path=fast_path, max_attempts=20, retry_budget=3
        )
        async with Storage(settings) as st:
            with anyio.fail_after(60), pytest.raises(ThrottledError) as info:
                await st.download_file(seaweed.bucket, key, tmp_path / "one.jpg")
    gets = proxy.count("GET", objects_only=True)
    assert 2 <= gets < 20  # it retried, and the budget (not max_attempts) ended it
    assert gets == len(backoff.waits) + 1  # one wait between two attempts
    assert all(wait >= 1.0 for wait in backoff.waits)  # each at least the Retry-After
    assert sum(backoff.waits) <= 3  # the waits fit the budget: never the 20 attempts
    assert key in str(info.value) and info.value.operation == "download_file"
    assert not (tmp_path / "one.jpg").exists()


@PATHS
async def test_a_get_is_tried_max_attempts_times_and_a_refusal_once(
    seaweed: S3Target, tmp_path: Path, fast_path: bool, backoff: VirtualClock
) -> None:
    await seed(seaweed, tmp_path, count=1)
    key = f"frames/{seaweed.prefix.strip('/')}/frame_000000.jpg"
    with QuirkProxy(seaweed.server) as proxy:
        settings = seaweed.settings(endpoint_url=proxy.url, fast_path=fast_path, max_attempts=3)
        async with Storage(settings) as st:
            proxy.fail(3, status=503, code="SlowDown")  # as many as it may try
            with pytest.raises(ThrottledError):
                await st.download_file(seaweed.bucket, key, tmp_path / "one.jpg")
            assert proxy.count("GET", objects_only=True) == 3  # the first attempt counts
            assert len(backoff.waits) == 2
            proxy.fail(1000, status=403, code="AccessDenied")
            with pytest.raises(AccessDeniedError) as info:
                await st.get_bytes(seaweed.bucket, key)
    assert proxy.count("GET", objects_only=True) == 4  # never retried
    assert len(backoff.waits) == 2
    assert key in str(info.value)
    assert not (tmp_path / "one.jpg").exists()


TOKEN_ERRORS = {
    "ExpiredToken": (400, "ExpiredToken"),
    "InvalidToken": (400, "InvalidToken"),
    "RequestTimeTooSkewed": (403, "RequestTimeTooSkewed"),
}


@PATHS
@pytest.mark.parametrize(("status", "code"), list(TOKEN_ERRORS.values()), ids=list(TOKEN_ERRORS))
async def test_one_token_or_clock_error_is_refreshed_and_retried(
    seaweed: S3Target, tmp_path: Path, fast_path: bool, status: int, code: str
) -> None:
    files = await seed(seaweed, tmp_path, count=2)
    timeline = seaweed.prefix.strip("/")
    prefix = f"frames/{timeline}/"
    (tmp_path / "up.bin").write_bytes(b"uploaded")
    with QuirkProxy(seaweed.server) as proxy:
        settings = seaweed.settings(endpoint_url=proxy.url, fast_path=fast_path, max_attempts=3)
        async with Storage(settings) as st:
            proxy.fail(1, status=status, code=code, target="list")
            listed = await st.list_objects(seaweed.bucket, prefix)
            proxy.fail(1, status=status, code=code, method="GET")
            one = await st.download_file(seaweed.bucket, listed[0].key, tmp_path / "one.jpg")
            proxy.fail(1, status=status, code=code, method="PUT")
            await st.upload_file(tmp_path / "up.bin", seaweed.bucket, seaweed.key("up.bin"))
            proxy.fail(1, status=status, code=code, method="GET")
            report = await st.prefetch_frames(timeline, tmp_path / "dst", bucket=seaweed.bucket)
    assert len(listed) == len(files)
    assert one.read_bytes() == files[listed[0].key.removeprefix(prefix)]
    assert report.ok and tree(tmp_path / "dst") == files
    assert [s.status for s in proxy.requests].count(status) == 4
