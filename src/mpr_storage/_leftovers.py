"""The temp files of killed runs: found by their names (see ``_files.temp_name``), removed."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable

from ._files import _PLACE

__all__ = ["STALE_TEMP", "remove_stale_temps"]

# temp_name's names; before the pid had its "-", pid, salt and counter ran together
_TEMP_NAME = re.compile(
    r"\..+\.(?:(?P<pid>[0-9a-f]{1,8})-(?P<place>[0-9a-f]{6})[0-9a-f]{7,}|[0-9a-f]{8,})\.part",
    re.S,
)
STALE_TEMP = 24 * 3600.0
"""Seconds after which a temp file whose owner cannot be told (an older name) is a leftover."""


def remove_stale_temps(
    directory: str | os.PathLike[str],
    *,
    before: float,
    keep: Callable[[str], bool],
    seen: set[str] | None = None,
) -> int:
    """Blocking: remove the temp files that killed runs left in ``directory``; how many.
    ``seen``, if given, receives the name of every entry the directory had.

    Only regular files named as :func:`temp_name` names them, last modified before
    ``before`` (the current run's start, ``time.time()``), and not kept by ``keep(name)``:
    those whose process is gone (written on this host, in this PID namespace, by a pid that
    names no process now), or, when that cannot be told (another host or container, an older
    name without a readable pid), older than :data:`STALE_TEMP`. Nothing else is
    touched; an unreadable directory is left alone.
    """
    try:
        entries = os.scandir(directory)
    except OSError:
        return 0
    removed = 0
    with entries:
        for entry in entries:
            name = entry.name
            if seen is not None:
                seen.add(name)
            if not (name.startswith(".") and name.endswith(".part")):
                continue
            found = _TEMP_NAME.fullmatch(name)
            if found is None or keep(name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_mtime >= before:
                continue
            pid = found.group("pid")
            here = found.group("place") == _PLACE
            gone = pid is not None and here and not _process_exists(int(pid, 16))
            if gone or st.st_mtime < before - STALE_TEMP:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def _process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (when unsure: yes)."""
    if pid == os.getpid():
        return True
    if os.name != "posix" or pid <= 0:
        return True  # on Windows os.kill(pid, 0) would terminate it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, another user's
        return True
    return True
