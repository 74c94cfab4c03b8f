"""Signed S3 requests on one aiohttp session: what the fast transport sends its calls with.

A request is signed in botocore's canonical SigV4 form with a cached signing key; what
botocore does for its users around a request is done here too: its credential chain (re-read
whenever it says they need refreshing), its proxy settings, region redirects remembered per
bucket, and aiohttp's errors translated into ours (:class:`._aiohttp_errors.map_aiohttp_errors`).
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import logging
import re
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from botocore.httpsession import ProxyConfiguration
from botocore.utils import get_environ_proxies
from yarl import URL

from ._aiohttp_errors import map_aiohttp_errors
from ._aiohttp_payload import aiohttp_data, is_large
from ._config import StorageSettings
from ._errors import (
    NO_CREDENTIALS,
    REGION_CODES,
    ConfigError,
    error_for_code,
    request_ids,
    retry_after_seconds,
)
from ._sigv4 import UNSIGNED_PAYLOAD, SigV4
from ._transport import (
    aws_endpoint,
)
from ._xml import (
    error_fields,
)

__all__ = ["SignedRequests", "escape", "query_string"]

_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# botocore's validate_region_name: a region named by an answer never makes another host
_REGION = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_log = logging.getLogger(__name__)


class _Redirected(Exception):
    """The bucket answered from another region (remembered): send the request again."""


class SignedRequests:
    """Signs S3 requests for one store and sends them on one aiohttp session: credentials
    re-read per request, regions remembered per bucket, botocore's proxies, errors translated."""

    def __init__(
        self,
        settings: StorageSettings,
        endpoint_url: str,
        credentials: Any,
        http: aiohttp.ClientSession | None,
    ) -> None:
        self.settings = settings
        self.endpoint_url = endpoint_url
        self._credentials = credentials  # botocore's (refreshable) credentials, or None
        parts = urlsplit(endpoint_url)
        self._http = http
        self._scheme = parts.scheme
        self._host = _signed_host(parts.scheme, parts.hostname or "", parts.port)
        self._base = parts.path.rstrip("/")
        # botocore addresses buckets by path on an IP-address endpoint, whatever the style.
        self._virtual = settings.url_style == "virtual" and not _is_ip(parts.hostname or "")
        self._aws = settings.endpoint_url is None
        self._region = settings.signing_region
        self._regions: dict[str, str] = {}  # bucket -> its region, learnt from redirects
        self._signers: dict[str, SigV4] = {}  # region -> signer of the current credentials
        self._clock_offset = 0.0
        self._proxies: dict[str, tuple[str | None, Mapping[str, str]]] = {}

    # --- requests -------------------------------------------------------------------------

    async def _signer(self, region: str, where: tuple[str, str | None, str | None]) -> SigV4 | None:
        if self._credentials is None:
            if self.settings.anonymous:
                return None  # a public bucket: unsigned requests
            raise ConfigError(NO_CREDENTIALS, operation=where[0], bucket=where[1], key=where[2])
        # Cheap for static credentials; refreshable ones are re-read when botocore says so.
        frozen = await self._credentials.get_frozen_credentials()
        signer = self._signers.get(region)
        if (
            signer is None
            or signer.credentials != frozen
            or signer.clock_offset != self._clock_offset
        ):
            signer = self._signers[region] = SigV4(frozen, region, clock_offset=self._clock_offset)
        return signer

    def _locate(self, bucket: str) -> tuple[str, str]:
        """``(host, path prefix)`` of the bucket: virtual-host style where configured and the
        name allows it; on AWS, the regional endpoint of a bucket that redirected us."""
        host = self._host
        region = self._regions.get(bucket)
        if self._aws and region is not None:
            host = urlsplit(aws_endpoint(region)).netloc
        if not bucket:
            return host, f"{self._base}/"
        if self._virtual_host(bucket):
            return f"{bucket}.{host}", f"{self._base}/"
        return host, f"{self._base}/{bucket}/"

    def _virtual_host(self, bucket: str) -> bool:
        """Whether the bucket is addressed as a host name (virtual style, a DNS-safe name)."""
        return self._virtual and _DNS_BUCKET.match(bucket) is not None

    def _request(
        self,
        method: str,
        bucket: str,
        key: str,
        query: str,
        payload_hash: str,
        extra: dict[str, str] | None = None,
        *,
        signer: SigV4 | None,
    ) -> tuple[URL, dict[str, str]]:
        """The URL and signed headers of one request; ``key`` is percent-encoded exactly as
        it is signed, and ``query`` must be canonical (encoded, sorted)."""
        host, base = self._locate(bucket)
        path = base + quote(key, safe="/~")
        url = f"{self._scheme}://{host}{path}" + (f"?{query}" if query else "")
        if signer is None:
            return URL(url, encoded=True), dict(extra or {})
        return URL(url, encoded=True), signer.headers(
            method, host, path, query, payload_hash, extra
        )

    async def _open(
        self, exchange: Exchange
    ) -> tuple[str, AbstractAsyncContextManager[aiohttp.ClientResponse]]:
        """``(region, request)`` of one attempt: signed for the bucket's region as known now (a
        redirect may have taught it), not sent yet (``async with`` it). The signed headers
        (``Authorization``, ``x-amz-security-token``) stay in this frame, which has returned
        before anything can fail: no traceback holds them in its locals."""
        e = exchange
        region = self._regions.get(e._bucket, self._region)
        signer = await self._signer(region, e._where)
        url, headers = self._request(
            e._method, e._bucket, e._key, e._query, e._payload_hash, e._extra, signer=signer
        )
        proxy, proxy_headers = self._proxy(url)
        assert self._http is not None
        return region, self._http.request(
            e._method,
            url,
            headers=headers,
            data=aiohttp_data(e._data),
            # as botocore does for bodies over 1 MiB: a refusal (a redirect, a bad
            # signature) comes before the body is sent
            expect100=is_large(e._data),
            proxy=proxy,
            proxy_headers=proxy_headers or None,
            read_bufsize=e._read_bufsize,
            allow_redirects=False,  # aiohttp's default follows them, to any host
        )

    def _proxy(self, url: URL) -> tuple[str | None, Mapping[str, str]]:
        """botocore's proxy for this host (``HTTP(S)_PROXY``/``NO_PROXY``), looked up once."""
        origin = f"{url.scheme}://{url.raw_authority}"
        found = self._proxies.get(origin)
        if found is None:
            config = ProxyConfiguration(proxies=get_environ_proxies(origin))
            proxy = config.proxy_url_for(origin)
            found = self._proxies[origin] = (
                proxy,
                config.proxy_headers_for(origin) if proxy else {},
            )
        return found

    def send(
        self,
        method: str,
        bucket: str,
        key: str = "",
        *,
        operation: str,
        query: str = "",
        extra: dict[str, str] | None = None,
        data: Any = None,
        payload_hash: str = UNSIGNED_PAYLOAD,
        ok: tuple[int, ...] = (200,),
        label: str | None = None,
        read_bufsize: int | None = None,
    ) -> Exchange:
        """One request: ``async with wire.send(...) as response`` (see :class:`Exchange`);
        ``read_bufsize``: aiohttp's, for this response (``None``: the session's)."""
        where = (operation, bucket or None, label or key or None)  # label: a listing's prefix
        return Exchange(
            self, method, bucket, key, where, query, extra, data, payload_hash, ok, read_bufsize
        )

    def _error(
        self,
        response: aiohttp.ClientResponse,
        body: bytes,
        region: str,
        where: tuple[str, str | None, str | None],
    ) -> Exception:
        status = response.status
        code, message, body_region = error_fields(body) if body else (None, None, None)
        operation, bucket, key = where
        headers = response.headers
        if code is None:
            code = {404: "NoSuchKey" if key else "NoSuchBucket", 301: "PermanentRedirect"}.get(
                status, str(status)
            )
        if code in REGION_CODES or status in (301, 302, 307, 400) and bucket is not None:
            found = headers.get("x-amz-bucket-region") or body_region
            if bucket is not None and found and found != region and _REGION.match(found):
                self._regions[bucket] = found  # remembered, as botocore's redirector does
                _log.info(
                    "%s s3://%s: the bucket is in region %s, not %s: signing for it (set "
                    "AWS_REGION=%s to save the redirect)",
                    operation, bucket, found, region, found,
                )  # fmt: skip
                return _Redirected()
        request_id, host_id = request_ids(headers)
        if code == "RequestTimeTooSkewed":
            served = headers.get("Date")
            with contextlib.suppress(TypeError, ValueError):
                if served:
                    when = email.utils.parsedate_to_datetime(served).timestamp()
                    self._clock_offset = when - time.time()
        return error_for_code(
            code,
            message or f"HTTP {status}",
            operation=operation,
            bucket=bucket,
            key=key,
            status=status,
            retry_after=retry_after_seconds(headers.get("Retry-After")),
            location=headers.get("Location"),
            request_id=request_id,
            host_id=host_id,
        )


class Exchange:
    """``async with`` one request: sends it (once more, at once, after a region redirect)
    and yields the response if its status is in ``ok``; other answers raise our error for
    them, and errors raised while the body is read are translated too (:class:`map_aiohttp_errors`).
    A class, not a generator: it is entered once per object of a bulk transfer."""

    __slots__ = (
        "_wire",
        "_method",
        "_bucket",
        "_key",
        "_where",
        "_query",
        "_extra",
        "_data",
        "_payload_hash",
        "_ok",
        "_read_bufsize",
        "_errors",
        "_sent",
    )

    def __init__(
        self,
        wire: SignedRequests,
        method: str,
        bucket: str,
        key: str,
        where: tuple[str, str | None, str | None],
        query: str,
        extra: dict[str, str] | None,
        data: Any,
        payload_hash: str,
        ok: tuple[int, ...],
        read_bufsize: int | None,
    ) -> None:
        self._wire = wire
        self._method = method
        self._bucket = bucket
        self._key = key
        self._where = where
        self._query = query
        self._extra = extra
        self._data = data
        self._payload_hash = payload_hash
        self._ok = ok
        self._read_bufsize = read_bufsize
        self._errors = map_aiohttp_errors(*where, endpoint=wire.endpoint_url)
        self._sent: Any = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        wire = self._wire
        for _ in range(2):
            region, sent = await wire._open(self)
            started = time.monotonic() if _log.isEnabledFor(logging.DEBUG) else None
            with self._errors:
                response = await sent.__aenter__()
                if started is not None:
                    self._logged(response.status, started)
                if response.status in self._ok:
                    self._sent = sent
                    return response
                try:
                    body = await response.read()
                finally:
                    await sent.__aexit__(None, None, None)
            error = wire._error(response, body, region, self._where)
            if not isinstance(error, _Redirected):
                raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def _logged(self, status: int, started: float) -> None:
        """The DEBUG line of one request: method, object, status and time (never a header
        nor the query string)."""
        operation, bucket, key = self._where
        _log.debug(
            "%s %s s3://%s/%s: HTTP %d in %.1f ms",
            operation, self._method, bucket or "", key or "", status,
            (time.monotonic() - started) * 1000,
        )  # fmt: skip

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._errors:
            await self._sent.__aexit__(exc_type, exc, tb)
        self._errors.__exit__(exc_type, exc, tb)  # raises ours for a failure while reading


def query_string(params: Mapping[str, str]) -> str:
    """A canonical query string: sorted, every value percent-encoded as SigV4 wants."""
    return "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def _signed_host(scheme: str, hostname: str, port: int | None) -> str:
    """The Host header as botocore signs it: lowercase, IPv6 in brackets, no default port."""
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    return host
