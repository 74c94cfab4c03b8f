"""A bulk call's limit on requests in flight, on its own: halved on throttling, grown back."""

from __future__ import annotations

from mpr_storage._concurrency import AdaptiveLimit


def test_adaptive_limit_halves_on_throttling_and_recovers() -> None:
    limit = AdaptiveLimit(64)
    limit.throttled()
    assert limit.total == 32
    limit.throttled()  # the same burst: not cut again
    assert limit.total == 32
    for _ in range(32):
        limit.succeeded()
    assert limit.total == 33
    for _ in range(10_000):
        limit.succeeded()
    assert limit.total == 64
