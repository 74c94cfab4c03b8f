"""The ``cp`` command: a server-side copy between two keys (no bytes through this machine)."""

from __future__ import annotations

from pathlib import PurePosixPath

from .. import Storage
from ._base import EXIT_OK, Context, UsageError, is_url, parse_s3_url, size

__all__ = ["cmd_cp", "locations"]

_USAGE = "give SRC and DEST as s3://BUCKET/KEY (or BUCKET KEY each)"


def locations(args: list[str]) -> tuple[tuple[str, str], tuple[str, str]]:
    """``((src_bucket, src_key), (dest_bucket, dest_key))`` from ``s3://B/K s3://B/K``, or
    ``BUCKET KEY`` in place of either. A DEST key that is empty or ends in ``/`` is a
    "directory": the source's file name is appended, as ``cp`` does."""
    found: list[tuple[str, str]] = []
    rest = list(args)
    while rest:
        first = rest.pop(0)
        if is_url(first):
            found.append(parse_s3_url(first))
        elif rest and not is_url(rest[0]):
            found.append((first, rest.pop(0)))
        else:
            raise UsageError(f"{first!r} needs a KEY after it: {_USAGE}")
    if len(found) != 2:
        raise UsageError(f"cp copies one SRC to one DEST: {_USAGE}")
    (src_bucket, src_key), (dest_bucket, dest_key) = found
    if not src_key or src_key.endswith("/"):
        raise UsageError("cp copies one object: SRC must name a key, not a prefix")
    if not dest_key or dest_key.endswith("/"):
        dest_key += PurePosixPath(src_key).name
    return (src_bucket, src_key), (dest_bucket, dest_key)


async def cmd_cp(ctx: Context, s: Storage) -> int:
    """Copy one object to another key or bucket, on the server."""
    (src_bucket, src_key), (dest_bucket, dest_key) = locations(ctx.args.locations)
    info = await s.copy_object(src_bucket, src_key, dest_bucket, dest_key)
    ctx.say(
        f"copied s3://{src_bucket}/{src_key} -> s3://{dest_bucket}/{info.key} "
        f"({size(info.size)}, etag {info.etag})"
    )
    return EXIT_OK
