"""HTTP answers for objects in Starlette and FastAPI apps: ranges, validators, streamed bodies."""

from __future__ import annotations

import contextlib
import email.utils
import mimetypes
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timezone

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

import mpr_storage
from mpr_storage import InvalidRangeError, ObjectBody, ObjectInfo, ObjectNotFoundError, Storage
from mpr_storage._presign import content_disposition

__all__ = ["object_response"]

_Spec = tuple[int | None, int | None]
"""One byte range as the client asked: ``(a, b)`` for ``bytes=a-b`` (``b`` inclusive),
``(a, None)`` for ``bytes=a-``, ``(None, n)`` for ``bytes=-n`` (the last ``n`` bytes)."""

# ASCII digits only, and few enough for any object: a longer number makes the header ignored.
_SPEC = re.compile(r"[ \t]*([0-9]{0,18})[ \t]*-[ \t]*([0-9]{0,18})[ \t]*")
_ETAG = re.compile(r'(W/)?"[^"]*"')
_CONDITIONS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
_ATTEMPTS = 3  # the object replaced between the HEAD and the GET, again and again: give up


def _parse_range(value: str | None) -> _Spec | None:
    """The one byte range of a ``Range`` header, or ``None`` to ignore it (RFC 9110 allows
    that): no header, another unit, bad syntax, or several ranges (answered whole, 200)."""
    if value is None:
        return None
    unit, equals, ranges = value.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    parts = [part for part in ranges.split(",") if part.strip()]
    if len(parts) != 1 or (match := _SPEC.fullmatch(parts[0])) is None:
        return None
    first, last = (int(text) if text else None for text in match.groups())
    if first is None and last is None:
        return None
    if first is not None and last is not None and last < first:
        return None  # invalid: the whole header is ignored
    return first, last


def _resolve_range(spec: _Spec, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of ``spec`` in an object of ``size`` bytes (a range past the end is
    cut to it, a suffix longer than the object is all of it), or ``None`` when unsatisfiable
    (416): it starts at or after the end, or asks for the last 0 bytes."""
    first, last = spec
    if first is None:
        assert last is not None
        return (max(size - last, 0), size) if last > 0 else None
    if first >= size:
        return None
    return first, size if last is None else min(last + 1, size)


@dataclass(frozen=True)
class _Plan:
    """What to answer: ``status`` (200, 206, 304, 412 or 416) and, for 200/206, the bytes
    ``[start, end)``."""

    status: int
    start: int = 0
    end: int = 0


def _quoted_etag(info: ObjectInfo) -> str | None:
    """The ``ETag`` header of the object (a strong validator, quoted), if it has one."""
    return f'"{info.etag}"' if info.etag else None


def _utc_seconds(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0)


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return _utc_seconds(email.utils.parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError):
        return None  # an invalid date: the condition is ignored (RFC 9110)


def _matches(header: str, etag: str | None, *, weak: bool) -> bool:
    """Whether an ``If-Match`` (strong) or ``If-None-Match`` (weak comparison) list holds."""
    if header.strip() == "*":
        return True
    if etag is None:
        return False
    for match in _ETAG.finditer(header):
        tag = match.group(0)
        if tag.startswith("W/"):
            if weak and tag[2:] == etag:
                return True
        elif tag == etag:
            return True
    return False


def _range_allowed(if_range: str | None, etag: str | None, modified: datetime | None) -> bool:
    """``If-Range``: serve the range only while the validator still holds (an ETag, strong
    comparison, or the exact ``Last-Modified`` date); else the whole object."""
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith(("W/", '"')):
        return etag is not None and if_range == etag
    date = _parse_date(if_range)
    return date is not None and modified is not None and date == modified


def _plan_answer(method: str, headers: Mapping[str, str], info: ObjectInfo) -> _Plan:
    """The answer to a request with ``headers`` (lowercase names) for the object ``info``
    describes, in RFC 9110's order (13.2.2): ``If-Match``, ``If-Unmodified-Since`` (412),
    ``If-None-Match``, ``If-Modified-Since`` (304; ``If-None-Match`` wins), then ``Range``
    (with ``If-Range``): 206, 416, or 200 with the whole object."""
    size, etag = info.size, _quoted_etag(info)
    modified = _utc_seconds(info.last_modified) if info.last_modified else None
    readonly = method in ("GET", "HEAD")
    if (if_match := headers.get("if-match")) is not None:
        if not _matches(if_match, etag, weak=False):
            return _Plan(412)
    elif (since := _parse_date(headers.get("if-unmodified-since"))) is not None:
        if modified is None or modified > since:
            return _Plan(412)
    if (if_none_match := headers.get("if-none-match")) is not None:
        if _matches(if_none_match, etag, weak=True):
            return _Plan(304 if readonly else 412)
    elif readonly and (since := _parse_date(headers.get("if-modified-since"))) is not None:
        if modified is not None and modified <= since:
            return _Plan(304)
    spec = _parse_range(headers.get("range")) if readonly else None
    # An empty object has no byte to range over: it is answered whole (ignoring Range).
    if spec is not None and size > 0 and _range_allowed(headers.get("if-range"), etag, modified):
        span = _resolve_range(spec, size)
        return _Plan(416) if span is None else _Plan(206, *span)
    return _Plan(200, 0, size)


def _headers(info: ObjectInfo, download_name: str | None) -> dict[str, str]:
    """The validators and the headers every answer about the object carries."""
    headers = {"accept-ranges": "bytes"}
    if (etag := _quoted_etag(info)) is not None:
        headers["etag"] = etag
    if info.last_modified is not None:
        headers["last-modified"] = email.utils.format_datetime(
            _utc_seconds(info.last_modified), usegmt=True
        )
    if download_name is not None:
        headers["content-disposition"] = content_disposition(download_name)
    return headers


def _content_type(info: ObjectInfo, key: str) -> str:
    return info.content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"


def _bodyless(plan: _Plan, info: ObjectInfo, key: str, name: str | None) -> Response:
    """Every answer without the object's bytes: 304, 412, 416, and HEAD's 200/206."""
    headers = _headers(info, name)
    if plan.status == 416:
        headers["content-range"] = f"bytes */{info.size}"
    elif plan.status in (200, 206):
        headers["content-type"] = _content_type(info, key)
        headers["content-length"] = str(plan.end - plan.start)
        if plan.status == 206:
            headers["content-range"] = f"bytes {plan.start}-{plan.end - 1}/{info.size}"
    elif plan.status == 412:
        headers = {}
    return Response(status_code=plan.status, headers=headers)


def _not_found(method: str) -> Response:
    return Response(
        None if method == "HEAD" else "Not Found", status_code=404, media_type="text/plain"
    )


class _ObjectStream(StreamingResponse):
    """A 200/206 answer streaming an open object body (chunks of at most 1 MiB, never the
    whole object in memory); the body is closed however the answer ends: sent, failed, or
    cut by the client (Starlette stops streaming when it disconnects)."""

    def __init__(
        self,
        body: ObjectBody,
        stack: AsyncExitStack,
        status_code: int,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(body, status_code=status_code, headers=headers)
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream, and stop at once when the client leaves. Starlette, under a server of ASGI
        2.4 and later, waits for a write to fail instead; a server may take its time to fail
        one (and a write into a full socket buffer waits), so the body, and its connection to
        the store, would stay open meanwhile: listen for ``http.disconnect`` as well."""
        try:
            async with anyio.create_task_group() as tg:

                async def stream() -> None:
                    with contextlib.suppress(OSError):  # a write to a client gone: done
                        await self.stream_response(send)
                    tg.cancel_scope.cancel()

                async def listen() -> None:
                    await self.listen_for_disconnect(receive)
                    tg.cancel_scope.cancel()

                tg.start_soon(stream)
                tg.start_soon(listen)
        finally:
            await _close(self._stack)


async def _close(stack: AsyncExitStack) -> None:
    with anyio.CancelScope(shield=True):  # release the connection even when cancelled
        await stack.aclose()


Opener = Callable[..., AbstractAsyncContextManager[ObjectBody]]
Stat = Callable[[str, str], Awaitable[ObjectInfo]]


def _calls(storage: Storage | None) -> tuple[Opener, Stat]:
    """``open_object`` and ``stat_object`` of ``storage``, or of the loop's default."""
    if storage is None:
        return mpr_storage.open_object, mpr_storage.stat_object
    return storage.open_object, storage.stat_object


async def object_response(
    request: Request,
    bucket: str,
    key: str,
    *,
    download_name: str | None = None,
    storage: Storage | None = None,
) -> Response:
    """A Starlette response (FastAPI's too) serving ``key`` to ``request`` with HTTP's range
    and caching semantics, streamed in bounded chunks.

    - 200 with ``Accept-Ranges: bytes``, ``ETag``, ``Last-Modified``, ``Content-Length`` and
      ``Content-Type`` (the object's, else guessed from the key);
    - 206 with ``Content-Range`` for one range (``bytes=a-b``, ``a-``, ``-n``); several
      ranges, another unit or bad syntax are answered whole (200), as RFC 9110 allows;
    - 416 with ``Content-Range: bytes */size`` for a range past the end;
    - 304 on ``If-None-Match`` / ``If-Modified-Since`` (``If-None-Match`` wins), 412 on
      ``If-Match`` / ``If-Unmodified-Since``; ``If-Range`` (ETag or date) serves the range
      only while it holds, else the whole object;
    - HEAD: the same status and headers, no body (one HEAD request to the store);
    - 404 for a missing key.

    The object is read with one ranged GET (plus a HEAD first when the request has
    conditions, so a 304 costs no GET); its body is closed when the answer is sent, fails, or
    the client disconnects. Return the response from the handler: it owns an open body.

    Args:
        download_name: sets ``Content-Disposition: attachment`` with this file name (RFC 6266,
            ``filename*`` for non-ASCII names).
        storage: the :class:`~mpr_storage.Storage` to read from; the loop's default if None.

    Raises:
        AccessDeniedError, StorageConnectionError, ...: the store's other refusals, as the
            library raises them (an app's error handler turns them into 403/502).
    """
    open_object, stat_object = _calls(storage)
    method = request.method.upper()
    headers = request.headers
    spec = _parse_range(headers.get("range")) if method == "GET" else None
    span: tuple[int, int | None] | None = None
    if spec is not None and spec[0] is not None:
        span = spec[0], None if spec[1] is None else spec[1] + 1
    elif spec is not None and spec[1]:
        span = -spec[1], None
    elif spec is None:
        span = 0, None
    if method == "HEAD" or span is None or any(name in headers for name in _CONDITIONS):
        try:
            info = await stat_object(bucket, key)
        except ObjectNotFoundError:
            return _not_found(method)
        plan = _plan_answer(method, headers, info)
        if method == "HEAD" or plan.status not in (200, 206):
            return _bodyless(plan, info, key, download_name)
        span = _span(plan, info)
    for _ in range(_ATTEMPTS):
        stack = AsyncExitStack()
        try:
            body = await stack.enter_async_context(
                open_object(bucket, key, start=span[0], end=span[1])
            )
        except ObjectNotFoundError:
            return _not_found(method)
        except InvalidRangeError:  # past the end: the size decides between 416 and less
            try:
                info = await stat_object(bucket, key)
            except ObjectNotFoundError:
                return _not_found(method)
            plan = _plan_answer(method, headers, info)
            if plan.status not in (200, 206):
                return _bodyless(plan, info, key, download_name)
            span = _span(plan, info)
            continue
        try:
            info = body.info
            plan = _plan_answer(method, headers, info)
            if plan.status in (200, 206) and (body.start, body.end) == (plan.start, plan.end):
                answer = _headers(info, download_name)
                answer["content-type"] = _content_type(info, key)
                answer["content-length"] = str(plan.end - plan.start)
                if plan.status == 206:
                    answer["content-range"] = f"bytes {plan.start}-{plan.end - 1}/{info.size}"
                return _ObjectStream(body, stack, plan.status, answer)
        except BaseException:
            await _close(stack)
            raise
        await _close(stack)  # not what the request needs (changed meanwhile, If-Range)
        if plan.status not in (200, 206):
            return _bodyless(plan, info, key, download_name)
        span = _span(plan, info)
    return Response("the object keeps changing", status_code=503, headers={"retry-after": "1"})


def _span(plan: _Plan, info: ObjectInfo) -> tuple[int, int | None]:
    """``open_object``'s ``start``/``end`` for the plan's bytes (``None``: to the end)."""
    return plan.start, None if plan.end >= info.size else plan.end
