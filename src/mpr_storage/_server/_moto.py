"""moto's S3 server in a thread: the in-memory fallback when SeaweedFS is not installed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._ports import HOST, port_is_free

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

    from moto.server import ThreadedMotoServer


def start_moto(port: int) -> tuple[ThreadedMotoServer, str]:
    """Start moto's server on ``port`` (0: any); ``(server, endpoint_url)``."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise RuntimeError(
            "neither SeaweedFS nor moto's server is installed: "
            "pip install 'mpr-storage[server]' (or 'moto[server]')"
        ) from exc
    if port and not port_is_free(port):
        raise RuntimeError(f"cannot start moto: {HOST}:{port} is already in use")
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    _quieten_moto(server)
    host, bound = server.get_host_and_port()
    return server, f"http://{host}:{bound}"


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
