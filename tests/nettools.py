"""Network situations for the tests: a real forward proxy, a port nobody listens on, a server
that accepts connections and resets them."""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_FORWARDED = re.compile(r"^http \S+ -> \S+")


# pproxy installs uvloop's loop policy when it can import uvloop (a test dependency, for the
# uvloop run), and then fails to start ("no current event loop"): run it on asyncio's loop.
_PPROXY = (
    "import runpy, sys; sys.modules['uvloop'] = None; "
    "sys.argv[0] = 'pproxy'; runpy.run_module('pproxy', run_name='__main__')"
)


class ForwardProxy:
    """pproxy (a real HTTP forward proxy) in its own process on 127.0.0.1. It logs one line per
    client connection it forwards (``http <client> -> <host:port>``); :meth:`count` reads it.

    (proxy.py would log every request, but it stalls botocore's ``Expect: 100-continue`` PUTs.)
    pproxy 2.7 drops a plain-HTTP connection when a body chunk holds a CRLF after bytes that
    are not UTF-8 (it tries to parse the chunk as a new request): send such tests bodies
    without ``\\r``. CONNECT tunnels (HTTPS) are relayed untouched.
    """

    def __init__(self, workdir: Path) -> None:
        self._dir = workdir
        self._log = workdir / "proxy.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._output: BinaryIO | None = None
        self._start = 0
        self.url = ""

    def __enter__(self) -> ForwardProxy:
        self._dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k.upper() not in _PROXY_VARIABLES}
        port = closed_port()
        self._output = self._log.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PPROXY, "-l", f"http://127.0.0.1:{port}", "-v"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while b"Serving on" not in self._log.read_bytes():
            if self._process.poll() is not None or time.monotonic() > deadline:
                text = self._log.read_text(errors="replace")[-2000:]
                self.__exit__(None, None, None)
                raise RuntimeError(f"the forward proxy did not start: {text}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port}"
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

    def _lines(self) -> list[str]:
        return self._log.read_text(errors="replace").splitlines()

    def count(self) -> int:
        """Client connections forwarded since the last :meth:`reset` (pproxy relays every
        request of a keep-alive connection on one upstream connection)."""
        return sum(1 for line in self._lines()[self._start :] if _FORWARDED.match(line))

    def reset(self) -> None:
        self._start = len(self._lines())


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
            except TimeoutError:
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
