"""Object keys: validation, and the safe mapping of keys to paths inside a directory."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import InvalidKeyError, LocalFileError

__all__ = [
    "MAX_KEY_BYTES",
    "KeyMapper",
    "check_bucket",
    "check_bucket_and_key",
    "check_key",
    "check_key_iterable",
]

MAX_KEY_BYTES = 1024  # S3's limit on the UTF-8 length of a key


def check_bucket(bucket: object, *, operation: str) -> str:
    """Return ``bucket`` if it is a non-empty string, else raise :class:`InvalidKeyError`."""
    if not isinstance(bucket, str) or not bucket or "/" in bucket:
        raise InvalidKeyError(
            f"bucket name must be a non-empty string without '/', got {bucket!r}",
            operation=operation,
        )
    return bucket


def check_key(key: object, *, operation: str, bucket: str | None = None) -> str:
    """Return ``key`` if S3 can store it, else raise :class:`InvalidKeyError`."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(
            f"key must be a non-empty string, got {key!r}", operation=operation, bucket=bucket
        )
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKeyError(
            f"key is longer than {MAX_KEY_BYTES} bytes",
            operation=operation,
            bucket=bucket,
            key=key[:64] + "...",
        )
    if "\x00" in key:
        raise InvalidKeyError(
            "key contains a NUL character",
            operation=operation,
            bucket=bucket,
            key=key.replace("\x00", "\\0"),
        )
    return key


def check_bucket_and_key(bucket: object, key: object, *, operation: str) -> None:
    """An object's bucket and key, checked before any request (:func:`check_bucket`, then
    :func:`check_key`)."""
    check_key(key, operation=operation, bucket=check_bucket(bucket, operation=operation))


def check_key_iterable(keys: object, *, operation: str, bucket: str) -> None:
    """Refuse a bare ``str``/``bytes`` where an iterable of keys is expected, before any
    request: iterating it would act on one-character keys."""
    if isinstance(keys, (str, bytes, bytearray, memoryview)):
        kind = type(keys).__name__
        raise TypeError(
            f"{operation} s3://{bucket}: keys must be an iterable of keys, not a single {kind} "
            f"(wrap one key in a list: [key])"
        )


class KeyMapper:
    """Maps keys to paths under ``dest_dir`` (``dest_dir / key.removeprefix(prefix)``).

    A key that is absolute, has ``.``/``..``/empty segments, or resolves outside ``dest_dir``
    (also through a symlinked directory) raises :class:`InvalidKeyError`; the check is made on
    real paths *before* any directory is created. A regular file standing where a directory
    is needed (``meta`` vs ``meta/x.json``) raises :class:`LocalFileError`. Names like
    ``a..b``, spaces, ``+``, ``:`` and unicode are ordinary file names.
    """

    def __init__(
        self,
        dest_dir: str | os.PathLike[str],
        prefix: str = "",
        *,
        operation: str = "download_many",
        bucket: str | None = None,
    ) -> None:
        self.root = Path(os.path.realpath(dest_dir))
        self.prefix = prefix
        self._operation = operation
        self._bucket = bucket
        self._checked_dirs: set[str] = set()
        self._ready_dirs: set[str] = set()

    def relative(self, key: str) -> str:
        """The key's path under the destination, as a ``/``-separated string (unchecked)."""
        return key.removeprefix(self.prefix)

    def path_for(self, key: str) -> Path:
        """The destination path of ``key``; checks it lexically (no filesystem access)."""
        rel = self.relative(key)
        parts = rel.split("/")
        if (
            not rel
            or "\x00" in rel
            or any(part in ("", ".", "..") for part in parts)
            or os.path.isabs(rel)
        ):
            raise InvalidKeyError(
                f"key does not map to a file inside {str(self.root)!r}",
                operation=self._operation,
                bucket=self._bucket,
                key=key,
            )
        return self.root.joinpath(*parts)

    def check(self, key: str) -> Path:
        """Like :meth:`path_for`, and check on the real file system, without creating anything,
        that the parent directory stays inside the destination (no symlink leads out) and that
        no file stands where a directory is needed. Blocking: a few syscalls per new directory.
        """
        path = self.path_for(key)
        parent = os.path.dirname(path)
        if parent not in self._checked_dirs:
            self._check_dir(parent, key)
            self._checked_dirs.add(parent)
        return path

    def ready(self, path: Path) -> bool:
        """Whether :meth:`prepare` made ``path``'s directory already: nothing left to do."""
        return os.path.dirname(path) in self._ready_dirs  # a string: no Path made per key

    def prepare(self, key: str) -> Path:
        """Like :meth:`check`, and create the parent directory (once). Blocking."""
        path = self.check(key)
        if not self.ready(path):
            parent = os.path.dirname(path)
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                message = f"cannot create the directory: {exc.strerror}"
                raise self._local_error(message, parent, key) from exc
            self._check_dir(parent, key)  # again: a symlink may have appeared meanwhile
            self._ready_dirs.add(parent)
        return path

    def _check_dir(self, parent: str, key: str) -> None:
        real = os.path.realpath(parent)  # resolves every symlink among the existing parts
        if os.path.commonpath([real, str(self.root)]) != str(self.root):
            raise InvalidKeyError(
                f"key resolves outside {str(self.root)!r} through a symlink",
                operation=self._operation,
                bucket=self._bucket,
                key=key,
            )
        existing = real
        while not os.path.lexists(existing):  # the nearest part that exists must be a directory
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise self._local_error("a file stands where a directory is needed", existing, key)

    def _local_error(self, message: str, path: str, key: str) -> LocalFileError:
        return LocalFileError(
            message, path=path, operation=self._operation, bucket=self._bucket, key=key
        )
