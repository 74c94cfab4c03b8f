"""Free loopback ports for the local servers (outside the kernel's ephemeral range), and a
botocore client for them."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
_ports_lock = threading.Lock()
_recent_ports: dict[int, float] = {}
# Not the global `random`: test plugins seed it identically in parallel workers.
_rng = random.Random(os.urandom(16))


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


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_ports(count: int) -> list[int]:
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
            if port not in ports and port not in _recent_ports and port_is_free(port):
                ports.append(port)
                if len(ports) == count:
                    break
        else:
            raise RuntimeError(f"found no {count} free ports on {HOST} in {low}..{high}")
        for port in ports:
            _recent_ports[port] = now
    return ports


def s3_client(
    endpoint_url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    *,
    timeout: float,
    attempts: int,
) -> Any:
    """A botocore S3 client for a local server (path style, checksums only when required)."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session()
    return session.create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
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
