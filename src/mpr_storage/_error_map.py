"""The translation boundary both transports build on: ``map_errors`` and connection failures.

An HTTP client's exceptions become ours in one context manager per transport, a subclass of
:class:`map_errors` beside it (:mod:`._aiohttp_errors`, :mod:`._botocore_errors`), as httpx
keeps ``HTTPCORE_EXC_MAP`` beside its transport. What is written once lives here: the
boundary itself (the original chained, its frames' locals cleared) and the messages of the
connection failures every client reports (:class:`Failure`), each transport mapping its own
exception types to them (an :data:`ErrorTable`).
"""

from __future__ import annotations

import asyncio
import enum
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import ClassVar, TypedDict

from ._errors import StorageConnectionError, StorageError, StorageTimeoutError, redact_url

__all__ = [
    "SOCKET_ERRORS",
    "ErrorTable",
    "Failure",
    "Where",
    "forget_locals",
    "map_errors",
    "merged",
]


class Where(TypedDict):
    """What a message names: the operation, the bucket and the key."""

    operation: str
    bucket: str | None
    key: str | None


class Failure(enum.Enum):
    """A way the connection to the endpoint failed, whichever client said it; its value is
    the message (``{target}``: the endpoint, ``{name}``: the original's type). Checked in
    this order: the first that matches decides."""

    TLS = (
        "TLS to {target} failed (certificate not trusted?): set AWS_CA_BUNDLE to the CA "
        "file that signed the server's certificate"
    )
    PROXY = "cannot reach the proxy for {target} (HTTP_PROXY/HTTPS_PROXY)"
    TIMEOUT = "timed out talking to {target}"
    UNREACHABLE = "cannot reach the endpoint {target}"
    BROKEN = "connection to {target} broke ({name})"

    def error(self, exc: Exception, where: Where, target: str) -> StorageError:
        """Our error for ``exc``, a failure of this kind."""
        message = self.value.format(target=target, name=type(exc).__name__)
        if self is Failure.TLS:
            return StorageConnectionError(message, **where, code="TLSError")
        if self is Failure.TIMEOUT:
            return StorageTimeoutError(message, **where)
        return StorageConnectionError(message, **where)


ErrorTable = Mapping[Failure, tuple[type[BaseException], ...]]
"""An HTTP client's exception types for each kind of :class:`Failure` they mean."""

SOCKET_ERRORS: ErrorTable = {
    Failure.TIMEOUT: (asyncio.TimeoutError, TimeoutError),
    Failure.BROKEN: (ConnectionError,),
}
"""The OS's and asyncio's, whichever client passes them up."""


def merged(*tables: ErrorTable) -> ErrorTable:
    """One table of several clients' (a transport whose client runs on another's)."""
    return {
        failure: tuple(t for table in tables for t in table.get(failure, ())) for failure in Failure
    }


class map_errors:  # used like a function: ``with map_errors(...):``
    """Translate the errors raised inside the block into ours, by :meth:`translate`.

    Each transport's subclass sets :attr:`table` (and may extend :meth:`translate`); this
    class alone knows the socket errors only. Decisions are made on structured error codes
    and types, never on exception text, so the same failure reads the same whichever
    transport raised it (``endpoint`` names the endpoint in connection errors), and the
    original is always chained (``raise ... from exc``). A class, not a generator: it is
    entered once per request, and costs nothing when nothing fails (what a message names is
    put together only then).
    """

    __slots__ = ("_operation", "_bucket", "_key", "_endpoint")

    table: ClassVar[ErrorTable] = SOCKET_ERRORS

    def __init__(
        self,
        operation: str,
        bucket: str | None = None,
        key: str | None = None,
        *,
        endpoint: str | None = None,
    ) -> None:
        self._operation = operation
        self._bucket = bucket
        self._key = key
        self._endpoint = endpoint

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, StorageError) or not isinstance(exc, Exception):
            return
        where = Where(operation=self._operation, bucket=self._bucket, key=self._key)
        target = redact_url(self._endpoint) if self._endpoint else "the endpoint"
        ours = self.translate(exc, where, target)
        if ours is not None:
            forget_locals(exc)
            raise ours from exc

    @classmethod
    def translate(cls, exc: Exception, where: Where, target: str) -> StorageError | None:
        """Our error for ``exc``, or ``None`` to let it pass: the first :class:`Failure` of
        :attr:`table` whose types it is an instance of."""
        for failure in Failure:
            types = cls.table.get(failure)
            if types and isinstance(exc, types):
                return failure.error(exc, where, target)
        return None


def forget_locals(exc: BaseException) -> None:
    """Clear the local variables of the finished frames in ``exc``'s traceback and in those
    of the exceptions it chains: botocore's and aiohttp's frames hold the signed request
    (``Authorization``, ``x-amz-security-token``), which error reporters that capture frame
    locals (Sentry, ``rich``) would ship. File and line of each frame stay."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += (current.__cause__, current.__context__)
