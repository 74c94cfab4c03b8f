"""A loopback HTTP proxy in front of a test S3 server: counts requests and injects faults.

It runs its own event loop in a thread, so sync tests, async tests and the sync shim's
private loop can all talk through it. The Host header is forwarded unchanged: the client
signed for the proxy's host, and the server checks the signature against the Host it gets.
"""

from __future__ import annotations

import asyncio
import io
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

import aiohttp
from aiohttp import web
from yarl import URL

_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "content-length",
}
FaultKind = Literal["fail", "cut", "stall", "reset"]
Target = Literal["object", "list", "page2", "any"]
"""Which requests a fault hits: object requests, LIST requests, LIST requests that continue a
listing (they carry a continuation token), or any request."""


@dataclass(frozen=True)
class Seen:
    """One request as the proxy saw it (``path`` is the raw, percent-encoded path).

    ``at`` is when it arrived (``time.monotonic()``); ``headers`` are the request's headers
    (lowercase names)."""

    method: str
    path: str
    query: str
    status: int
    at: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)
    peer: str = ""
    """The client's ``host:port``: requests with the same peer came on one connection."""
    sent: int = 0
    """The bytes of the answer's body sent to the client (up to the cut, for a cut one)."""

    @property
    def is_object(self) -> bool:
        """A request for one object (``/bucket/key``), not a bucket-level call like LIST."""
        return "/" in self.path.strip("/")

    @property
    def is_list(self) -> bool:
        """A ListObjects(V2) request (a GET on the bucket with ``list-type`` or ``prefix``)."""
        return self.method == "GET" and not self.is_object and _is_listing(self.query)

    @property
    def continues(self) -> bool:
        """A LIST request for a page after the first one."""
        return self.is_list and "continuation-token=" in self.query


@dataclass
class _Rule:
    kind: FaultKind
    remaining: int
    method: str | None
    status: int = 503
    code: str = "SlowDown"
    after_bytes: int = 0
    seconds: float = 0.0
    target: Target = "object"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    range_from: int | None = None  # only requests whose Range starts at this byte

    def hits(self, method: str, path: str, query: str, range_header: str = "") -> bool:
        if self.remaining <= 0 or self.method not in (None, method):
            return False
        if self.range_from is not None and not range_header.startswith(f"bytes={self.range_from}-"):
            return False
        is_object = "/" in path.strip("/")
        listing = method == "GET" and not is_object and _is_listing(query)
        if self.target == "object":
            return is_object
        if self.target == "list":
            return listing
        if self.target == "page2":
            return listing and "continuation-token=" in query
        return True


def _is_listing(query: str) -> bool:
    names = {part.partition("=")[0] for part in query.split("&")}
    return bool(names & {"list-type", "prefix", "delimiter", "marker"}) or query == ""


class FaultProxy:
    """``with FaultProxy(upstream_url) as proxy:`` then point the client at ``proxy.url``."""

    def __init__(self, upstream: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = ""
        self._ssl = ssl_context
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._rules: list[_Rule] = []
        self._in_flight = 0
        self.max_in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing: asyncio.Event | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_closed():
            self._loop.close()

    async def _start(self) -> None:
        self._closing = asyncio.Event()
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
        server = web.Server(self._handle)
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"{'https' if self._ssl else 'http'}://{host}:{port}"

    async def _stop(self) -> None:
        assert self._closing is not None and self._runner is not None
        self._closing.set()
        await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        # Handlers the server gave up on may still be unwinding (closing their connections to
        # the server): let them end here, or their sockets are collected later, unclosed, in
        # whatever test runs then.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await asyncio.sleep(0)
        if self._ssl is not None:
            # Connections whose TLS handshake the client refused are still closing: let the
            # loop finish closing their sockets before it stops, or they are collected later,
            # unclosed, in whatever test runs then.
            await asyncio.sleep(0.2)

    # --- what tests use -------------------------------------------------------------------

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def sent(self) -> int:
        """The body bytes of every answer sent to the client so far."""
        return sum(s.sent for s in self.requests)

    def count(
        self, method: str | None = None, *, objects_only: bool = False, lists_only: bool = False
    ) -> int:
        return sum(
            1
            for s in self.requests
            if (method is None or s.method == method)
            and (not objects_only or s.is_object)
            and (not lists_only or s.is_list)
        )

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
            self._rules.clear()
            self.max_in_flight = 0

    def fail(
        self,
        n: int,
        *,
        status: int = 503,
        code: str = "SlowDown",
        method: str | None = "GET",
        target: Target = "object",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with an S3 error, without the server.

        ``body`` replaces the XML error document (e.g. an HTML page of a load balancer, or
        ``b""``); ``headers`` are added to the answer (e.g. ``Retry-After``)."""
        rule = _Rule("fail", n, method, status=status, code=code, target=target, body=body)
        rule.headers = dict(headers or {})
        self._add(rule)

    def cut(
        self,
        n: int,
        *,
        after_bytes: int = 1000,
        method: str = "GET",
        range_from: int | None = None,
    ) -> None:
        """Send headers and ``after_bytes`` of the body of the next ``n`` responses, then abort;
        ``range_from``: only those answering a Range request that starts at this byte."""
        self._add(_Rule("cut", n, method, after_bytes=after_bytes, range_from=range_from))

    def stall(self, n: int, *, seconds: float = 30.0, method: str = "GET") -> None:
        """Hold the next ``n`` responses for ``seconds`` (or until the proxy closes)."""
        self._add(_Rule("stall", n, method, seconds=seconds))

    def reset_connections(self, n: int, *, method: str = "GET") -> None:
        """Close the connection of the next ``n`` requests without any response."""
        self._add(_Rule("reset", n, method))

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _take(self, method: str, path: str, query: str, range_header: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.hits(method, path, query, range_header):
                    rule.remaining -= 1
                    return rule
        return None

    def _record(self, request: web.BaseRequest, status: int, at: float, sent: int = 0) -> None:
        raw = request.raw_path
        path, _, query = raw.partition("?")
        headers = {k.lower(): v for k, v in request.headers.items()}
        # aiohttp caches the peer when the request arrives: by the answer, the client may have
        # gone (request.transport is then None).
        address = request.protocol.peername
        peer = f"{address[0]}:{address[1]}" if address else ""
        with self._lock:
            self._seen.append(Seen(request.method, path, query, status, at, headers, peer, sent))

    # --- hooks for subclasses that emulate a provider (tests/quirks.py) -----------------

    async def intercept(self, request: web.BaseRequest, body: bytes) -> web.Response | None:
        """Answer ``request`` without the server (return a response), or ``None`` to forward."""
        return None

    def upstream_headers(
        self, request: web.BaseRequest, body: bytes, headers: dict[str, str]
    ) -> dict[str, str]:
        """The headers sent to the server (e.g. re-signed); default: the client's, unchanged."""
        return headers

    def upstream_body(self, request: web.BaseRequest, body: bytes) -> bytes:
        """The body sent to the server (e.g. damaged on the way); default: the client's."""
        return body

    def rewrite(
        self, request: web.BaseRequest, status: int, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Change the server's answer before the client gets it; default: unchanged."""
        return status, headers, body

    # --- the proxy --------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._forward(request)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _forward(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._session is not None and self._closing is not None
        arrived = time.monotonic()
        path, _, query = request.raw_path.partition("?")
        rule = self._take(request.method, path, query, request.headers.get("Range", ""))
        if request.headers.get("Expect", "").lower() == "100-continue":
            # botocore asks before sending a PUT body; the low-level server doesn't answer it.
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await request.content.read()  # no client_max_size: parts are 5 MiB+
        if rule is not None and rule.kind == "fail":
            self._record(request, rule.status, arrived)
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{rule.code}</Code>'
                f"<Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>"
            ).encode()
            if rule.body is not None:
                xml = rule.body
            if request.method == "HEAD":
                xml = b""
            kind = "text/html" if rule.body else "application/xml"
            return web.Response(
                status=rule.status,
                body=xml,
                headers={**rule.headers, **({"Content-Type": kind} if xml else {})},
            )
        answer = await self.intercept(request, body)
        if answer is not None:
            self._record(request, answer.status, arrived)
            return answer
        if rule is not None and rule.kind == "reset":
            self._record(request, 0, arrived)
            return _abort(request)
        if rule is not None and rule.kind == "stall":
            try:
                await asyncio.wait_for(self._closing.wait(), rule.seconds)
            except asyncio.TimeoutError:
                pass
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers = self.upstream_headers(request, body, headers)
        body = self.upstream_body(request, body)
        async with self._session.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),
            headers=headers,
            data=io.BytesIO(body) if body else None,  # raw bytes over 1 MiB warn
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            status = upstream.status
        status, out_headers, data = self.rewrite(request, status, out_headers, data)
        cut = rule is not None and rule.kind == "cut"
        sent = 0 if request.method == "HEAD" else len(data)
        self._record(request, status, arrived, min(sent, rule.after_bytes) if cut else sent)
        if rule is not None and rule.kind == "cut":
            response = web.StreamResponse(status=status, headers=out_headers)
            response.content_length = len(data)
            await response.prepare(request)
            await response.write(data[: rule.after_bytes])
            return _abort(request, response)
        if request.method == "HEAD":
            # Keep the server's Content-Length: a HEAD answer describes the object, no body.
            response = web.StreamResponse(status=status, headers=out_headers)
            length = upstream.headers.get("Content-Length")
            if length is not None:
                response.headers["Content-Length"] = length
            await response.prepare(request)
            await response.write_eof()
            return response
        return web.Response(status=status, headers=out_headers, body=data)


def _abort(
    request: web.BaseRequest, response: web.StreamResponse | None = None
) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.abort()
    return response if response is not None else web.Response(status=500)
