"""A proxy.py plugin that logs every request the forward proxy handles, one line each.

Loaded by the proxy's own process (see ``nettools.ForwardProxy``), never by the tests."""

from __future__ import annotations

import os
from typing import Any

from proxy.http.proxy import HttpProxyBasePlugin


class CountRequests(HttpProxyBasePlugin):  # type: ignore[misc]
    def handle_client_request(self, request: Any) -> Any:
        with open(os.environ["FORWARD_PROXY_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{request.method.decode()} {request.path.decode()}\n")
        return request
