"""aiohttp's exceptions as ours: the table of the fast transport (and of aiobotocore's bodies)."""

from __future__ import annotations

from typing import ClassVar

import aiohttp

from ._error_map import SOCKET_ERRORS, ErrorTable, Failure, map_errors, merged

__all__ = ["AIOHTTP_ERRORS", "map_aiohttp_errors"]

AIOHTTP_ERRORS: ErrorTable = {
    Failure.TLS: (aiohttp.ClientSSLError,),
    Failure.PROXY: (aiohttp.ClientProxyConnectionError,),
    Failure.TIMEOUT: (aiohttp.ServerTimeoutError,),
    Failure.UNREACHABLE: (aiohttp.ClientConnectorError,),
    Failure.BROKEN: (aiohttp.ClientError,),
}
"""aiohttp's exception types for each :class:`~._error_map.Failure` (the first that matches
decides: an untrusted certificate is a ``ClientConnectorError`` too)."""


class map_aiohttp_errors(map_errors):
    """``with map_aiohttp_errors(operation, bucket, key, endpoint=...)``: aiohttp's and the
    socket's errors raised inside become ours (see :class:`~._error_map.map_errors`)."""

    __slots__ = ()

    table: ClassVar[ErrorTable] = merged(AIOHTTP_ERRORS, SOCKET_ERRORS)
