"""The network around the store, on both transports: forward proxies, a TLS front with a
private CA, an endpoint nobody listens on, and one that resets every connection."""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import BUCKET, S3Target
from mpr_storage import Storage, StorageConnectionError, StorageError, StorageSettings
from nettools import ForwardProxy, ResetServer, closed_port
from s3proxy import FaultProxy
from test_transfer import make_frames, tree

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
MiB = 1024 * 1024


async def seed(
    s3: S3Target, tmp_path: Path, count: int = 4, *, no_crlf: bool = False
) -> dict[str, bytes]:
    files = make_frames(tmp_path / "src", count)
    if no_crlf:
        # pproxy re-parses every chunk of a plain-HTTP connection that holds a CRLF as a new
        # request and drops the connection when that fails: keep CRLF out of binary bodies.
        for rel, data in files.items():
            files[rel] = data.replace(b"\r", b"-")
            (tmp_path / "src" / rel).write_bytes(files[rel])
    async with Storage(s3.settings()) as st:
        assert (await st.upload_frames(s3.prefix.strip("/"), tmp_path / "src", bucket=s3.bucket)).ok
    return files


async def every_kind_of_request(st: Storage, s3: S3Target, tmp_path: Path) -> None:
    """LIST, GET, PUT, HEAD and the bulk calls; each result checked."""
    timeline = s3.prefix.strip("/")
    prefix = f"frames/{timeline}/"
    files = {
        p.relative_to(tmp_path / "src").as_posix(): p.read_bytes()
        for p in (tmp_path / "src").rglob("*")
        if p.is_file()
    }
    listed = await st.list_objects(s3.bucket, prefix)
    assert sorted(o.key for o in listed) == sorted(prefix + rel for rel in files)
    one = await st.download_file(s3.bucket, listed[0].key, tmp_path / "one.bin")
    assert one.read_bytes() == files[listed[0].key.removeprefix(prefix)]
    (tmp_path / "up.bin").write_bytes(b"uploaded")
    await st.upload_file(tmp_path / "up.bin", s3.bucket, s3.key("up.bin"))
    assert await st.object_exists(s3.bucket, s3.key("up.bin"))
    report = await st.prefetch_frames(timeline, tmp_path / "dst", bucket=s3.bucket)
    assert report.ok and tree(tmp_path / "dst") == files
    pushed = await st.upload_many(tmp_path / "src", s3.bucket, s3.key("bulk/"))
    assert pushed.ok and len(pushed.done) == len(files)


# --- forward proxies -----------------------------------------------------------------------


@PATHS
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
async def test_a_forward_proxy_sees_every_request(
    s3: S3Target,
    forward_proxy: ForwardProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fast_path: bool,
    variable: str,
) -> None:
    await seed(s3, tmp_path, no_crlf=True)
    # client -> forward proxy -> counting proxy -> server: both must see the same requests.
    with FaultProxy(s3.server.endpoint_url) as counter:
        monkeypatch.setenv(variable, forward_proxy.url)
        async with Storage(s3.settings(endpoint_url=counter.url, fast_path=fast_path)) as st:
            await every_kind_of_request(st, s3, tmp_path)
    assert all(counter.count(method) > 0 for method in ("GET", "PUT", "HEAD"))
    # pproxy logs each client connection it forwards; every connection that reached the
    # server side must be one of them (a request that bypassed the proxy adds one).
    connections = {s.peer for s in counter.requests}
    assert forward_proxy.count() > 0
    assert len(connections) == forward_proxy.count()


@PATHS
@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
async def test_no_proxy_covering_the_host_bypasses_the_proxy(
    s3: S3Target,
    forward_proxy: ForwardProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fast_path: bool,
    no_proxy: str,
) -> None:
    await seed(s3, tmp_path)
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    async with Storage(s3.settings(fast_path=fast_path)) as st:
        await every_kind_of_request(st, s3, tmp_path)
    assert forward_proxy.count() == 0


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def tls_front(seaweed: S3Target, tls_ca: Any) -> Iterator[FaultProxy]:
    """An HTTPS front for the server, its certificate (for 127.0.0.1) issued by ``tls_ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    with FaultProxy(seaweed.server.endpoint_url, ssl_context=context) as front:
        yield front


@pytest.fixture
def ca_file(tls_ca: Any, tmp_path: Path) -> Path:
    path = tmp_path / "test-ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@PATHS
@pytest.mark.parametrize("how", ["setting", "AWS_CA_BUNDLE"])
async def test_a_tls_endpoint_signed_by_the_given_ca_is_accepted(
    seaweed: S3Target,
    tls_front: FaultProxy,
    ca_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fast_path: bool,
    how: str,
) -> None:
    await seed(seaweed, tmp_path)
    assert tls_front.url.startswith("https://")
    if how == "setting":
        settings = seaweed.settings(endpoint_url=tls_front.url, ca_bundle=str(ca_file))
    else:
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_file))
        settings = StorageSettings.from_env(endpoint_url=tls_front.url)
    async with Storage(settings.replace(fast_path=fast_path)) as st:
        await every_kind_of_request(st, seaweed, tmp_path)
    assert tls_front.count("GET") > 0 and tls_front.count("PUT") > 0


@PATHS
async def test_an_https_proxy_tunnels_every_connection_to_a_tls_endpoint(
    seaweed: S3Target,
    tls_front: FaultProxy,
    ca_file: Path,
    forward_proxy: ForwardProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fast_path: bool,
) -> None:
    await seed(seaweed, tmp_path)
    monkeypatch.setenv("HTTPS_PROXY", forward_proxy.url)
    settings = seaweed.settings(
        endpoint_url=tls_front.url, ca_bundle=str(ca_file), fast_path=fast_path
    )
    async with Storage(settings) as st:
        await every_kind_of_request(st, seaweed, tmp_path)
    connections = {s.peer for s in tls_front.requests}
    assert forward_proxy.count() > 0
    assert len(connections) == forward_proxy.count()  # every connection came through a CONNECT


@PATHS
@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_object_bodies_are_signed_as_botocore_signs_them(
    seaweed: S3Target,
    tls_front: FaultProxy,
    ca_file: Path,
    tmp_path: Path,
    fast_path: bool,
    scheme: str,
) -> None:
    """Over HTTPS a PUT or UploadPart with its checksum header goes out UNSIGNED-PAYLOAD, as
    botocore sends it (so its SHA-256 is never computed); over HTTP the signature covers the
    body's SHA-256. Every body carries a checksum the server checks: a PUT on the fast path
    SeaweedFS's CRC-32 (its profile's), else Content-MD5."""
    sizes = {"small.bin": 8, "streamed.bin": 2 * MiB, "multipart.bin": 6 * MiB}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(os.urandom(size))
    with contextlib.ExitStack() as stack:
        front = (
            tls_front
            if scheme == "https"
            else stack.enter_context(FaultProxy(seaweed.server.endpoint_url))
        )
        settings = seaweed.settings(
            endpoint_url=front.url,
            ca_bundle=str(ca_file),
            fast_path=fast_path,
            multipart_threshold=5 * MiB,
            multipart_chunksize=5 * MiB,
        )
        async with Storage(settings) as st:
            for name in sizes:
                await st.upload_file(tmp_path / name, seaweed.bucket, seaweed.key(name))
            for name, size in sizes.items():
                info = await st.stat_object(seaweed.bucket, seaweed.key(name))
                assert info.size == size
        puts = [r for r in front.requests if r.method == "PUT"]
    assert len(puts) == 4  # two single PUTs and two parts
    for put in puts:
        crc32 = fast_path and "partNumber=" not in put.query
        assert ("x-amz-checksum-crc32" if crc32 else "content-md5") in put.headers, put
        signed = put.headers["x-amz-content-sha256"]
        if scheme == "https":
            assert signed == "UNSIGNED-PAYLOAD", put
        else:
            assert re.fullmatch("[0-9a-f]{64}", signed), put


class _Damaging(FaultProxy):
    """Flips one bit in the middle of every PUT body on its way to the server."""

    def upstream_body(self, request: Any, body: bytes) -> bytes:
        if request.method != "PUT" or not body:
            return body
        middle = len(body) // 2
        return body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1 :]


@PATHS
async def test_a_body_damaged_on_the_way_is_refused_and_nothing_is_stored(
    seaweed: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    """The checksum every PUT carries (CRC-32 or Content-MD5) is what the server checks:
    SeaweedFS stores a body whose signed SHA-256 does not match it (moto checks neither)."""
    s3 = seaweed
    src = tmp_path / "src"
    src.mkdir()
    for name, size in {"small.bin": 1000, "streamed.bin": 2 * MiB}.items():
        (src / name).write_bytes(os.urandom(size))
    with _Damaging(s3.server.endpoint_url) as front:
        settings = s3.settings(endpoint_url=front.url, fast_path=fast_path, max_attempts=1)
        async with Storage(settings) as st:
            for name in ("small.bin", "streamed.bin"):
                with pytest.raises(StorageError) as caught:
                    await st.upload_file(src / name, s3.bucket, s3.key(name))
                assert caught.value.key == s3.key(name)
            report = await st.upload_many(src, s3.bucket, s3.key("bulk/"), raise_on_error=False)
            assert report.done == [] and len(report.failed) == 2
    async with Storage(s3.settings()) as st:
        assert await st.list_objects(s3.bucket, s3.prefix) == []


@PATHS
async def test_a_tls_endpoint_with_an_unknown_ca_is_refused(
    seaweed: S3Target, tls_front: FaultProxy, tmp_path: Path, fast_path: bool
) -> None:
    settings = seaweed.settings(
        endpoint_url=tls_front.url, fast_path=fast_path, max_attempts=2, connect_timeout=2
    )
    started = time.monotonic()
    async with Storage(settings) as st:
        with pytest.raises(StorageConnectionError) as listing:
            await st.list_objects(seaweed.bucket, seaweed.prefix)
        with pytest.raises(StorageConnectionError) as download:
            await st.download_file(seaweed.bucket, seaweed.key("x.jpg"), tmp_path / "x.jpg")
    assert time.monotonic() - started < 30
    for info in (listing, download):
        assert "certificate" in str(info.value).lower()
    assert not (tmp_path / "x.jpg").exists()
    assert tls_front.count() == 0  # no request got through


# --- dead endpoints ------------------------------------------------------------------------

OPERATIONS = ["list_objects", "download_file", "upload_file", "object_exists", "prefetch_frames"]


async def call(st: Storage, operation: str, tmp_path: Path) -> object:
    (tmp_path / "up.bin").write_bytes(b"up")
    calls = {
        "list_objects": lambda: st.list_objects(BUCKET, "some/prefix/"),
        "download_file": lambda: st.download_file(BUCKET, "some/key.jpg", tmp_path / "k.jpg"),
        "upload_file": lambda: st.upload_file(tmp_path / "up.bin", BUCKET, "some/up.bin"),
        "object_exists": lambda: st.object_exists(BUCKET, "some/key.jpg"),
        "prefetch_frames": lambda: st.prefetch_frames("tl", tmp_path / "dst", bucket=BUCKET),
    }
    return await calls[operation]()


def unreachable_settings(endpoint: str, fast_path: bool) -> StorageSettings:
    return StorageSettings(
        endpoint_url=endpoint,
        access_key_id="test-key",
        secret_access_key="test-secret",
        fast_path=fast_path,
        max_attempts=2,
        connect_timeout=1,
        retry_budget=5,
    )


@PATHS
@pytest.mark.parametrize("operation", OPERATIONS)
async def test_an_unreachable_endpoint_reads_the_same_on_both_paths(
    tmp_path: Path, fast_path: bool, operation: str
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    async with Storage(unreachable_settings(endpoint, fast_path)) as st:
        with pytest.raises(StorageConnectionError) as info:
            await call(st, operation, tmp_path)
    assert time.monotonic() - started < 60
    assert f"cannot reach the endpoint {endpoint}" in str(info.value)
    # A bulk call may name its listing step (list_objects) as the operation that failed.
    assert info.value.operation in (operation, "list_objects")
    assert f"s3://{BUCKET}" in str(info.value)
    assert not (tmp_path / "k.jpg").exists()
    assert not any(p.is_file() for p in (tmp_path / "dst").rglob("*"))  # no partial download


@PATHS
async def test_a_socket_that_resets_is_retried_then_reported(
    tmp_path: Path, fast_path: bool
) -> None:
    with ResetServer() as server:
        async with Storage(
            unreachable_settings(server.url, fast_path).replace(max_attempts=3)
        ) as st:
            with pytest.raises(StorageConnectionError) as info:
                await st.download_file(BUCKET, "some/key.jpg", tmp_path / "k.jpg")
    # Every attempt reached the server; aiohttp may itself resend an idempotent request once
    # when its connection drops (RFC 9112), so an attempt is one or two connections.
    assert 3 <= server.accepted <= 6
    assert info.value.operation == "download_file" and "some/key.jpg" in str(info.value)
    assert not (tmp_path / "k.jpg").exists()
