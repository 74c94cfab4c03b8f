"""The blocking shim: same API on one private loop thread; threads, running loops, fork, Ctrl-C."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import traceback
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import sync
from mpr_storage._manifest import MANIFEST_NAME

# Above the wire: the transports are compared by the tests of the layers below.
pytestmark = pytest.mark.one_transport

# Python 3.12+ warns on fork() in a process with threads (the test servers, the loop thread).
fork_with_threads = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


@pytest.fixture(autouse=True)
def fresh_portal() -> Iterator[None]:
    """Each test starts the loop thread anew, so its client reads the test's environment."""
    sync._portal.stop()
    yield
    sync._portal.stop()


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mpr-storage-loop"]


def write_files(root: Path, count: int, size: int = 1000) -> dict[str, bytes]:
    files = {f"f_{i:04d}.bin": i.to_bytes(4, "big") * (size // 4) for i in range(count)}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def files_in(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }


# --- the API ----------------------------------------------------------------------------------


def test_every_sync_name_exists() -> None:
    # Which names, and that each call's parameters and text match its async twin: test_surface.
    for name in sync.__all__:
        assert hasattr(sync, name), name
    assert issubclass(sync.RunningLoopError, RuntimeError)


def test_single_object_round_trip(s3: S3Target, tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"video bytes")
    key = s3.key("dir/clip +1.mp4")
    info = sync.upload_file(src, s3.bucket, key, content_type="video/mp4")
    assert isinstance(info, sync.ObjectInfo) and (info.key, info.size) == (key, 11)
    assert sync.object_exists(s3.bucket, key)
    assert [o.key for o in sync.list_objects(s3.bucket, s3.prefix)] == [key]
    assert sync.list_objects(s3.bucket, s3.prefix, suffixes=".jpg") == []
    listing = sync.iter_objects(s3.bucket, s3.prefix)
    assert iter(listing) is listing  # a plain iterator
    assert [o.key for o in listing] == [key]

    dest = sync.download_file(s3.bucket, key, tmp_path / "out" / "c.mp4")
    assert dest == tmp_path / "out" / "c.mp4" and dest.read_bytes() == b"video bytes"
    temp = sync.download_to_temp(s3.bucket, key)
    try:
        assert temp.suffix == ".mp4" and temp.read_bytes() == b"video bytes"
    finally:
        temp.unlink()

    url = sync.get_presigned_url(s3.bucket, key, expires_in=60)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"video bytes"
    put_url = sync.get_presigned_url(s3.bucket, s3.key("put.txt"), method="PUT")
    request = urllib.request.Request(put_url, data=b"put", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    sync.delete_objects(s3.bucket, (k for k in [key, s3.key("put.txt")]))
    assert not sync.object_exists(s3.bucket, key)
    with pytest.raises(sync.ObjectNotFoundError) as caught:  # the async twin's error
        sync.download_file(s3.bucket, key, tmp_path / "missing")
    assert isinstance(caught.value, FileNotFoundError) and caught.value.key == key
    assert not (tmp_path / "missing").exists()
    assert len(loop_threads()) == 1


def test_bulk_transfers_and_frame_caches(s3: S3Target, tmp_path: Path) -> None:
    files = write_files(tmp_path / "src", 12)
    report = sync.upload_many(tmp_path / "src", s3.bucket, s3.prefix, concurrency=4)
    assert isinstance(report, sync.TransferReport) and sorted(report.done) == [
        s3.key(name) for name in sorted(files)
    ]
    progress: list[tuple[int, int, int]] = []
    report = sync.download_many(
        s3.bucket,
        sync.iter_objects(s3.bucket, s3.prefix),  # a lazy iterable is fine
        tmp_path / "dst",
        prefix=s3.prefix,
        on_progress=lambda *args: progress.append(args),
    )
    assert report.ok and files_in(tmp_path / "dst") == files
    assert progress[-1] == (12, 12, sum(map(len, files.values())))
    with pytest.raises(sync.TransferError) as caught:
        sync.download_many(s3.bucket, [s3.key("nope")], tmp_path / "dst", prefix=s3.prefix)
    assert list(caught.value.report.failed) == [s3.key("nope")]
    report = sync.download_many(
        s3.bucket, [s3.key("nope")], tmp_path / "dst", prefix=s3.prefix, raise_on_error=False
    )
    assert not report.ok

    timeline = f"sync-{s3.prefix.strip('/')}"
    assert sync.frame_cache_prefix(timeline) == f"frames/{timeline}/"
    assert not sync.frame_cache_exists(timeline, bucket=s3.bucket)
    with pytest.raises(sync.ObjectNotFoundError, match=timeline):
        sync.prefetch_frames(timeline, tmp_path / "frames", bucket=s3.bucket)
    assert sync.upload_frames(timeline, tmp_path / "src", bucket=s3.bucket).ok
    assert sync.frame_cache_exists(timeline, bucket=s3.bucket)
    assert sync.prefetch_frames(timeline, tmp_path / "frames", bucket=s3.bucket).ok
    assert files_in(tmp_path / "frames") == files
    assert sync.BUCKET_OUT == mpr_storage.BUCKET_OUT and sync.BUCKET_IN == mpr_storage.BUCKET_IN


def test_iter_objects_streams_in_batches(
    s3: S3Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_files(tmp_path / "src", 5, size=4)
    sync.upload_many(tmp_path / "src", s3.bucket, s3.prefix)
    monkeypatch.setattr("mpr_storage._portal._ITER_BATCH", 2)
    trips: list[object] = []
    real_run = sync._portal._run

    def counting_run(coro):  # type: ignore[no-untyped-def]
        trips.append(coro)
        return real_run(coro)

    monkeypatch.setattr(sync._portal, "_run", counting_run)
    keys = [o.key for o in sync.iter_objects(s3.bucket, s3.prefix)]
    assert keys == sorted(s3.key(f"f_{i:04d}.bin") for i in range(5))
    assert len(trips) == 4  # 2 + 2 + 1 + the empty batch that ends it
    trips.clear()
    listing = sync.iter_objects(s3.bucket, s3.prefix)
    assert next(listing).key == keys[0]
    listing.close()  # left early: the async listing is closed on its loop
    assert len(trips) == 2


def test_get_s3_client_is_a_configured_cached_boto3_client(s3: S3Target) -> None:
    client = sync.get_s3_client()
    assert sync.get_s3_client() is client
    assert type(client).__module__ == "botocore.client"  # plain boto3, not aiobotocore
    config = client.meta.config
    settings = s3.settings()
    assert client.meta.endpoint_url == settings.endpoint_url
    assert config.s3 == {"addressing_style": "path"}
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.max_pool_connections == settings.max_concurrency
    assert config.connect_timeout == settings.connect_timeout
    # botocore's own spelling of retries={"max_attempts": n} (n retries after the first try).
    # S3_MAX_ATTEMPTS counts the first try, as botocore's total_max_attempts does.
    assert config.retries == {"total_max_attempts": settings.max_attempts, "mode": "standard"}
    client.put_object(Bucket=s3.bucket, Key=s3.key("boto3"), Body=b"plain")
    assert sync.object_exists(s3.bucket, s3.key("boto3"))
    body = client.get_object(Bucket=s3.bucket, Key=s3.key("boto3"))["Body"]
    with body:
        assert body.read() == b"plain"


# --- threads and event loops ------------------------------------------------------------------


def test_sixteen_threads_at_once(s3: S3Target, tmp_path: Path) -> None:
    barrier = threading.Barrier(16)

    def job(i: int) -> bytes:
        src = tmp_path / f"in-{i}"
        src.write_bytes(f"payload {i}".encode() * 100)
        barrier.wait(timeout=10)
        sync.upload_file(src, s3.bucket, s3.key(f"t/{i}"))
        assert sync.object_exists(s3.bucket, s3.key(f"t/{i}"))
        return sync.download_file(s3.bucket, s3.key(f"t/{i}"), tmp_path / f"out-{i}").read_bytes()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(job, range(16)))
    assert results == [f"payload {i}".encode() * 100 for i in range(16)]
    assert len(sync.list_objects(s3.bucket, s3.key("t/"))) == 16
    assert len(loop_threads()) == 1  # one loop thread serves every caller


async def test_from_a_worker_thread_while_the_main_loop_runs(s3: S3Target, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    await asyncio.to_thread(sync.upload_file, tmp_path / "f", s3.bucket, s3.key("f"))
    found = await asyncio.gather(
        *(asyncio.to_thread(sync.object_exists, s3.bucket, s3.key("f")) for _ in range(4))
    )
    assert found == [True] * 4
    assert [o.key for o in await asyncio.to_thread(sync.list_objects, s3.bucket, s3.prefix)] == [
        s3.key("f")
    ]


async def test_called_inside_a_running_loop_raises_a_clear_error(s3: S3Target) -> None:
    with pytest.raises(RuntimeError, match=r"await mpr_storage\.list_objects\(\.\.\.\)") as caught:
        sync.list_objects(s3.bucket)
    assert isinstance(caught.value, sync.RunningLoopError)
    with pytest.raises(sync.RunningLoopError, match=r"async for obj in mpr_storage\.iter_objects"):
        sync.iter_objects(s3.bucket)
    with pytest.raises(sync.RunningLoopError, match="get_s3_client"):
        sync.get_s3_client()
    with pytest.raises(sync.RunningLoopError, match="download_many"):
        sync.download_many(s3.bucket, ["k"], "dest")
    assert loop_threads() == []  # refused before anything started: nothing could wait


def test_a_callback_on_the_loop_thread_cannot_deadlock(s3: S3Target, tmp_path: Path) -> None:
    write_files(tmp_path / "src", 1)

    def progress(*_: int) -> None:
        sync.object_exists(s3.bucket, "x")  # would wait on its own thread

    with pytest.raises(sync.RunningLoopError):  # the callback's own error, not a group
        sync.upload_many(tmp_path / "src", s3.bucket, s3.prefix, on_progress=progress)


# --- fork ---------------------------------------------------------------------------------------


def _use_in_child(bucket: str, key: str, parent_loop_thread: int | None) -> None:
    assert sync.object_exists(bucket, key)
    assert sync.list_objects(bucket, key)[0].key == key
    sync.get_s3_client().head_object(Bucket=bucket, Key=key)
    (thread,) = loop_threads()
    assert thread.ident != parent_loop_thread


@fork_with_threads
def test_used_in_a_forked_child(s3: S3Target, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    sync.upload_file(tmp_path / "f", s3.bucket, s3.key("f"))
    parent_client = sync.get_s3_client()
    (parent_thread,) = loop_threads()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            _use_in_child(s3.bucket, s3.key("f"), parent_thread.ident)
            assert sync.get_s3_client() is not parent_client
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's loop thread and client are untouched.
    assert sync.object_exists(s3.bucket, s3.key("f"))
    assert loop_threads() == [parent_thread] and sync.get_s3_client() is parent_client


@fork_with_threads
def test_used_in_a_multiprocessing_fork_child(s3: S3Target, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    sync.upload_file(tmp_path / "f", s3.bucket, s3.key("f"))
    (parent_thread,) = loop_threads()
    context = multiprocessing.get_context("fork")
    child = context.Process(
        target=_use_in_child, args=(s3.bucket, s3.key("f"), parent_thread.ident)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert sync.object_exists(s3.bucket, s3.key("f"))


def python(script: str, *args: str) -> list[str]:
    """A command running ``script`` in a fresh interpreter that fails on ResourceWarning."""
    return [sys.executable, "-W", "error::ResourceWarning", "-c", textwrap.dedent(script), *args]


EXIT_SCRIPT = """
    import os, sys, warnings
    from pathlib import Path
    from mpr_storage import sync
    warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
    bucket, prefix, tmp = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    (tmp / "src").mkdir()
    (tmp / "src" / "a.jpg").write_bytes(b"a")
    sync.upload_many(tmp / "src", bucket, prefix)
    sync.download_many(bucket, sync.list_objects(bucket, prefix), tmp / "dst", prefix=prefix)
    sync.get_s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    pid = os.fork()
    if pid == 0:
        assert sync.object_exists(bucket, prefix + "a.jpg")
        sync.get_s3_client().head_object(Bucket=bucket, Key=prefix + "a.jpg")
        sys.exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    print("ok")
"""


def test_exit_with_the_loop_thread_running_prints_nothing(s3: S3Target, tmp_path: Path) -> None:
    # Parent and forked child both end normally with their loop threads running and their
    # clients open; the exit closes everything without a warning. "localhost" makes the loop
    # resolve names in its default executor, which Python 3.12.0-1 can't shut down at exit the
    # way asyncio.run() does it.
    endpoint = s3.server.endpoint_url.replace("127.0.0.1", "localhost")
    result = subprocess.run(
        python(EXIT_SCRIPT, s3.bucket, s3.prefix, str(tmp_path)),
        env={**os.environ, "S3_ENDPOINT_URL": endpoint},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.stdout, result.stderr) == ("ok\n", "")
    assert result.returncode == 0


# --- Ctrl-C -------------------------------------------------------------------------------------

CTRL_C_SCRIPT = """
    import json, sys, time
    from pathlib import Path
    from mpr_storage import sync
    bucket, prefix, dest = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    keys = sync.list_objects(bucket, prefix)

    def progress(done, total, nbytes):
        if done and not progress.told:
            progress.told = True
            print("started", flush=True)  # the test sends SIGINT now
    progress.told = False

    try:
        sync.download_many(bucket, keys, dest, prefix=prefix, concurrency=4, on_progress=progress)
    except KeyboardInterrupt:
        # Looked at at once: the cleanup is over when KeyboardInterrupt arrives ...
        print(json.dumps(sorted(p.name for p in dest.iterdir())), flush=True)
        time.sleep(0.3)  # ... and the transfer is over, not going on in the background.
        print(json.dumps(sorted(p.name for p in dest.iterdir())), flush=True)
"""


def test_ctrl_c_cancels_a_bulk_download_and_leaves_only_complete_files(
    s3: S3Target, tmp_path: Path
) -> None:
    files = write_files(tmp_path / "src", 300, size=20_000)
    sync.upload_many(tmp_path / "src", s3.bucket, s3.prefix)
    child = subprocess.Popen(
        python(CTRL_C_SCRIPT, s3.bucket, s3.prefix, str(tmp_path / "dst")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "started\n"
        child.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert err == ""
    names, names_later = map(json.loads, out.splitlines())
    assert names == names_later
    assert not [n for n in names if n.endswith(".part")]
    got = files_in(tmp_path / "dst")
    assert set(got) == set(names) - {MANIFEST_NAME}
    assert 0 < len(got) < len(files)  # interrupted midway ...
    assert all(files[name] == data for name, data in got.items())  # ... with only whole files


# --- core.storage ------------------------------------------------------------------------------


def test_core_storage_is_the_documented_surface() -> None:
    import core.storage

    documented = {
        "get_s3_client",
        "list_objects",
        "download_file",
        "download_to_temp",
        "upload_file",
        "get_presigned_url",
        "BUCKET_IN",
        "BUCKET_OUT",
    }
    assert documented <= set(core.storage.__all__)
    assert core.storage.__all__ == sync.__all__
    for name in sync.__all__:
        assert getattr(core.storage, name) is getattr(sync, name), name
    spec = importlib.util.find_spec("core")
    assert spec is not None and spec.origin in (None, "namespace")  # a namespace package
    assert not any(Path(p, "__init__.py").exists() for p in spec.submodule_search_locations or ())
