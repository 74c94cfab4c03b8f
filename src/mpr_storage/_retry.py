"""The one retry loop: botocore's standard-mode classification, full-jitter backoff, a budget."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from ._errors import REFRESH_CODES, THROTTLING_CODES, StorageConnectionError, StorageError

__all__ = [
    "Clock",
    "RetryPolicy",
    "backoff_delay",
    "clock",
    "is_retryable",
    "is_throttle",
    "retrying",
]

T = TypeVar("T")

BACKOFF_BASE = 1.0  # seconds; botocore's standard mode: random(0, 1) * min(2 ** n, 20)
BACKOFF_CAP = 20.0
_RETRYABLE_STATUS = frozenset({500, 502, 503, 504, 429})
# botocore's transient codes (retries/standard.py), plus S3's answers that come with a 5xx.
_TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "ServiceUnavailable",
        "500",
        "502",
        "503",
        "504",
    }
)
_NEVER = frozenset({"TLSError"})  # an untrusted certificate does not heal by retrying
_log = logging.getLogger(__name__)


def is_throttle(exc: StorageError) -> bool:
    """Whether the server asked us to slow down: a throttling code, 429 or 503."""
    return exc.code in THROTTLING_CODES or exc.status in (429, 503)


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is transient, classified as botocore's standard mode does: HTTP status
    first (500/502/503/504), then throttling and transient codes, then connection errors
    (resets, timeouts, bodies cut short)."""
    if not isinstance(exc, StorageError) or exc.code in _NEVER:
        return False
    return (
        exc.status in _RETRYABLE_STATUS
        or exc.code in _TRANSIENT_CODES
        or is_throttle(exc)
        or isinstance(exc, StorageConnectionError)
    )


def backoff_delay(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Full-jitter exponential backoff before the ``attempt``-th retry (1-based)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


class Clock:
    """What the retry loop waits with: the monotonic clock and a sleep. The one instance,
    :data:`clock`, is what tests replace to check a backoff schedule without sleeping it."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


clock = Clock()


@dataclass(frozen=True)
class RetryPolicy:
    """How long a request keeps trying: ``attempts`` in all, within ``budget`` seconds."""

    attempts: int
    budget: float
    base: float = BACKOFF_BASE


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    refresh: Callable[[StorageError], Awaitable[bool]] | None = None,
    on_throttle: Callable[[], object] | None = None,
    failed: StorageError | None = None,
) -> T:
    """Await ``call()`` until it succeeds, retrying what :func:`is_retryable` accepts.

    Waits a full-jitter backoff between attempts, or the server's ``Retry-After`` when longer,
    and gives up (raising the last error) after ``policy.attempts`` attempts or once the next
    wait would overrun ``policy.budget`` seconds. An answer saying the credentials (or the
    clock) are stale gets one ``refresh(error)`` and an immediate retry when ``refresh`` says
    something changed. ``on_throttle()`` is told of every throttling answer (bulk transfers
    lower their concurrency on it). ``failed``: the error of a first attempt the caller made
    itself (it counts as the first), so that a call that succeeds at once never enters here.
    """
    deadline = clock.now() + policy.budget
    refreshed = False
    attempt = 0
    error = failed
    while True:
        attempt += 1
        if error is None:
            try:
                return await call()
            except StorageError as caught:
                error = caught
        exc, error = error, None
        if exc.code in REFRESH_CODES and not refreshed and refresh is not None:
            refreshed = True
            if await refresh(exc):
                attempt -= 1  # a stale credential is not the server's failure
                continue
        if not is_retryable(exc) or attempt >= policy.attempts:
            raise exc
        if on_throttle is not None and is_throttle(exc):
            on_throttle()
        delay = backoff_delay(attempt, base=policy.base)
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        if clock.now() + delay > deadline:
            raise exc
        _log.info(
            "%s s3://%s/%s: %s (HTTP %s) at attempt %d of %d: retrying in %.2f s",
            exc.operation, exc.bucket or "", exc.key or "", exc.code or type(exc).__name__,
            exc.status if exc.status is not None else "-", attempt, policy.attempts, delay,
        )  # fmt: skip
        await clock.sleep(delay)
