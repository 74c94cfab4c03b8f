"""Client lifecycle: the transport and the aiobotocore clients a storage owns, opened lazily,
closed once."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
import weakref
from functools import partial
from types import SimpleNamespace, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import anyio
from aiobotocore.httpsession import AIOHTTPSession

from ._botocore import BotocoreTransport
from ._config import StorageSettings
from ._fast import FastTransport
from ._presigner import Presigner
from ._transport import Transport, aws_endpoint

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
else:
    S3Client = Any

__all__ = ["BaseStorage", "S3Client"]

_StorageT = TypeVar("_StorageT", bound="BaseStorage")

_log = logging.getLogger(__name__)


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
        self._transport: Transport | None = None
        self._presigner: Presigner | None = None

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

    async def __aenter__(self: _StorageT) -> _StorageT:
        await self.transport()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def transport(self) -> Transport:
        """The transport every call goes through (fast or botocore, chosen once by
        ``S3_FAST_PATH``), opened on first use."""
        if self._transport is not None and self._state is _State.OPENED:
            self._check_loop()
            return self._transport
        async with self._get_lock():
            self._check_open()
            if self._transport is None:
                self._transport = await self._open_transport()
                self._state = _State.OPENED
            return self._transport

    async def client(self) -> S3Client:
        """The aiobotocore S3 client for callers (``get_s3_client``), with botocore's own
        retries; created on first use. Do not close it: :meth:`aclose` does."""
        if self._client is not None and self._state is _State.OPENED:
            self._check_loop()
            return self._client
        async with self._get_lock():
            self._check_open()
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
        async with self._get_lock():
            self._check_open()
            if self._public_client is None:
                self._public_client = await self._create_client(public=True)
                self._state = _State.OPENED
            return self._public_client

    async def presigner(self) -> Presigner | None:
        """Our offline SigV4 query signer for the endpoint browsers reach (as
        :meth:`presign_client` chooses it), or ``None`` where botocore's presigner stays in
        charge: no endpoint configured (AWS's endpoint rules decide the URL) or no credentials
        (botocore's error)."""
        self._check_open()
        if self._presigner is not None:
            self._check_loop()
            return self._presigner
        settings = self.settings
        endpoint = settings.public_endpoint_url or settings.endpoint_url
        if not endpoint:
            return None
        async with self._get_lock():
            self._check_open()
            if self._presigner is None:
                credentials = await self._credentials()
                if credentials is None:
                    return None
                self._presigner = Presigner(settings, endpoint, credentials, None)
            return self._presigner

    async def aclose(self) -> None:
        """Close the clients and their connection pools. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._client = self._public_client = None
        self._transport = None
        self._presigner = None
        try:
            await self._stack.aclose()
        finally:
            # Nothing of a closed storage may keep its loop alive (asyncio.Lock binds to it).
            self._session = None
            self._lock = None

    def _check_open(self) -> None:
        if self._state is _State.CLOSED:
            raise RuntimeError("this Storage is closed; create a new one")

    def _boto_session(self) -> Any:
        import aioboto3

        if self._session is None:
            self._session = aioboto3.Session()
        return self._session

    async def _off_the_loop(self, *, client: bool) -> None:
        """botocore's slow first steps, in a worker thread: the first call of a process must
        not hold the event loop for them (imports, the session, its config files, and for a
        client the service model and endpoint data), see :func:`_load_botocore`."""
        if self._session is None or client:
            await anyio.to_thread.run_sync(partial(_load_botocore, self, client=client))

    async def _create_client(self, *, public: bool, **config: Any) -> S3Client:
        self._check_loop()
        await self._off_the_loop(client=True)
        kwargs = self.settings.client_kwargs(public=public)
        kwargs["config"] = self.settings.client_config(http_session_cls=_NoRedirects, **config)
        client: S3Client = await self._stack.enter_async_context(
            self._boto_session().client("s3", **kwargs)
        )
        client.meta.events.register_last("needs-retry.s3", _log_region_redirect)
        await _tls_off_the_loop(client)
        return client

    async def _credentials(self) -> Any:
        """botocore's credentials: the configured keys, else its default chain (refreshable
        ones included); ``None`` when nothing is found."""
        settings = self.settings
        await self._off_the_loop(client=False)
        from aiobotocore.credentials import AioCredentials

        if settings.access_key_id and settings.secret_access_key:
            return AioCredentials(
                settings.access_key_id, settings.secret_access_key, settings.session_token
            )
        return await self._boto_session().get_credentials()

    async def _open_transport(self) -> Transport:
        settings = self.settings
        credentials = await self._credentials()
        endpoint = settings.endpoint_url or aws_endpoint(settings.signing_region)
        if not settings.fast_path:
            config: dict[str, Any] = {"retries": {"total_max_attempts": 1, "mode": "standard"}}
            if credentials is None and settings.anonymous:
                from botocore import UNSIGNED

                config["signature_version"] = UNSIGNED
            client = await self._create_client(public=False, **config)
            return BotocoreTransport(settings, endpoint, credentials, client)
        ssl = True
        if endpoint.startswith("https:"):  # loading the CA file takes a while
            ssl = await anyio.to_thread.run_sync(self._ssl_context, endpoint)
        http = await self._stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=settings.max_concurrency,
                    limit_per_host=0,
                    keepalive_timeout=30,
                    ssl=ssl,
                ),
                timeout=aiohttp.ClientTimeout(
                    sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
                ),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            )
        )
        return FastTransport(settings, endpoint, credentials, http)

    def _ssl_context(self, endpoint: str) -> Any:
        """TLS verification as botocore applies it: ``AWS_CA_BUNDLE`` (or the config file's
        ``ca_bundle``), else ``REQUESTS_CA_BUNDLE``, else botocore's default CA file."""
        if not endpoint.startswith("https:"):
            return True
        import os

        from botocore.httpsession import create_urllib3_context, get_cert_path

        verify = (
            self.settings.ca_bundle
            or self._boto_session()._session.get_config_variable("ca_bundle")
            or os.environ.get("REQUESTS_CA_BUNDLE", True)
        )
        context = create_urllib3_context()
        ca_file = get_cert_path(verify)
        if ca_file:
            context.load_verify_locations(ca_file, None, None)
        return context

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


# One botocore data loader per data path for the whole process, as one boto3 session gives
# all its clients: each Storage has a session of its own (its credentials and config), and
# without this each would parse the S3 model, endpoint rules and partitions again (~0.1 s of
# CPU per Storage on the botocore path). The loader only caches what it reads from its
# package's JSON files; clients never change what it returns.
_LOADERS: dict[str | None, Any] = {}
_LOADERS_LOCK = threading.Lock()


def _share_loader(core: Any) -> None:
    """Give a botocore session the process's loader for its data path."""
    from botocore.loaders import create_loader

    data_path = core.get_config_variable("data_path")
    with _LOADERS_LOCK:
        loader = _LOADERS.get(data_path)
        if loader is None:
            loader = _LOADERS[data_path] = create_loader(data_path)
    core.register_component("data_loader", loader)


def _load_botocore(storage: BaseStorage, *, client: bool) -> None:
    """What botocore and aioboto3 do slowly the first time, done here (in a worker thread)
    so that the event loop does not wait: ~1 s of imports and JSON on a busy machine. The
    storage's session is made and its config files read; for a ``client``, the modules its
    creation imports, the service model, endpoint rules and partitions are loaded into the
    session's loader, whose cache the client's creation then reads."""
    import aiobotocore.credentials

    session = storage._boto_session()
    core = session._session
    core.get_scoped_config()
    _share_loader(core)
    if client:
        import aioboto3.s3.inject  # noqa: F401 - imported when the client class is made
        import aiobotocore.client  # noqa: F401

        core._get_internal_component("endpoint_resolver")
        loader = core.get_component("data_loader")
        # As the session and the client creator ask (the loader caches per argument form).
        loader.load_service_model("s3", type_name="service-2", api_version=None)
        loader.load_service_model("s3", "service-2", api_version=None)
        loader.load_service_model("s3", "endpoint-rule-set-1", api_version=None)
        loader.load_data("partitions")
        loader.load_data("sdk-default-configuration")
        loader.load_data("_retry")


# What _tls_off_the_loop reads of aiobotocore's AIOHTTPSession (2.x).
_AIOHTTP_SESSION_PARTS = (
    "_verify",
    "_cert_file",
    "_key_file",
    "_get_ssl_context",
    "_max_pool_connections",
    "_connector_args",
)


async def _tls_off_the_loop(client: Any) -> None:
    """aiobotocore makes its connection pool at the first request, and with it a TLS context
    into which it loads the CA file (~0.1 s, even for a plain-HTTP endpoint): make that
    context now, in a worker thread, as aiobotocore would, and have the pool use it."""
    http: Any = getattr(getattr(client, "_endpoint", None), "http_session", None)
    original = getattr(http, "_create_connector", None)
    if original is None or not all(hasattr(http, name) for name in _AIOHTTP_SESSION_PARTS):
        return  # another aiobotocore: it makes its context itself
    if not http._verify:
        return

    def verified_context() -> Any:  # aiobotocore's AIOHTTPSession._create_connector, no proxy
        from botocore.httpsession import get_cert_path

        context = http._get_ssl_context()
        if http._cert_file:
            context.load_cert_chain(http._cert_file, http._key_file)
        ca_certs = get_cert_path(http._verify)
        if ca_certs:
            context.load_verify_locations(ca_certs, None, None)
        return context

    context = await anyio.to_thread.run_sync(verified_context)

    def create_connector(proxy_url: str | None) -> Any:
        if proxy_url:  # a proxy's own TLS settings: aiobotocore's way
            return original(proxy_url)
        return aiohttp.TCPConnector(
            limit=http._max_pool_connections, ssl=context, **http._connector_args
        )

    http._create_connector = create_connector


class _NoRedirects(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session, sending each request as botocore (urllib3) does: a redirect
    is an answer, never followed (aiohttp's default follows it, credentials and body too, to
    any host)."""

    async def _get_session(self, proxy_url: str | None) -> Any:
        session = await super()._get_session(proxy_url)
        return SimpleNamespace(request=partial(session.request, allow_redirects=False))


def _log_region_redirect(request_dict: Any = None, operation: Any = None, **_: Any) -> None:
    """The INFO line of a region redirect botocore's redirector just made (it runs first)."""
    context = (request_dict or {}).get("context", {})
    redirect = context.get("s3_redirect", {})
    if redirect.get("redirected") and not redirect.get("logged"):
        redirect["logged"] = True
        region = context.get("signing", {}).get("region", "?")
        _log.info(
            "%s s3://%s: the bucket is in region %s, not %s: signing for it (set AWS_REGION=%s "
            "to save the redirect)",
            getattr(operation, "name", "?"), redirect.get("bucket"), region,
            context.get("client_region"), region,
        )  # fmt: skip
