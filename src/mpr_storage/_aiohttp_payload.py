"""A request's data as aiohttp sends it: a stream from a fresh pass, large bytes uncopied."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from ._sizes import SMALL_BODY

__all__ = ["aiohttp_data", "is_large"]

_SLICE = 64 * 1024  # what aiohttp's BytesIOPayload writes at once


def aiohttp_data(data: Any) -> Any:
    """What aiohttp sends for ``data``: a fresh stream from a factory, bytes over 1 MiB as
    :class:`_BytesSlices` (aiohttp warns of raw bytes that large, which it would write in one
    call; its ``BytesIO`` payload would copy them whole), the rest as it is."""
    if callable(data):
        return data()
    return _BytesSlices(data) if is_large(data) else data


def is_large(data: Any) -> bool:
    """Whether ``data`` is a stream or bytes over 1 MiB (sent after ``Expect: 100-continue``)."""
    return callable(data) or (isinstance(data, bytes) and len(data) > SMALL_BODY)


class _BytesSlices(Payload):
    """Bytes written as 64 KiB ``memoryview`` slices of themselves, letting the loop run
    between two, as aiohttp's ``BytesIOPayload`` writes; never copied (``BytesIO`` copies
    the bytes it shares once aiohttp asks for its buffer)."""

    _autoclose = True  # nothing to close (aiohttp >= 3.12 asks)

    def __init__(self, value: bytes) -> None:
        super().__init__(value)
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        data: bytes = self._value
        return data.decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        data: bytes = self._value
        return data

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        view = memoryview(self._value)
        if content_length is not None:
            view = view[:content_length]
        for start in range(0, len(view), _SLICE):
            if start:
                await asyncio.sleep(0)
            await writer.write(view[start : start + _SLICE])
