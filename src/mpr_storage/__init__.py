"""Async-first S3 storage for the MPR pipeline: helpers, frame-cache transfers, errors.

```python
import asyncio, mpr_storage

async def main() -> None:
    await mpr_storage.upload_file("clip.mp4", mpr_storage.BUCKET_IN, "chunks/2025-04-15/clip.mp4")
    print(await mpr_storage.list_objects(mpr_storage.BUCKET_IN, "chunks/"))

asyncio.run(main())
```

Blocking code uses :mod:`mpr_storage.sync` (also importable as ``core.storage``).
"""

from __future__ import annotations

import logging as _logging
import os as _os

from ._config import DEFAULT_BUCKET_IN as _DEFAULT_BUCKET_IN
from ._config import DEFAULT_BUCKET_OUT as _DEFAULT_BUCKET_OUT
from ._config import ProviderProfile as ProviderProfile
from ._config import StorageSettings as StorageSettings
from ._errors import AccessDeniedError as AccessDeniedError
from ._errors import BucketNotFoundError as BucketNotFoundError
from ._errors import ConfigError as ConfigError
from ._errors import InvalidKeyError as InvalidKeyError
from ._errors import InvalidRangeError as InvalidRangeError
from ._errors import LocalFileError as LocalFileError
from ._errors import ObjectExistsError as ObjectExistsError
from ._errors import ObjectNotFoundError as ObjectNotFoundError
from ._errors import PreconditionFailedError as PreconditionFailedError
from ._errors import StorageConnectionError as StorageConnectionError
from ._errors import StorageError as StorageError
from ._errors import StorageTimeoutError as StorageTimeoutError
from ._errors import ThrottledError as ThrottledError
from ._errors import TransferError as TransferError
from ._errors import TransferReport as TransferReport
from ._models import PresignedPost as PresignedPost
from ._models import ProgressCallback as ProgressCallback
from ._objects import ObjectInfo as ObjectInfo
from ._preload import load_anyio as _load_anyio
from ._read import ObjectBody as ObjectBody
from ._storage import Storage as Storage
from ._storage import copy_object as copy_object
from ._storage import delete_objects as delete_objects
from ._storage import download_file as download_file
from ._storage import download_many as download_many
from ._storage import download_to_temp as download_to_temp
from ._storage import frame_cache_exists as frame_cache_exists
from ._storage import frame_cache_prefix as frame_cache_prefix
from ._storage import get_bytes as get_bytes
from ._storage import get_presigned_post as get_presigned_post
from ._storage import get_presigned_url as get_presigned_url
from ._storage import get_s3_client as get_s3_client
from ._storage import iter_objects as iter_objects
from ._storage import list_buckets as list_buckets
from ._storage import list_objects as list_objects
from ._storage import list_prefixes as list_prefixes
from ._storage import object_exists as object_exists
from ._storage import open_object as open_object
from ._storage import prefetch_frames as prefetch_frames
from ._storage import put_bytes as put_bytes
from ._storage import stat_object as stat_object
from ._storage import upload_file as upload_file
from ._storage import upload_frames as upload_frames
from ._storage import upload_many as upload_many

# Logs go to the "mpr_storage" logger (and its children): silent unless the application
# configures logging, as libraries do.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

#: The source media bucket (``S3_BUCKET_IN``, read at import).
BUCKET_IN: str = _os.environ.get("S3_BUCKET_IN") or _DEFAULT_BUCKET_IN
#: The artifacts bucket: frame caches, overlays (``S3_BUCKET_OUT``, read at import).
BUCKET_OUT: str = _os.environ.get("S3_BUCKET_OUT") or _DEFAULT_BUCKET_OUT

__all__ = [
    "BUCKET_IN",
    "BUCKET_OUT",
    "AccessDeniedError",
    "BucketNotFoundError",
    "ConfigError",
    "InvalidKeyError",
    "InvalidRangeError",
    "LocalFileError",
    "ObjectExistsError",
    "ObjectBody",
    "ObjectInfo",
    "ObjectNotFoundError",
    "PreconditionFailedError",
    "PresignedPost",
    "ProgressCallback",
    "ProviderProfile",
    "Storage",
    "StorageConnectionError",
    "StorageError",
    "StorageSettings",
    "StorageTimeoutError",
    "ThrottledError",
    "TransferError",
    "TransferReport",
    "copy_object",
    "delete_objects",
    "download_file",
    "download_many",
    "download_to_temp",
    "frame_cache_exists",
    "frame_cache_prefix",
    "get_presigned_post",
    "get_presigned_url",
    "get_bytes",
    "get_s3_client",
    "iter_objects",
    "list_buckets",
    "list_objects",
    "list_prefixes",
    "object_exists",
    "open_object",
    "prefetch_frames",
    "put_bytes",
    "stat_object",
    "upload_file",
    "upload_frames",
    "upload_many",
]

__locals = locals()
for __name in __all__:
    if not __name.startswith("BUCKET_") and __name != "ProgressCallback":
        __locals[__name].__module__ = "mpr_storage"

_load_anyio()  # at import, not in the first request (see _preload)
