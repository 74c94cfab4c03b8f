"""The fast transport: S3 requests signed with SigV4 and sent on one aiohttp session.

botocore's per-request pipeline (endpoint rules, event hooks, request objects, response
parsing) costs ~1 ms of CPU per request, and its signer alone ~50 us. Here a request is signed
in botocore's canonical form with a cached signing key and sent on one aiohttp session whose
pool is sized to the concurrency; what botocore does for its users is done here too: its
credential chain (re-read whenever it says they need refreshing), its proxy and CA settings,
region redirects remembered per bucket, namespace-agnostic parsing, and the retry loop both
transports share.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import io
import re
import time
from collections.abc import AsyncIterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from botocore.httpsession import ProxyConfiguration
from botocore.utils import get_environ_proxies
from yarl import URL

from ._config import StorageSettings
from ._errors import (
    NO_CREDENTIALS,
    REGION_CODES,
    ConfigError,
    error_for_code,
    map_errors,
    retry_after_seconds,
)
from ._files import STREAM_CHUNK, LocalIO, digests, fd_chunks, hash_fd, read_fd
from ._models import ObjectInfo
from ._sigv4 import UNSIGNED_PAYLOAD, SigV4
from ._transport import (
    SMALL_BODY,
    ByteProgress,
    Fetched,
    Throttle,
    Transport,
    aws_endpoint,
    write_body,
)
from ._xml import (
    ListPage,
    error_fields,
    find_etag,
    parse_buckets,
    parse_delete_errors,
    parse_list,
    parse_upload_id,
)

__all__ = ["FastTransport"]

_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_META = "x-amz-meta-"


class _Redirected(Exception):
    """The bucket answered from another region (remembered): send the request again."""


class FastTransport(Transport):
    """Signs and sends S3 requests for one store on one aiohttp session."""

    def __init__(
        self,
        settings: StorageSettings,
        endpoint_url: str,
        credentials: Any,
        http: aiohttp.ClientSession | None,
    ) -> None:
        super().__init__(settings, endpoint_url, credentials)
        parts = urlsplit(endpoint_url)
        self._http = http
        self._scheme = parts.scheme
        self._host = _signed_host(parts.scheme, parts.hostname or "", parts.port)
        self._base = parts.path.rstrip("/")
        self._virtual = settings.url_style == "virtual"
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
        if self._virtual and _DNS_BUCKET.match(bucket):
            return f"{bucket}.{host}", f"{self._base}/"
        return host, f"{self._base}/{bucket}/"

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

    @contextlib.asynccontextmanager
    async def _send(
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
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request (once more, at once, after a region redirect) and yield the
        response if its status is in ``ok``; other answers raise our error for them."""
        assert self._http is not None
        where = (operation, bucket or None, label or key or None)  # label: a listing's prefix
        for _ in range(2):
            region = self._regions.get(bucket, self._region)
            signer = await self._signer(region, where)
            url, headers = self._request(
                method, bucket, key, query, payload_hash, extra, signer=signer
            )
            proxy, proxy_headers = self._proxy(url)
            try:
                with map_errors(*where, endpoint=self.endpoint_url):
                    async with self._http.request(
                        method,
                        url,
                        headers=headers,
                        data=_body(data),
                        # as botocore does for bodies over 1 MiB: a refusal (a redirect, a
                        # bad signature) comes before the body is sent
                        expect100=_large(data),
                        proxy=proxy,
                        proxy_headers=proxy_headers or None,
                    ) as response:
                        if response.status not in ok:
                            body = await response.read()
                            raise self._error(response, body, region, where)
                        yield response
                return
            except _Redirected:
                continue
        raise AssertionError("unreachable")  # pragma: no cover

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
        if code is None:
            code = {404: "NoSuchKey" if key else "NoSuchBucket", 301: "PermanentRedirect"}.get(
                status, str(status)
            )
        if code in REGION_CODES or status in (301, 400) and bucket is not None:
            found = response.headers.get("x-amz-bucket-region") or body_region
            if bucket is not None and found and found != region:
                self._regions[bucket] = found  # remembered, as botocore's redirector does
                return _Redirected()
        if code == "RequestTimeTooSkewed":
            served = response.headers.get("Date")
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
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    # --- the interface ----------------------------------------------------------------------

    async def list_page(
        self,
        bucket: str,
        prefix: str,
        token: str | None,
        *,
        max_keys: int | None = None,
        operation: str = "list_objects",
    ) -> ListPage:
        params = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if token is not None:
            params["continuation-token"] = token
        if max_keys is not None:
            params["max-keys"] = str(max_keys)

        async def attempt() -> ListPage:
            async with self._send(
                "GET", bucket, operation=operation, query=_query(params), label=prefix
            ) as r:
                body = await r.read()
            return parse_list(body, operation=operation, bucket=bucket)

        return await self.retry(attempt, None)

    async def head(self, bucket: str, key: str, *, operation: str) -> ObjectInfo:
        async def attempt() -> ObjectInfo:
            async with self._send("HEAD", bucket, key, operation=operation) as r:
                headers = r.headers
                modified = headers.get("Last-Modified")
                return ObjectInfo(
                    key,
                    int(headers.get("Content-Length", "0")),
                    headers.get("ETag", "").strip('"'),
                    email.utils.parsedate_to_datetime(modified) if modified else None,
                    headers.get("Content-Type"),
                    {
                        name[len(_META) :]: value
                        for name, value in headers.items()
                        if name.lower().startswith(_META)
                    },
                )

        return await self.retry(attempt, None)

    async def get_to_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        io: LocalIO,
        operation: str,
        mkdir: bool = False,
        if_none_match: str | None = None,
        progress: ByteProgress | None = None,
        on_throttle: Throttle | None = None,
    ) -> Fetched | None:
        extra = {"If-None-Match": f'"{if_none_match}"'} if if_none_match else None

        async def attempt() -> Fetched | None:
            async with self._send(
                "GET", bucket, key, operation=operation, extra=extra, ok=(200, 304)
            ) as r:
                if r.status == 304:
                    return None
                size, mtime_ns = await write_body(
                    path,
                    r.content_length,
                    r.read,
                    partial(r.content.iter_chunked, STREAM_CHUNK),
                    io=io,
                    where=(operation, bucket, key),
                    mkdir=mkdir,
                    progress=progress,
                )
                return Fetched(size, r.headers.get("ETag", "").strip('"'), mtime_ns)

        return await self.retry(attempt, on_throttle)

    async def put_file(
        self,
        bucket: str,
        key: str,
        fd: int,
        size: int,
        *,
        content_type: str,
        io: LocalIO,
        operation: str,
        progress: ByteProgress | None = None,
        on_throttle: Throttle | None = None,
    ) -> str:
        whole = size <= SMALL_BODY
        if whole:
            data: bytes | None = await io.run(partial(read_fd, fd, size), size)
            assert data is not None
            _, md5_b64, sha256 = digests(data)
        else:
            data = None
            _, md5_b64, sha256 = await io.run(partial(hash_fd, fd, size), size)
        extra = {"Content-Type": content_type, "Content-MD5": md5_b64}
        if not whole:
            extra["Content-Length"] = str(size)  # sent as is: never chunked

        async def stream() -> AsyncIterator[bytes]:
            if progress is not None:
                progress.start(size)
            async for chunk in fd_chunks(fd, size, io):
                if progress is not None:
                    await progress.add(len(chunk))
                yield chunk

        async def attempt() -> str:
            async with self._send(
                "PUT",
                bucket,
                key,
                operation=operation,
                extra=extra,
                data=data if whole else stream,
                payload_hash=sha256,
            ) as r:
                await r.read()
                if whole and progress is not None:
                    progress.start(size)
                    await progress.add(size)
                return r.headers.get("ETag", "").strip('"')

        return await self.retry(attempt, on_throttle)

    async def create_multipart(
        self, bucket: str, key: str, *, content_type: str, operation: str
    ) -> str:
        async def attempt() -> str:
            async with self._send(
                "POST",
                bucket,
                key,
                operation=operation,
                query="uploads=",
                extra={"Content-Type": content_type},
                payload_hash=_EMPTY_SHA256,
            ) as r:
                body = await r.read()
            return parse_upload_id(body, operation=operation, bucket=bucket)

        return await self.retry(attempt, None)

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes, *, operation: str
    ) -> str:
        query = _query({"partNumber": str(number), "uploadId": upload_id})
        _, md5_b64, sha256 = await LocalIO().run(partial(digests, data), len(data))
        extra = {"Content-MD5": md5_b64}

        async def attempt() -> str:
            async with self._send(
                "PUT",
                bucket,
                key,
                operation=operation,
                query=query,
                extra=extra,
                data=data,
                payload_hash=sha256,
            ) as r:
                await r.read()
                return r.headers.get("ETag", "")

        return await self.retry(attempt, None)

    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        operation: str,
    ) -> str:
        xml = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{_escape(etag)}</ETag></Part>"
            for n, etag in parts
        )
        body = f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()
        _, md5_b64, sha256 = digests(body)

        async def attempt() -> str:
            async with self._send(
                "POST",
                bucket,
                key,
                operation=operation,
                query=_query({"uploadId": upload_id}),
                extra={"Content-MD5": md5_b64},
                data=body,
                payload_hash=sha256,
            ) as r:
                answer = await r.read()
                code, message, _ = error_fields(answer)
                if code is not None and b"CompleteMultipartUploadResult" not in answer:
                    # S3 may answer 200 and report the failure in the body.
                    raise error_for_code(
                        code,
                        message or code,
                        operation=operation,
                        bucket=bucket,
                        key=key,
                        status=500 if code == "InternalError" else None,
                    )
            return find_etag(answer)

        return await self.retry(attempt, None)

    async def abort_multipart(
        self, bucket: str, key: str, upload_id: str, *, operation: str
    ) -> None:
        async def attempt() -> None:
            async with self._send(
                "DELETE",
                bucket,
                key,
                operation=operation,
                query=_query({"uploadId": upload_id}),
                ok=(200, 204, 404),
            ) as r:
                await r.read()

        await self.retry(attempt, None)

    async def delete_batch(
        self, bucket: str, keys: list[str], *, operation: str
    ) -> list[tuple[str, str, str]]:
        objects = "".join(f"<Object><Key>{_escape(k)}</Key></Object>" for k in keys)
        body = f"<Delete><Quiet>true</Quiet>{objects}</Delete>".encode()
        _, md5_b64, sha256 = digests(body)

        async def attempt() -> list[tuple[str, str, str]]:
            async with self._send(
                "POST",
                bucket,
                operation=operation,
                query="delete=",
                extra={"Content-MD5": md5_b64, "Content-Type": "application/xml"},
                data=body,
                payload_hash=sha256,
            ) as r:
                answer = await r.read()
            return parse_delete_errors(answer, operation=operation, bucket=bucket)

        return await self.retry(attempt, None)

    async def delete_one(self, bucket: str, key: str, *, operation: str) -> None:
        async def attempt() -> None:
            async with self._send(
                "DELETE", bucket, key, operation=operation, ok=(200, 204, 404)
            ) as r:
                body = await r.read()
                if r.status == 404 and error_fields(body)[0] == "NoSuchBucket":
                    raise error_for_code(
                        "NoSuchBucket", "no such bucket", operation=operation, bucket=bucket
                    )

        await self.retry(attempt, None)

    async def list_buckets(self, *, operation: str = "list_buckets") -> list[str]:
        async def attempt() -> list[str]:
            async with self._send("GET", "", operation=operation) as r:
                body = await r.read()
            return parse_buckets(body, operation=operation)

        return await self.retry(attempt, None)


def _body(data: Any) -> Any:
    """What aiohttp sends for ``data``: a fresh stream from a factory, large bytes as a
    stream (aiohttp refuses to write more than 1 MiB of raw bytes at once)."""
    if callable(data):
        return data()
    if isinstance(data, bytes) and len(data) > SMALL_BODY:
        return io.BytesIO(data)
    return data


def _large(data: Any) -> bool:
    return callable(data) or (isinstance(data, bytes) and len(data) > SMALL_BODY)


def _query(params: Mapping[str, str]) -> str:
    """A canonical query string: sorted, every value percent-encoded as SigV4 wants."""
    return "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _signed_host(scheme: str, hostname: str, port: int | None) -> str:
    """The Host header as botocore signs it: lowercase, IPv6 in brackets, no default port."""
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    return host
