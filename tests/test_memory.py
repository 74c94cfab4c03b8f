"""Memory stays bounded: large objects stream, many keys don't pile up (measured in a child)."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import S3Target
from mpr_storage import Storage
from mpr_storage._files import LocalIO, atomic_writer
from s3proxy import FaultProxy

MiB = 1024 * 1024

# Runs in a fresh interpreter: peak RSS (VmHWM) after the import is the baseline.
CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    def peak_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import mpr_storage
    async def main(kind, bucket, arg, dest):
        baseline = peak_kib()
        await mpr_storage.list_objects(bucket, "no-such-prefix/")  # client created: baseline
        baseline = peak_kib()
        if kind == "large":
            await mpr_storage.download_file(bucket, arg, dest)
        else:
            report = await mpr_storage.download_many(
                bucket, mpr_storage.iter_objects(bucket, arg), dest, prefix=arg
            )
            assert report.ok and len(report.done) == int(sys.argv[5]), len(report.done)
        print(json.dumps({"delta_mib": (peak_kib() - baseline) / 1024}))
    asyncio.run(main(*sys.argv[1:5]))
    """
)


def _peak_delta(*args: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return float(json.loads(result.stdout)["delta_mib"])


@pytest.mark.slow
@pytest.mark.memory
async def test_large_download_streams_in_bounded_memory(seaweed: S3Target, tmp_path: Path) -> None:
    size = 320 * MiB
    src = tmp_path / "large.bin"
    with open(src, "wb") as f:
        block = os.urandom(MiB)
        for i in range(size // MiB):
            f.write(block[i:] + block[:i])
    key = seaweed.key("large.bin")
    async with Storage(seaweed.settings()) as st:
        await st.upload_file(src, seaweed.bucket, key)
    dest = tmp_path / "out.bin"
    delta = _peak_delta("large", seaweed.bucket, key, str(dest))
    assert dest.stat().st_size == size
    assert delta < 100, f"peak RSS grew by {delta:.0f} MiB for a {size // MiB} MiB object"
    src.unlink()
    dest.unlink()


@pytest.mark.slow
@pytest.mark.memory
@pytest.mark.timeout(300)  # 20,000 requests: 20-45 s alone, past 120 s on a loaded machine
async def test_ten_thousand_keys_without_memory_growth(seaweed: S3Target, tmp_path: Path) -> None:
    count = 10_000
    src = tmp_path / "src"
    src.mkdir()
    for i in range(count):
        (src / f"f{i:05d}.bin").write_bytes(i.to_bytes(4, "big") * 64)
    # Seeded on the fast path whatever the transport under test: only the download is measured.
    async with Storage(seaweed.settings(fast_path=True)) as st:
        report = await st.upload_many(src, seaweed.bucket, seaweed.prefix)
        assert report.ok and len(report.done) == count
    delta = _peak_delta("many", seaweed.bucket, seaweed.prefix, str(tmp_path / "dst"), str(count))
    assert len(os.listdir(tmp_path / "dst")) == count + 1  # and the manifest
    assert delta < 80, f"peak RSS grew by {delta:.0f} MiB for {count} small keys"


# A 300 MiB download in the harshest conditions found: the same process has just fetched
# thousands of objects, every write goes to a worker thread and is slow (a disk busy with
# dirty pages), 16 ranges at once, and one of them is cut mid-way (it resumes).
HARSH = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import mpr_storage
    from mpr_storage import _files, _partfile

    def peak_kib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

    _files.LocalIO.INLINE_MAX = 0  # every write on a worker thread
    write = _partfile.PartFile.write

    async def slow_write(self, chunks, offset, size):
        time.sleep(0.002)  # on the loop: the disk is slow, and the body keeps coming
        await write(self, chunks, offset, size)

    _partfile.PartFile.write = slow_write

    async def main(bucket, key, dest, many, proxy):
        await mpr_storage.list_objects(bucket, "no-such-prefix/")  # client created: baseline
        baseline = peak_kib()
        report = await mpr_storage.download_many(
            bucket, mpr_storage.iter_objects(bucket, many), dest + ".many", prefix=many
        )
        assert report.ok, report.failed
        settings = mpr_storage.StorageSettings.from_env(endpoint_url=proxy)  # cuts the body once
        async with mpr_storage.Storage(settings) as st:
            await st.download_file(bucket, key, dest)
        print(json.dumps({"delta_mib": (peak_kib() - baseline) / 1024}))

    asyncio.run(main(*sys.argv[1:6]))
    """
)


@pytest.mark.slow
@pytest.mark.memory
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "botocore"])
async def test_large_download_after_many_with_slow_disk_and_a_retry(
    seaweed: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    size = 300 * MiB
    src = tmp_path / "large.bin"
    with open(src, "wb") as f:
        block = os.urandom(MiB)
        for i in range(size // MiB):
            f.write(block[i:] + block[:i])
    many = tmp_path / "many"
    many.mkdir()
    for i in range(2000):
        (many / f"frame_{i:06d}.jpg").write_bytes(os.urandom(20_000 + i % 50 * 1000))
    key = seaweed.key("large.bin")
    async with Storage(seaweed.settings()) as st:
        await st.upload_file(src, seaweed.bucket, key)
        assert (await st.upload_many(many, seaweed.bucket, seaweed.key("many/"))).ok
    src.unlink()
    dest = tmp_path / "out.bin"
    with FaultProxy(seaweed.server.endpoint_url) as proxy:
        proxy.cut(1, after_bytes=5 * MiB)  # the first request: bytes 0-8 MiB
        args = [seaweed.bucket, key, str(dest), seaweed.key("many/"), proxy.url]
        result = await anyio.run_process(
            [sys.executable, "-c", HARSH, *args],
            check=False,
            # ranges whatever the first part's speed: the most held at once
            env={**os.environ, "S3_FAST_PATH": str(int(fast_path)), "S3_RANGE_STREAM_RATE": "0"},
        )
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        # 8 MiB, then 16 ranges of 19 MiB; the cut one resumed from 5 MiB: nothing fetched twice
        assert proxy.count("GET", objects_only=True) == 1 + 16 + 1
        # at most what the HTTP client held unread when the connection broke is fetched twice
        assert size <= proxy.sent() <= size + MiB
    delta = float(json.loads(result.stdout)["delta_mib"])
    assert dest.stat().st_size == size
    assert delta < 100, f"peak RSS grew by {delta:.0f} MiB for a {size // MiB} MiB object"


async def test_a_body_is_written_through_one_reused_block(tmp_path: Path) -> None:
    pieces = [os.urandom(n) for n in (1, 70_000, 300_000, MiB, 3 * MiB + 5, 65_536, 17)]

    async def body() -> AsyncIterator[bytes]:
        for _ in range(4):
            for piece in pieces:
                yield piece

    io = LocalIO()
    io.threaded = True  # a slow disk: every write on a worker thread
    tracemalloc.start()
    try:
        async with atomic_writer(tmp_path / "out.bin", io) as f:
            written = await f.write_all(body())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == 4 * sum(map(len, pieces))
    assert (tmp_path / "out.bin").read_bytes() == b"".join(pieces) * 4
    assert peak < 2 * MiB, f"{peak / MiB:.1f} MiB allocated at the peak"  # one block


@pytest.mark.parametrize("fast_path", [True], ids=["fast"])
async def test_large_bytes_are_sent_without_a_copy(seaweed: S3Target, fast_path: bool) -> None:
    """put_bytes of 32 MiB: the bytes go to the socket as slices of themselves, never copied
    (sent as aiohttp's BytesIO payload, they were copied whole: a 32 MiB peak)."""
    data = os.urandom(32 * MiB)
    key = seaweed.key("large-bytes.bin")
    async with Storage(seaweed.settings(fast_path=fast_path)) as st:
        await st.put_bytes(b"warm", seaweed.bucket, key)  # the client and its connection
        tracemalloc.start()
        try:
            info = await st.put_bytes(data, seaweed.bucket, key)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (await st.stat_object(seaweed.bucket, key)).size == len(data)
    assert info.size == len(data)
    assert peak < 4 * MiB, f"{peak / MiB:.1f} MiB allocated at the peak"


# Runs in a fresh interpreter: peak RSS (VmHWM) once the client exists is the baseline.
UPLOAD_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    import mpr_storage
    def peak_kib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    async def main(bucket, key, src):
        await mpr_storage.list_objects(bucket, "no-such-prefix/")  # client created: baseline
        baseline = peak_kib()
        info = await mpr_storage.upload_file(src, bucket, key)
        print(json.dumps({"delta_mib": (peak_kib() - baseline) / 1024, "size": info.size}))
    asyncio.run(main(*sys.argv[1:4]))
    """
)


@pytest.mark.slow
@pytest.mark.memory
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_multipart_upload_streams_its_parts_in_bounded_memory(
    seaweed: S3Target, tmp_path: Path, tls_ca: Any, scheme: str
) -> None:
    """12 parts of 8 MiB, 10 at once: each part is streamed from the file, never held whole
    (held as bytes, each was also copied on its way to the socket: this peaked at ~160 MiB),
    on both transports, signed over plain HTTP and sent over TLS."""
    size = 96 * MiB
    src = tmp_path / "large.bin"
    with open(src, "wb") as f:
        block = os.urandom(MiB)
        for i in range(size // MiB):
            f.write(block[i:] + block[:i])
    key = seaweed.key(f"{scheme}.bin")
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        if scheme == "https":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_ca.issue_cert("127.0.0.1").configure_cert(context)
            front = stack.enter_context(
                FaultProxy(seaweed.server.endpoint_url, ssl_context=context)
            )
            ca_file = tmp_path / "ca.pem"
            tls_ca.cert_pem.write_to_path(str(ca_file))
            env.update(S3_ENDPOINT_URL=front.url, AWS_CA_BUNDLE=str(ca_file))
        result = await anyio.run_process(
            [sys.executable, "-c", UPLOAD_CHILD, seaweed.bucket, key, str(src)],
            check=False,
            env=env,
        )
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        if scheme == "https":
            assert front.count("PUT") == size // (8 * MiB)  # the parts went through TLS
    out = json.loads(result.stdout)
    assert out["size"] == size
    async with Storage(seaweed.settings()) as st:
        got = await st.download_file(seaweed.bucket, key, tmp_path / "back.bin")
    assert got.read_bytes() == src.read_bytes()
    delta = float(out["delta_mib"])
    # the bound: 10 parts x ~512 KiB in flight, plus the HTTP client's per-request state
    assert delta < 40, f"peak RSS grew by {delta:.0f} MiB for a {size // MiB} MiB upload"
