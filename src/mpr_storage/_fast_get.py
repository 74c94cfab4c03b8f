"""The fast transport's GET: aiohttp's answer as a :class:`~._body.Body`, or a 304, 412, 416."""

from __future__ import annotations

from functools import partial
from types import TracebackType

import aiohttp

from ._aiohttp_errors import map_aiohttp_errors
from ._body import Body, refused_get
from ._http import Exchange, SignedRequests

__all__ = ["FastGet"]

_GET_ANSWERS = (200, 206, 304, 412, 416)  # 412 and 416 are raised by FastGet, typed


class FastGet:
    """``async with`` a GET: its :class:`~._body.Body` (``None`` for a 304); a 412 or 416
    answer raises our error for it."""

    __slots__ = ("_exchange", "_where", "_open")

    def __init__(
        self,
        wire: SignedRequests,
        where: tuple[str, str, str],
        headers: dict[str, str],
        read_ahead: int | None,
    ) -> None:
        """One GET of ``where`` (operation, bucket, key) with these request ``headers``
        (Range, If-Match, If-None-Match), not sent yet; ``read_ahead``: aiohttp's read
        buffer for its body (``None``: the session's)."""
        operation, bucket, key = where
        self._exchange: Exchange = wire.send(
            "GET",
            bucket,
            key,
            operation=operation,
            extra=headers or None,
            ok=_GET_ANSWERS,
            read_bufsize=read_ahead,
        )
        self._where = where
        self._open = False

    async def __aenter__(self) -> Body | None:
        r = await self._exchange.__aenter__()
        if r.status in (200, 206):
            self._open = True
            return Body(r.status, r.headers, partial(_read, r.content, self._where), self._where)
        try:
            if r.status != 304:
                with map_aiohttp_errors(*self._where):
                    await r.read()  # the error document: the connection is reused
        finally:
            await self._exchange.__aexit__(None, None, None)
        if r.status == 304:
            return None
        raise refused_get(r.status, r.headers, self._where)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._open:
            self._open = False
            await self._exchange.__aexit__(exc_type, exc, tb)


async def _read(content: aiohttp.StreamReader, where: tuple[str, str, str], n: int) -> bytes:
    """What aiohttp holds of a body now (``n`` > 0; never ``content.read(n)``, which raises
    aiohttp's buffer to ``2 x n``), or all of the rest (``n`` < 0); aiohttp's errors as ours."""
    with map_aiohttp_errors(*where):
        return await (content.readany() if n > 0 else content.read())
