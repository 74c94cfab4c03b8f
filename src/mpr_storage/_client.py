"""Client lifecycle: the aiobotocore S3 clients a storage owns, opened lazily, closed once."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
from botocore.credentials import ReadOnlyCredentials

from ._config import StorageSettings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
else:
    S3Client = Any

__all__ = ["BaseStorage", "S3Client"]


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class BaseStorage:
    """Owns one aiobotocore S3 client (and, lazily, a second one for presigning against a
    public endpoint) for one event loop. Subclassed by :class:`mpr_storage.Storage`.

    Creating a client costs ~100 ms, so it is created once, on first use, under a lock,
    and reused by every call; the connection pool is sized to ``max_concurrency``.
    """

    def __init__(self, settings: StorageSettings | None = None) -> None:
        self._settings = settings
        self._state = _State.UNOPENED
        self._stack = contextlib.AsyncExitStack()
        self._lock: asyncio.Lock | None = None
        # Weak: a loop's default storage is held in a dict keyed weakly by that loop.
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._session: Any = None
        self._client: S3Client | None = None
        self._public_client: S3Client | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def settings(self) -> StorageSettings:
        """The settings in use (read from the environment on first access if none were given)."""
        if self._settings is None:
            self._settings = StorageSettings.from_env()
        return self._settings

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has run."""
        return self._state is _State.CLOSED

    async def __aenter__(self) -> Any:
        await self.client()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def client(self) -> S3Client:
        """The S3 client, created on first use. Do not close it: :meth:`aclose` does."""
        if self._client is not None and self._state is _State.OPENED:
            self._check_loop()
            return self._client
        async with self._get_lock():
            if self._state is _State.CLOSED:
                raise RuntimeError("this Storage is closed; create a new one")
            if self._client is None:
                self._client = await self._create_client(public=False)
                self._state = _State.OPENED
            return self._client

    async def presign_client(self) -> S3Client:
        """The client whose endpoint browsers reach (``S3_PUBLIC_ENDPOINT_URL``)."""
        settings = self.settings
        if not settings.public_endpoint_url or (
            settings.public_endpoint_url == settings.endpoint_url
        ):
            return await self.client()
        await self.client()  # open (and check the loop) first
        async with self._get_lock():
            if self._public_client is None:
                self._public_client = await self._create_client(public=True)
            return self._public_client

    async def credentials(self) -> ReadOnlyCredentials | None:
        """The credentials requests are signed with (``None`` for anonymous access)."""
        settings = self.settings
        if settings.access_key_id and settings.secret_access_key:
            return ReadOnlyCredentials(
                settings.access_key_id, settings.secret_access_key, settings.session_token
            )
        await self.client()  # creates the session
        found = await self._session.get_credentials()  # botocore's default chain
        if found is None:
            return None
        frozen: ReadOnlyCredentials = await found.get_frozen_credentials()
        return frozen

    async def http_session(self) -> aiohttp.ClientSession:
        """The aiohttp session of the bulk fast path (pool sized to ``max_concurrency``)."""
        await self.client()  # open (and check the loop) first
        if self._http is None:
            settings = self.settings
            connector = aiohttp.TCPConnector(
                limit=settings.max_concurrency, limit_per_host=0, keepalive_timeout=30
            )
            timeout = aiohttp.ClientTimeout(
                sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
            )
            self._http = await self._stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=connector,
                    timeout=timeout,
                    auto_decompress=False,
                    cookie_jar=aiohttp.DummyCookieJar(),
                    skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                )
            )
        return self._http

    async def aclose(self) -> None:
        """Close the clients and their connection pools. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._client = self._public_client = None
        self._http = None
        try:
            await self._stack.aclose()
        finally:
            # Nothing of a closed storage may keep its loop alive (asyncio.Lock binds to it).
            self._session = None
            self._lock = None

    async def _create_client(self, *, public: bool) -> S3Client:
        import aioboto3

        self._check_loop()
        if self._session is None:
            self._session = aioboto3.Session()
        client: S3Client = await self._stack.enter_async_context(
            self._session.client("s3", **self.settings.client_kwargs(public=public))
        )
        return client

    def _get_lock(self) -> asyncio.Lock:
        self._check_loop()
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = weakref.ref(loop)
        elif self._loop() is not loop:
            raise RuntimeError(
                "this Storage was opened on another event loop; create one Storage per loop "
                "(the module-level functions do that for you)"
            )
