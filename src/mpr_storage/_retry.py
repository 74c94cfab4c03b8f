"""Jittered exponential backoff for failures botocore's retries don't cover (streamed bodies)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ._errors import StorageConnectionError, StorageError, ThrottledError

__all__ = ["RETRYABLE", "backoff_delay", "is_retryable", "retry"]

T = TypeVar("T")

RETRYABLE: tuple[type[StorageError], ...] = (StorageConnectionError, ThrottledError)
_RETRYABLE_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "500",
    "502",
    "503",
    "504",
}


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is transient: a connection problem, throttling or a 5xx."""
    return isinstance(exc, RETRYABLE) or (
        isinstance(exc, StorageError) and exc.code in _RETRYABLE_CODES
    )


def backoff_delay(attempt: int, *, base: float = 0.1, cap: float = 5.0) -> float:
    """Full-jitter exponential backoff for the ``attempt``-th retry (1-based)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    when: Callable[[StorageError], bool] = is_retryable,
) -> T:
    """Await ``fn()`` up to ``attempts`` times while it fails with an error ``when`` accepts."""
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except StorageError as exc:
            if attempt == attempts or not when(exc):
                raise
        await anyio.sleep(backoff_delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover
