"""The bulk hot path: object GET/PUT/LIST signed with SigV4 and sent with aiohttp.

botocore's per-request pipeline (endpoint rules, event hooks, request objects, response
parsing) costs ~1 ms of CPU per request, and its signer alone ~50 us. For the many small
requests of a frame-cache transfer we keep botocore's credentials and configuration, sign in
its canonical form with a cached signing key, and send the requests on one aiohttp session
whose pool is sized to the concurrency.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

import aiohttp
from botocore.credentials import ReadOnlyCredentials
from yarl import URL

from ._client import BaseStorage
from ._errors import StorageError, error_for_code, map_errors

__all__ = ["UNSIGNED_PAYLOAD", "FastS3", "SigV4"]

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]{0,500})</Message>")
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class SigV4:
    """S3 SigV4 header signing in botocore's canonical form (``S3SigV4Auth``: path signed as
    sent, headers trimmed and sorted), without its per-request objects: the timestamp is built
    once a second and the signing key once a day. tests/test_http.py checks every signature
    against botocore's signer."""

    def __init__(self, credentials: ReadOnlyCredentials, region: str) -> None:
        self._access_key = credentials.access_key
        self._secret = credentials.secret_key
        self._token = credentials.token
        self._region = region
        self._second = -1
        self._amz_date = ""
        self._day = ""
        self._key = b""

    def _clock(self) -> tuple[str, str]:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            day = self._amz_date[:8]
            if day != self._day:
                key = hmac.digest(f"AWS4{self._secret}".encode(), day.encode(), "sha256")
                for part in (self._region, "s3", "aws4_request"):
                    key = hmac.digest(key, part.encode(), "sha256")
                self._day, self._key = day, key
        return self._amz_date, self._day

    def headers(
        self,
        method: str,
        host: str,
        path: str,
        query: str,
        payload_hash: str,
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """The request's headers: ``extra``, ``Host``, ``X-Amz-*`` and ``Authorization``.

        ``path`` and ``query`` as sent: percent-encoded, query parameters sorted."""
        amz_date, day = self._clock()
        signed = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        if self._token:
            signed["x-amz-security-token"] = self._token
        if extra:
            for name, value in extra.items():
                signed[name.lower()] = " ".join(value.split())
        names = sorted(signed)
        canonical = "\n".join(
            [method, path, query, *[f"{n}:{signed[n]}" for n in names], "", ";".join(names)]
        )
        scope = f"{day}/{self._region}/s3/aws4_request"
        digest = hashlib.sha256(f"{canonical}\n{payload_hash}".encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
        signature = hmac.digest(self._key, to_sign.encode(), "sha256").hex()
        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return signed


class FastS3:
    """Signs and sends single-object requests for one storage; create with :meth:`open`."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        endpoint_url: str,
        region: str,
        credentials: ReadOnlyCredentials,
        *,
        virtual_host: bool,
    ) -> None:
        parts = urlsplit(endpoint_url)
        self._http = http
        self._scheme = parts.scheme
        self._host = _signed_host(parts.scheme, parts.hostname or "", parts.port)
        self._base = parts.path.rstrip("/")
        self._virtual = virtual_host
        self._signer = SigV4(credentials, region)

    @classmethod
    async def open(cls, storage: BaseStorage) -> FastS3 | None:
        """The fast path for ``storage``, or ``None`` where it can't be used (anonymous
        access: requests must then go through botocore)."""
        client = await storage.client()
        creds = await storage.credentials()
        if creds is None:
            return None
        settings = storage.settings
        return cls(
            await storage.http_session(),
            client.meta.endpoint_url,
            settings.signing_region,
            creds,
            virtual_host=settings.url_style == "virtual",
        )

    def _bucket(self, bucket: str) -> tuple[str, str]:
        """``(host, path prefix)`` of the bucket: virtual-host style where configured and the
        name allows it."""
        if self._virtual and _DNS_BUCKET.match(bucket):
            return f"{bucket}.{self._host}", f"{self._base}/"
        return self._host, f"{self._base}/{bucket}/"

    def _request(
        self,
        method: str,
        bucket: str,
        key: str,
        query: str,
        payload_hash: str,
        headers: dict[str, str] | None = None,
    ) -> tuple[URL, dict[str, str]]:
        """The URL and signed headers of one request; ``key`` is percent-encoded exactly as
        it is signed, and ``query`` must be canonical (encoded, sorted)."""
        host, base = self._bucket(bucket)
        path = base + quote(key, safe="/~")
        url = f"{self._scheme}://{host}{path}" + (f"?{query}" if query else "")
        signed = self._signer.headers(method, host, path, query, payload_hash, headers)
        return URL(url, encoded=True), signed

    async def list(self, bucket: str, prefix: str) -> AsyncIterator[tuple[str, int, str, str]]:
        """ListObjectsV2, every page: ``(key, size, etag, last_modified)`` in key order."""
        token: str | None = None
        while True:
            params = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
            if token is not None:
                params["continuation-token"] = token
            query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
            url, headers = self._request("GET", bucket, "", query, UNSIGNED_PAYLOAD)
            with map_errors("list_objects", bucket, prefix or None):
                async with self._http.get(url, headers=headers) as response:
                    body = await response.read()
                if response.status != 200:
                    raise _error(response.status, body, "list_objects", bucket, None)
            root = ElementTree.fromstring(body)
            for item in root.iterfind(f"{_NS}Contents"):
                yield (
                    unquote_plus(item.findtext(f"{_NS}Key", "")),  # as botocore decodes it
                    int(item.findtext(f"{_NS}Size", "0")),
                    item.findtext(f"{_NS}ETag", "").strip('"'),
                    item.findtext(f"{_NS}LastModified", ""),
                )
            token = root.findtext(f"{_NS}NextContinuationToken")
            if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                return

    @asynccontextmanager
    async def get(
        self, bucket: str, key: str, *, operation: str, if_none_match: str | None = None
    ) -> AsyncIterator[Any]:
        """GET ``key``; yields the aiohttp response (status 200) for the caller to read.

        With ``if_none_match`` (an ETag without quotes) the GET is conditional: the response
        may also be a 304 with no body, meaning the object still has that ETag."""
        extra = None if if_none_match is None else {"If-None-Match": f'"{if_none_match}"'}
        url, headers = self._request("GET", bucket, key, "", UNSIGNED_PAYLOAD, extra)
        with map_errors(operation, bucket, key):
            async with self._http.get(url, headers=headers) as response:
                if response.status == 304 and if_none_match is not None:
                    yield response
                    return
                if response.status != 200:
                    raise _error(response.status, await response.read(), operation, bucket, key)
                yield response

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        content_type: str,
        md5_b64: str,
        sha256_hex: str,
        operation: str,
        size: int | None = None,
    ) -> str:
        """PUT ``data`` to ``key`` (integrity-checked with Content-MD5); returns the ETag.

        ``data`` may be an async iterable of chunks (a body streamed from a file, whose
        digests were computed in a first pass); ``size`` is then its exact length."""
        extra = {"Content-Type": content_type, "Content-MD5": md5_b64}
        if not isinstance(data, bytes):
            if size is None:
                raise ValueError("a streamed PUT body needs its size")
            extra["Content-Length"] = str(size)  # sent as is, never chunked
        url, headers = self._request("PUT", bucket, key, "", sha256_hex, extra)
        with map_errors(operation, bucket, key):
            async with self._http.put(url, data=data, headers=headers) as r:
                body = await r.read()
                if r.status != 200:
                    raise _error(r.status, body, operation, bucket, key)
                return r.headers.get("ETag", "").strip('"')


def _signed_host(scheme: str, hostname: str, port: int | None) -> str:
    """The Host header as botocore signs it: lowercase, IPv6 in brackets, no default port."""
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    return host


def _error(status: int, body: bytes, operation: str, bucket: str, key: str | None) -> StorageError:
    match = _CODE.search(body)
    if match:
        code = match.group(1).decode("utf-8", "replace")
    elif status == 404:
        code = "NoSuchKey" if key else "NoSuchBucket"
    else:
        code = str(status)
    found = _MESSAGE.search(body)
    message = found.group(1).decode("utf-8", "replace") if found else f"HTTP {status}"
    return error_for_code(code, message, operation=operation, bucket=bucket, key=key)
