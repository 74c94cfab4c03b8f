"""``LocalS3Server``: SeaweedFS, or moto as the in-memory fallback, on loopback."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from . import _weed
from ._moto import start_moto
from ._ports import s3_client
from ._seaweedfs import SeaweedFS
from ._weed import LOG_NAME

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

ServerKind = Literal["seaweedfs", "moto"]

_running: set[LocalS3Server] = set()
_OWNER_PID = os.getpid()  # a forked child must not stop (or wait on) its parent's servers


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
        data_dir: Where SeaweedFS keeps its data, log (``weed.log``), its own log files
            (``logs/``) and credentials file; created if missing and kept on stop. ``None``
            uses a private temporary directory that is removed on stop (or, if this process
            is killed, by the next such server). Ignored by moto. SeaweedFS never outlives
            this process: it gets Linux's parent-death signal (a watchdog process elsewhere).
        port: The S3 port; ``0`` picks a free one.
        access_key_id: The access key the server accepts.
        secret_access_key: The secret key the server accepts.
        region: The region clients should sign for.
        startup_timeout: Seconds to wait for the server to answer a signed ``ListBuckets``.
        stop_timeout: Seconds :meth:`stop` waits after SIGTERM before SIGKILL. SeaweedFS 4.48
            takes ~15 s to exit on SIGTERM (its filer waits on open gRPC streams);
            acknowledged writes are on disk either way.
        volume_size_mb: SeaweedFS's volume size (``-master.volumeSizeLimitMB``). It reserves
            seven volumes per bucket, so the default of 64 lets dozens of buckets share a
            disk; a server that takes gigabytes into one bucket wants larger volumes: each
            time seven are full it grows seven more, and the writes arriving meanwhile wait
            (0.3-0.7 s here, every ~450 MB at 64). Ignored by moto.

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
        volume_size_mb: int = 64,
    ) -> None:
        if kind not in ("auto", "seaweedfs", "moto"):
            raise ValueError(f"kind must be 'auto', 'seaweedfs' or 'moto', not {kind!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, not {port}")
        if volume_size_mb < 1:
            raise ValueError(f"volume_size_mb must be at least 1, not {volume_size_mb}")
        self._kind: ServerKind = (
            ("seaweedfs" if _weed.find_weed() else "moto") if kind == "auto" else kind
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
        self._volume_size_mb = volume_size_mb
        self._lock = threading.RLock()
        self._endpoint: str | None = None
        self._moto: ThreadedMotoServer | None = None
        self._weed: SeaweedFS | None = None

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
        weed = self._weed
        process = weed.process if weed is not None else None
        return process.pid if process is not None else None

    @property
    def data_dir(self) -> Path | None:
        """SeaweedFS's data directory: the given one, or the temporary one while it exists.

        ``None`` for moto, and for SeaweedFS without ``data_dir`` when not running.
        """
        weed = self._weed
        return self._given_data_dir or (weed.temp_dir if weed is not None else None)

    @property
    def log_path(self) -> Path | None:
        """SeaweedFS's log (its stdout and stderr), in :attr:`data_dir`; ``None`` without one."""
        data = self.data_dir
        return data / LOG_NAME if data is not None else None

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
                    self._weed = SeaweedFS(
                        data_dir=self._given_data_dir,
                        port=self._port,
                        access_key_id=self.access_key_id,
                        secret_access_key=self.secret_access_key,
                        region=self.region,
                        volume_size_mb=self._volume_size_mb,
                    )
                    self._weed.start(self.startup_timeout)
                    self._endpoint = self._weed.endpoint
                else:
                    self._moto, self._endpoint = start_moto(self._port)
            except BaseException:
                self.stop()
                raise
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
            if self._weed is not None:
                self._weed.stop(self.stop_timeout)
                self._weed = None
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
        client = s3_client(
            self.endpoint_url,
            self.region,
            self.access_key_id,
            self.secret_access_key,
            timeout=30.0,
            attempts=3,
        )
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


@atexit.register
def _stop_all() -> None:
    """Stop the servers a crashed test session or script did not stop."""
    if os.getpid() != _OWNER_PID:
        return
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()
