"""A lazy walk of an upload's source tree that reports every entry it cannot upload."""

from __future__ import annotations

import os
import stat
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from ._manifest import MANIFEST_NAME

__all__ = ["Found", "Problem", "walk_files"]


@dataclass(frozen=True, slots=True)
class Found:
    """A regular file (or a symlink to one): its relative POSIX path, path and size."""

    rel: str
    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class Problem:
    """An entry that cannot be uploaded: why, and its path (``rel`` is printable)."""

    rel: str
    path: Path
    reason: str
    errno: int | None = None


def _printable(rel: str) -> str:
    """``rel`` with undecodable bytes shown as ``\\xNN`` (always valid UTF-8)."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes from a non-UTF-8 file name
        return False
    return True


def walk_files(root: Path) -> Generator[Found | Problem, None, None]:
    """Blocking and lazy: the files under ``root`` in sorted order, one directory listed at a
    time (never the whole tree in memory). Symlinks to files and directories are followed
    (each real directory once). Dangling symlinks, unreadable directories, special files
    (FIFOs, devices, sockets, also behind symlinks) and names that are not UTF-8 come out as
    :class:`Problem` without being opened. Our own bookkeeping (the manifest, ``.*.part``
    temp files) is left out."""
    real_root = os.stat(root)
    seen = {(real_root.st_dev, real_root.st_ino)}
    stack: list[str] = [""]
    while stack:
        rel_dir = stack.pop()
        directory = root / rel_dir if rel_dir else root
        try:
            with os.scandir(directory) as it:
                names = sorted(entry.name for entry in it)
        except OSError as exc:
            yield Problem(_printable(rel_dir + "/"), directory, _why(exc), exc.errno)
            continue
        subdirs: list[str] = []
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            path = directory / name
            if name == MANIFEST_NAME or (name.startswith(".") and name.endswith(".part")):
                continue
            if not _is_utf8(name):
                yield Problem(_printable(rel), path, "file name is not valid UTF-8: not uploaded")
                continue
            try:
                st = os.stat(path)  # follows symlinks, never opens
            except OSError as exc:
                dangling = os.path.islink(path)
                reason = "dangling symlink" if dangling else _why(exc)
                yield Problem(_printable(rel), path, reason, exc.errno)
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) not in seen:  # a symlink loop is walked once
                    seen.add((st.st_dev, st.st_ino))
                    subdirs.append(rel)
            elif stat.S_ISREG(st.st_mode):
                yield Found(rel, path, st.st_size)
            else:
                yield Problem(rel, path, f"not a regular file ({_kind(st.st_mode)}): not read")
        stack.extend(reversed(subdirs))  # depth first, in sorted order


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"
