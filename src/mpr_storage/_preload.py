"""anyio's lazily loaded parts, loaded with the package instead of by the first request."""

from __future__ import annotations

import anyio

__all__ = ["load_anyio"]

_USED = (
    "CancelScope",
    "CapacityLimiter",
    "Event",
    "Lock",
    "Path",
    "create_task_group",
    "from_thread",
    "sleep",
    "to_thread",
)


def load_anyio() -> None:
    """Import the anyio APIs this package uses and anyio's asyncio backend now.

    anyio (4.16 at least) imports each API on first access and its asyncio backend on the
    first call that needs it: ~20 ms, paid by whichever request comes first in a process,
    e.g. an API handler's. Importing ``mpr_storage`` pays it instead.
    """
    for name in _USED:
        getattr(anyio, name)
    from anyio._core._eventloop import get_async_backend

    get_async_backend("asyncio")
