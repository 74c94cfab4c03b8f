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

from . import (
    _copy,
    _downloads,
    _frames,
    _listing,
    _objects,
    _presign,
    _put,
    _read,
    _surface,
    _uploads,
)
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
from ._frames import frame_cache_prefix as frame_cache_prefix
from ._models import PresignedPost as PresignedPost
from ._models import ProgressCallback as ProgressCallback
from ._objects import ObjectInfo as ObjectInfo
from ._preload import load_anyio as _load_anyio
from ._read import ObjectBody as ObjectBody
from ._storage import Storage as Storage
from ._storage import default_storage as _default_storage

# The one list of the public names. mypy and IDEs read a literal ``__all__`` only, so the names
# stand here as text; the other surfaces are checked against it (tests/test_surface.py): each
# call that is a ``Storage`` method is a function below, and ``mpr_storage.sync`` (with
# ``core.storage``) exports the same names in their blocking forms.
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

# Logs go to the "mpr_storage" logger (and its children): silent unless the application
# configures logging, as libraries do.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

#: The source media bucket (``S3_BUCKET_IN``, read at import).
BUCKET_IN: str = _os.environ.get("S3_BUCKET_IN") or _DEFAULT_BUCKET_IN
#: The artifacts bucket: frame caches, overlays (``S3_BUCKET_OUT``, read at import).
BUCKET_OUT: str = _os.environ.get("S3_BUCKET_OUT") or _DEFAULT_BUCKET_OUT


# --- the module-level functions: each implementation, on the running loop's default ----------

get_s3_client = _surface.on_default(Storage.get_s3_client, _default_storage)
iter_objects = _surface.iterator_on_default(_listing.iter_objects, _default_storage)
list_objects = _surface.on_default(_listing.list_objects, _default_storage)
list_prefixes = _surface.on_default(_listing.list_prefixes, _default_storage)
object_exists = _surface.on_default(_objects.object_exists, _default_storage)
stat_object = _surface.on_default(_objects.stat_object, _default_storage)
list_buckets = _surface.on_default(_listing.list_buckets, _default_storage)
delete_objects = _surface.on_default(_objects.delete_objects, _default_storage)
download_file = _surface.on_default(_objects.download_file, _default_storage)
download_to_temp = _surface.on_default(_objects.download_to_temp, _default_storage)
upload_file = _surface.on_default(_put.upload_file, _default_storage)
copy_object = _surface.on_default(_copy.copy_object, _default_storage)
open_object = _surface.context_on_default(_read.open_object, _default_storage)
get_bytes = _surface.on_default(_read.get_bytes, _default_storage)
put_bytes = _surface.on_default(_read.put_bytes, _default_storage)
get_presigned_url = _surface.on_default(_presign.get_presigned_url, _default_storage)
get_presigned_post = _surface.on_default(_presign.get_presigned_post, _default_storage)
download_many = _surface.on_default(_downloads.download_many, _default_storage)
upload_many = _surface.on_default(_uploads.upload_many, _default_storage)
frame_cache_exists = _surface.on_default(_frames.frame_cache_exists, _default_storage)
upload_frames = _surface.on_default(_frames.upload_frames, _default_storage)
prefetch_frames = _surface.on_default(_frames.prefetch_frames, _default_storage)

__locals = locals()
for __name in __all__:
    if not __name.startswith("BUCKET_") and __name != "ProgressCallback":
        __locals[__name].__module__ = "mpr_storage"

_load_anyio()  # at import, not in the first request (see _preload)
