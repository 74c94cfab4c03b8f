"""Network situations for the tests: a real forward proxy, a port nobody listens on, a server
that accepts connections and resets them."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

_HERE = Path(__file__).resolve().parent


class ForwardProxy:
    """proxy.py (a real HTTP forward proxy) in its own process on 127.0.0.1; every request it
    handles is logged by ``forward_proxy_plugin.CountRequests``."""

    def __init__(self, workdir: Path) -> None:
        self._dir = workdir
        self._log = workdir / "requests.log"
        self._port_file = workdir / "port"
        self._process: subprocess.Popen[bytes] | None = None
        self._output = None
        self.url = ""

    def __enter__(self) -> ForwardProxy:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._log.write_text("")
        env = {
            **os.environ,
            "FORWARD_PROXY_LOG": str(self._log),
            "PYTHONPATH": os.pathsep.join([str(_HERE), os.environ.get("PYTHONPATH", "")]),
        }
        for name in list(env):
            if name.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
                del env[name]  # the proxy itself connects directly
        self._output = (self._dir / "proxy.out").open("wb")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy",
                "--hostname",
                "127.0.0.1",
                "--port",
                "0",
                "--port-file",
                str(self._port_file),
                "--num-acceptors",
                "1",
                "--num-workers",
                "1",
                "--plugins",
                "forward_proxy_plugin.CountRequests",
            ],
            env=env,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            cwd=self._dir,
        )
        deadline = time.monotonic() + 30
        while not self._port_file.exists() or not self._port_file.read_text().strip():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the forward proxy did not start: {self._output_text()}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self._port_file.read_text().strip()}"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def _output_text(self) -> str:
        path = self._dir / "proxy.out"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request the proxy handled, in order."""
        lines = self._log.read_text().splitlines()
        return [(m, p) for m, _, p in (line.partition(" ") for line in lines)]

    def count(self, method: str | None = None) -> int:
        return sum(1 for m, _ in self.requests if method is None or m == method)

    def reset(self) -> None:
        self._log.write_text("")


def closed_port() -> int:
    """A loopback port with no listener (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class ResetServer:
    """Accepts connections on 127.0.0.1, reads the request, and resets the connection."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ResetServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                except OSError:
                    pass
                # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
