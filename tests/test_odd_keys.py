"""Keys that look like our bookkeeping, keys ending in '/', and the temp files of killed runs:
nothing is silently lost or overwritten, and nothing but our own leftovers is removed."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import S3Target
from mpr_storage import LocalFileError, Storage
from mpr_storage._files import _PLACE, temp_path_for
from mpr_storage._leftovers import remove_stale_temps
from mpr_storage._manifest import MANIFEST_NAME
from test_transfer import leftovers

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
DAY = 24 * 3600


async def put(s3: S3Target, objects: dict[str, bytes]) -> None:
    async with Storage(s3.settings()) as st:
        client = await st.client()
        for key, body in objects.items():
            await client.put_object(Bucket=s3.bucket, Key=s3.key(key), Body=body)


def manifest_entries(root: Path) -> dict[str, object]:
    data = json.loads((root / MANIFEST_NAME).read_bytes())  # still our manifest, not user data
    files: dict[str, object] = data["files"]
    return files


# --- item 4: a key named like the manifest ------------------------------------------------


@PATHS
@pytest.mark.parametrize("listed", [True, False], ids=["listed", "by-name"])
async def test_a_key_named_like_the_manifest_fails_instead_of_being_overwritten(
    s3: S3Target, tmp_path: Path, fast_path: bool, listed: bool
) -> None:
    await put(
        s3,
        {"a.bin": b"a" * 10, MANIFEST_NAME: b"user data " * 3, f"sub/{MANIFEST_NAME}": b"x" * 5},
    )
    reserved = [s3.key(MANIFEST_NAME), s3.key(f"sub/{MANIFEST_NAME}")]
    dest = tmp_path / "dst"
    async with Storage(s3.settings(fast_path=fast_path)) as st:
        keys = st.iter_objects(s3.bucket, s3.prefix) if listed else [s3.key("a.bin"), *reserved]
        report = await st.download_many(
            s3.bucket, keys, dest, prefix=s3.prefix, raise_on_error=False
        )
        again = await st.download_many(
            s3.bucket, [s3.key("a.bin"), *reserved], dest, prefix=s3.prefix, raise_on_error=False
        )
    assert report.done == [s3.key("a.bin")] and sorted(report.failed) == sorted(reserved)
    for got in (report, again):
        for key in reserved:
            err = got.failed[key]
            assert isinstance(err, LocalFileError) and "reserved" in str(err)
            assert MANIFEST_NAME in str(err) and key in str(err)
    assert again.skipped == [s3.key("a.bin")]
    assert set(manifest_entries(dest)) == {"a.bin"}  # the manifest survived both runs
    assert not (dest / "sub" / MANIFEST_NAME).exists()
    assert (dest / "a.bin").read_bytes() == b"a" * 10


# --- item 5: keys ending in '/' -----------------------------------------------------------


@PATHS
async def test_a_non_empty_key_ending_in_a_slash_fails_and_an_empty_marker_is_skipped(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    await put(s3, {"dir/": b"24 bytes of real content", "empty/": b"", "other/f.bin": b"f" * 8})
    full, empty, plain = s3.key("dir/"), s3.key("empty/"), s3.key("other/f.bin")
    async with Storage(s3.settings(fast_path=fast_path)) as st:
        by_name = await st.download_many(
            s3.bucket, [full, empty, plain], tmp_path / "a", prefix=s3.prefix, raise_on_error=False
        )
        listed = await st.download_many(
            s3.bucket,
            st.iter_objects(s3.bucket, s3.prefix),
            tmp_path / "b",
            prefix=s3.prefix,
            raise_on_error=False,
        )
    for report in (by_name, listed):
        assert report.done == [plain]
        assert report.skipped == [empty]  # an empty directory marker
        assert list(report.failed) == [full]  # 24 bytes are never silently dropped
        err = report.failed[full]
        assert isinstance(err, LocalFileError)
        assert "ends in '/'" in str(err) and full in str(err)
        # SeaweedFS answers 0 bytes for it, with the MD5 of its content as the ETag
        assert "24 bytes" in str(err) or "has content" in str(err)


# --- item 6: temp files of killed runs ----------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def aged(path: Path, seconds: float) -> Path:
    path.touch()
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_only_our_own_temp_files_of_gone_processes_are_removed(tmp_path: Path) -> None:
    dead, alive = dead_pid(), os.getppid()
    ours_dead = aged(tmp_path / f".frame_1.jpg.{dead:x}-{_PLACE}abc1230.part", 60)
    ours_legacy = aged(tmp_path / f".frame_2.jpg.{dead:x}abc1231.part", 2 * DAY)  # older name
    keep = {
        "live owner": aged(tmp_path / f".frame_3.jpg.{alive:x}-{_PLACE}abc1232.part", 60),
        "this run's": aged(tmp_path / f".frame_4.jpg.{os.getpid():x}-{_PLACE}abc1233.part", 60),
        "newer than the run": aged(tmp_path / f".frame_5.jpg.{dead:x}-{_PLACE}abc1234.part", -60),
        "legacy, recent": aged(tmp_path / f".frame_6.jpg.{dead:x}abc1235.part", 60),
        "another host's": aged(tmp_path / f".frame_12.jpg.{dead:x}-0f0f0fabc1230.part", 60),
        "no leading dot": aged(tmp_path / f"frame_7.jpg.{dead:x}-{_PLACE}abc1236.part", 2 * DAY),
        "not hex": aged(tmp_path / ".frame_8.jpg.xyz-zzzzzzz.part", 2 * DAY),
        "no pid part": aged(tmp_path / ".notes.part", 2 * DAY),
        "other suffix": aged(tmp_path / f".frame_9.jpg.{dead:x}-{_PLACE}abc1237.tmp", 2 * DAY),
        "a user's object": aged(tmp_path / f".clip.{dead:x}-{_PLACE}abc1238.part", 2 * DAY),
        "plain file": aged(tmp_path / "frame_10.jpg", 2 * DAY),
    }
    directory = tmp_path / f".frame_11.jpg.{dead:x}-{_PLACE}abc1239.part"
    directory.mkdir()
    seen: set[str] = set()
    removed = remove_stale_temps(
        tmp_path, before=time.time(), keep=lambda name: name.startswith(".clip."), seen=seen
    )
    assert removed == 2
    assert seen == {path.name for path in (ours_dead, ours_legacy, directory, *keep.values())}
    assert not ours_dead.exists() and not ours_legacy.exists()
    assert [why for why, path in keep.items() if not path.exists()] == []
    assert directory.is_dir()


def test_temp_names_carry_the_pid_the_sweep_reads(tmp_path: Path) -> None:
    fd, name = temp_path_for(tmp_path / "x.png")
    os.close(fd)
    assert Path(name).name.startswith(f".x.png.{os.getpid():x}-{_PLACE}")
    assert remove_stale_temps(tmp_path, before=time.time() + 10, keep=lambda n: False) == 0


_KILLED_RUN = """
import asyncio, sys
from mpr_storage import Storage, StorageSettings

async def main():
    async with Storage(StorageSettings.from_env()) as st:
        await st.download_many("b", ["clip/big.bin"], sys.argv[1])

asyncio.run(main())
"""


class _Dribble(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a 64 MiB body that dribbles until the test ends."""

    stop = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(64 * 1024 * 1024))
        self.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
        self.end_headers()
        try:
            while not self.stop.wait(0.05):
                self.wfile.write(b"\0" * 65536)
                self.wfile.flush()
        except OSError:
            return

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def dribbling() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Dribble)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _Dribble.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
        _Dribble.stop.clear()


async def test_a_rerun_removes_the_temp_file_of_a_sigkilled_run(
    s3: S3Target, tmp_path: Path, dribbling: str
) -> None:
    body = b"rerun " * 1000
    await put(s3, {"clip/big.bin": body})
    key, dest = s3.key("clip/big.bin"), tmp_path / "dst"
    (dest / "clip").mkdir(parents=True)
    bystander = aged(dest / "clip" / ".keep.part", 2 * DAY)  # not our naming: stays
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "S3_ENDPOINT_URL": dribbling,
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "S3_MAX_ATTEMPTS": "1",
    }
    with subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(dest)], env=env) as child:  # noqa: ASYNC220
        try:
            for _ in range(600):  # until the run is mid-body (bounded: 30 s)
                if any(p.stat().st_size for p in leftovers(dest) if p != bystander):
                    break
                assert child.poll() is None
                time.sleep(0.05)
        finally:
            child.kill()  # SIGKILL: no cleanup runs
            child.wait()
    stale = [p for p in leftovers(dest) if p != bystander]
    assert len(stale) == 1 and stale[0].name.startswith(f".big.bin.{child.pid:x}-{_PLACE}")
    async with Storage(s3.settings()) as st:
        report = await st.download_many(s3.bucket, [key], dest, prefix=s3.prefix)
    assert report.done == [key] and (dest / "clip" / "big.bin").read_bytes() == body
    assert leftovers(dest) == [bystander]
