"""The global options: those every command takes, and those that pick the S3 store."""

from __future__ import annotations

import argparse

from .. import ConfigError, StorageSettings
from ._base import positive_int

__all__ = ["global_options"]


def global_options(*, storage: bool) -> argparse.ArgumentParser:
    """The options every command takes; ``storage`` adds those that pick the S3 store."""
    # Defaults are SUPPRESS so that an option given before the command is not reset by the
    # subcommand's copy of it.
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("global options")
    if storage:
        _storage_options(g)
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bars or status lines, only the requested output "
        "(progress bars are also off when stdout is not a terminal)",
    )
    g.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error, and debug logs",
    )
    return common


def _storage_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--endpoint-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="S3 endpoint (overrides S3_ENDPOINT_URL; '' means AWS)",
    )
    g.add_argument(
        "--region", default=argparse.SUPPRESS, help="signing region (overrides AWS_REGION)"
    )
    g.add_argument(
        "--provider",
        type=_provider,
        metavar="{aws,gcs,generic,minio,r2,seaweedfs}",
        default=argparse.SUPPRESS,
        help="S3 flavour (overrides S3_PROVIDER; detected from the endpoint by default)",
    )
    g.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        default=argparse.SUPPRESS,
        help="parallel requests of bulk transfers (overrides S3_MAX_CONCURRENCY)",
    )


def _provider(text: str) -> str:
    """An ``S3_PROVIDER`` value, checked by :class:`StorageSettings` itself (which names the
    valid ones when it refuses)."""
    try:
        StorageSettings().replace(provider=text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("S3_PROVIDER=", "")) from None
    return text
