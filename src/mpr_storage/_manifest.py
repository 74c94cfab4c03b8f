"""The download manifest: what a download wrote, for the skip decisions of the next one.

A download records, per file it wrote, the bucket, the key, the size, the ETag and the local
file's mtime (after the write) in ``.mpr-manifest.json`` beside the files. A later pass keeps a
file only when all of them still agree: the local file is untouched since we wrote it, and the
remote object is still the one we fetched.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._files import write_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: merge on save without a lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["MANIFEST_NAME", "Entry", "Manifest"]

MANIFEST_NAME = ".mpr-manifest.json"
"""Sidecar file a download writes into its destination (see the module docstring)."""

_VERSION = 2


@dataclass(frozen=True, slots=True)
class Entry:
    """What we know about one file we wrote."""

    bucket: str
    key: str
    size: int
    etag: str
    mtime_ns: int

    def matches_file(self, st: os.stat_result) -> bool:
        """The local file is still the one we wrote (same size, same mtime)."""
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns

    def to_json(self) -> list[Any]:
        return [self.bucket, self.key, self.size, self.etag, self.mtime_ns]

    @classmethod
    def from_json(cls, value: object) -> Entry | None:
        """The entry, or ``None`` for anything malformed (an old format, a hand edit)."""
        if not isinstance(value, list) or len(value) != 5:
            return None
        bucket, key, size, etag, mtime_ns = value
        if not (
            isinstance(bucket, str)
            and isinstance(key, str)
            and isinstance(etag, str)
            and type(size) is int
            and type(mtime_ns) is int
        ):
            return None
        return cls(bucket, key, size, etag, mtime_ns)


class Manifest:
    """The manifest of one destination directory.

    Loading never fails: a missing, unreadable or malformed file, or a malformed entry, means
    "nothing known" for the files concerned (they are checked or fetched again). Saving merges
    our changes into what is on disk at that moment, under an exclusive ``flock`` on the
    directory where available, so two processes downloading into one directory at once both
    keep their entries; an entry whose file was since replaced by someone else is not kept.
    """

    def __init__(self, root: Path, entries: dict[str, Entry]) -> None:
        self.root = root
        self.path = root / MANIFEST_NAME
        self.entries = entries
        self._changes: dict[str, Entry] = {}

    @classmethod
    def load(cls, root: Path) -> Manifest:
        """Blocking: the manifest in ``root`` (empty if there is none)."""
        return cls(root, _read(root / MANIFEST_NAME))

    def get(self, rel: str) -> Entry | None:
        return self.entries.get(rel)

    def record(self, rel: str, entry: Entry) -> None:
        self.entries[rel] = entry
        self._changes[rel] = entry

    @property
    def changed(self) -> bool:
        return bool(self._changes)

    def save(self) -> None:
        """Blocking: merge our changes into the file on disk (atomically replaced)."""
        if not self._changes:
            return
        with _locked(self.root):
            merged = _read(self.path)
            for rel, ours in self._changes.items():
                theirs = merged.get(rel)
                st = _lstat(self.root / rel)
                if st is not None and ours.matches_file(st):
                    merged[rel] = ours
                elif theirs is None or st is None or not theirs.matches_file(st):
                    merged.pop(rel, None)  # nobody's entry describes the file now
            payload = {"version": _VERSION, "files": {r: e.to_json() for r, e in merged.items()}}
            write_atomic(self.path, json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        self._changes.clear()


def _read(path: Path) -> dict[str, Entry]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or data.get("version") != _VERSION:
        return {}
    entries: dict[str, Entry] = {}
    for rel, value in files.items():
        entry = Entry.from_json(value)
        if entry is not None and isinstance(rel, str):
            entries[rel] = entry
    return entries


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive advisory lock on the directory itself (no lock file left behind)."""
    if fcntl is None:
        yield
        return
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
