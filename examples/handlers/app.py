"""The MPR web API's storage handlers on mpr_storage: sources, frame strips, overlays, caches.

Run it from the repository root (``S3_*`` variables name the store, as for the library):

    uvicorn --app-dir examples/handlers app:app
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

import mpr_storage
from mpr_storage import (
    InvalidKeyError,
    InvalidRangeError,
    ObjectExistsError,
    ObjectNotFoundError,
    Storage,
)
from mpr_storage.web import object_response

MAX_OVERLAY = 16 * 1024 * 1024
"""The largest overlay a PUT may send (413 beyond): a handler holds it in memory."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One storage for the app's life (settings from the environment), closed at shutdown."""
    async with Storage() as storage:
        app.state.storage = storage
        yield


app = FastAPI(title="MPR storage handlers", lifespan=lifespan)


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


S3 = Annotated[Storage, Depends(_storage)]


# The library's errors as HTTP answers (its other errors, e.g. an unreachable store, stay 500s).
@app.exception_handler(ObjectNotFoundError)
async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": "not found"}, status_code=404)


@app.exception_handler(InvalidKeyError)
async def _bad_key(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=400)


@app.exception_handler(InvalidRangeError)
async def _bad_range(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=416)


@app.exception_handler(ObjectExistsError)
async def _exists(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": "exists"}, status_code=409)


@app.api_route("/sources/{key:path}", methods=["GET", "HEAD"])
async def source(key: str, request: Request, storage: S3, download: str | None = None) -> Response:
    """A source video for the browser's ``<video>``: ranges (seeking), ETag/304, HEAD;
    ``?download=NAME`` makes it a download saved as NAME."""
    return await object_response(
        request, storage.settings.bucket_in, key, download_name=download, storage=storage
    )


@app.get("/frames/{timeline}/cached")
async def cached(timeline: str, storage: S3) -> dict[str, object]:
    """Whether the timeline's frame cache exists (one LIST of at most one key)."""
    return {"timeline": timeline, "cached": await storage.frame_cache_exists(timeline)}


@app.get("/frames/{timeline}")
async def frame_strip(
    timeline: str,
    storage: S3,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, object]:
    """A window of the frame strip: ``limit`` frames after ``after`` (a key or a frame's
    name) as presigned GET URLs, from one LIST request; ``next`` continues the strip."""
    bucket, prefix = storage.settings.bucket_out, mpr_storage.frame_cache_prefix(timeline)
    if after is not None and not after.startswith(prefix):
        after = prefix + after
    window = await storage.list_objects(bucket, prefix, start_after=after, limit=limit)
    frames = [
        {"key": o.key, "size": o.size, "url": await storage.get_presigned_url(bucket, o.key)}
        for o in window
    ]
    return {"frames": frames, "next": window[-1].key if len(window) == limit else None}


@app.put("/overlays/{job}/{name}", status_code=201)
async def put_overlay(
    job: str, name: str, request: Request, storage: S3, create_only: bool = False
) -> Response:
    """Store a debug overlay (its ``Content-Type`` kept); ``?create_only=true`` refuses to
    replace one (409)."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_OVERLAY:
            return JSONResponse({"detail": "overlay too large"}, status_code=413)
    info = await storage.put_bytes(
        data,
        storage.settings.bucket_out,
        f"overlays/{job}/{name}",
        content_type=request.headers.get("content-type"),
        overwrite=not create_only,
    )
    return JSONResponse({"key": info.key, "size": info.size, "etag": info.etag}, status_code=201)


@app.get("/overlays/{job}/{name}")
async def get_overlay(job: str, name: str, storage: S3) -> Response:
    """An overlay, read whole (they are small; ``object_response`` streams large objects)."""
    data = await storage.get_bytes(storage.settings.bucket_out, f"overlays/{job}/{name}")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(data, media_type=media_type)
