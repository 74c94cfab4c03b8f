"""The example handlers app (examples/handlers/app.py) for tests: loaded from its file, served
through httpx's ASGI transport (with its lifespan) or by uvicorn on loopback in a thread."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

APP_FILE = Path(__file__).parent.parent / "examples" / "handlers" / "app.py"


def load_app() -> Any:
    """The example's FastAPI app (its module imported once per process)."""
    name = "mpr_example_handlers"
    module: ModuleType | None = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, APP_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module.app


@asynccontextmanager
async def asgi_client(app: Any) -> AsyncIterator[Any]:
    """An ``httpx.AsyncClient`` calling ``app`` in this process, its lifespan run around it
    (httpx's ASGI transport does not run it): the app's storage reads the environment then."""
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            yield client


class Uvicorn:
    """``with Uvicorn(app) as server:`` serves ``app`` on ``server.url`` (127.0.0.1, a free
    port) from a thread running uvicorn with its lifespan; stopped and joined on exit."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        config = uvicorn.Config(app, lifespan="on", log_level="warning", loop="asyncio")
        self._server = uvicorn.Server(config)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> Uvicorn:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError("uvicorn did not start (see its log above)")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._socket.close()
