"""Redirects, on both transports: never followed. An answer sending the request to another
host is a typed error naming the status and the target, and no body or credential header
ever reaches a host that was not configured."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from conftest import S3Target
from mpr_storage import Storage, StorageError
from s3proxy import FaultProxy

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Recorder(FaultProxy):
    """A second loopback server: answers every request itself (200, no body) and records it."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9")  # never forwards
        self.received: list[Received] = []
        self._got = threading.Lock()

    async def intercept(self, request: web.BaseRequest, body: bytes) -> web.Response | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._got:
            self.received.append(Received(request.method, request.raw_path, headers, body))
        return web.Response(status=200)


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    with Recorder() as recorder:
        yield recorder


@pytest.fixture
def front(seaweed: S3Target) -> Iterator[FaultProxy]:
    with FaultProxy(seaweed.server.endpoint_url) as p:
        yield p


def _storage(front: FaultProxy, s3: S3Target, fast_path: bool) -> Storage:
    return Storage(
        s3.settings(
            endpoint_url=front.url, fast_path=fast_path, session_token=TOKEN, max_attempts=2
        )
    )


def _assert_nothing_went_elsewhere(elsewhere: Recorder) -> None:
    assert elsewhere.received == [], [
        (r.method, r.path, sorted(r.headers)) for r in elsewhere.received
    ]


def _assert_names_status_and_target(err: StorageError, status: int, elsewhere: Recorder) -> None:
    assert err.status == status
    text = str(err)
    assert str(status) in text
    assert elsewhere.url.removeprefix("http://") in text  # the target, shown
    assert "s3cr3t" not in text and "X-Amz-Signature" not in text  # its userinfo/query not
    assert TOKEN not in text


def _location(elsewhere: Recorder) -> str:
    # userinfo and a presigned-like query in the target: never shown
    host = elsewhere.url.removeprefix("http://")
    return f"http://user:s3cr3t@{host}/elsewhere/obj?X-Amz-Signature=abc"


@PATHS
@pytest.mark.parametrize("status", [307, 302, 308, 301])
async def test_a_redirected_get_is_an_error_and_goes_nowhere(
    seaweed: S3Target,
    front: FaultProxy,
    elsewhere: Recorder,
    tmp_path: Path,
    fast_path: bool,
    status: int,
) -> None:
    (tmp_path / "seed.bin").write_bytes(b"payload")
    async with Storage(seaweed.settings()) as st:
        await st.upload_file(tmp_path / "seed.bin", seaweed.bucket, seaweed.key("a.bin"))
    front.fail(9, status=status, code="TemporaryRedirect", method="GET",
               headers={"Location": _location(elsewhere)})  # fmt: skip
    async with _storage(front, seaweed, fast_path) as st:
        with pytest.raises(StorageError) as caught:
            await st.download_file(seaweed.bucket, seaweed.key("a.bin"), tmp_path / "a.bin")
    _assert_names_status_and_target(caught.value, status, elsewhere)
    assert caught.value.operation == "download_file" and caught.value.key == seaweed.key("a.bin")
    assert not (tmp_path / "a.bin").exists()
    _assert_nothing_went_elsewhere(elsewhere)


@PATHS
@pytest.mark.parametrize("size", [100, 3 * 1024 * 1024], ids=["small", "large"])
async def test_a_redirected_put_never_sends_its_body_elsewhere(
    seaweed: S3Target,
    front: FaultProxy,
    elsewhere: Recorder,
    tmp_path: Path,
    fast_path: bool,
    size: int,
) -> None:
    (tmp_path / "up.bin").write_bytes(b"x" * size)
    front.fail(9, status=307, code="TemporaryRedirect", method="PUT", body=b"",
               headers={"Location": _location(elsewhere)})  # fmt: skip
    async with _storage(front, seaweed, fast_path) as st:
        with pytest.raises(StorageError) as caught:
            await st.upload_file(tmp_path / "up.bin", seaweed.bucket, seaweed.key("up.bin"))
    _assert_names_status_and_target(caught.value, 307, elsewhere)
    _assert_nothing_went_elsewhere(elsewhere)


@PATHS
async def test_a_redirected_listing_is_an_error_and_goes_nowhere(
    seaweed: S3Target, front: FaultProxy, elsewhere: Recorder, fast_path: bool
) -> None:
    front.fail(9, status=307, code="TemporaryRedirect", method="GET", target="list",
               headers={"Location": _location(elsewhere)})  # fmt: skip
    async with _storage(front, seaweed, fast_path) as st:
        with pytest.raises(StorageError) as caught:
            await st.list_objects(seaweed.bucket, seaweed.prefix)
    _assert_names_status_and_target(caught.value, 307, elsewhere)
    assert caught.value.operation == "list_objects"
    _assert_nothing_went_elsewhere(elsewhere)
