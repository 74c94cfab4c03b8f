"""Start a local S3 server (SeaweedFS, or moto as an in-memory fallback) on loopback.

Modules: ``_local`` (:class:`LocalS3Server`), ``_seaweedfs`` (one SeaweedFS server's start and
stop) on ``_weed`` (its ``weed`` binary: flags, readiness, log), ``_moto`` (the fallback) and
``_ports``.
"""

from __future__ import annotations

from ._local import LocalS3Server, ServerKind
from ._weed import find_weed

__all__ = ["LocalS3Server", "ServerKind", "find_weed"]
