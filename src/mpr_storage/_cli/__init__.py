"""The ``mpr-storage`` command line: objects, frame caches, a local S3 server and a demo.

Settings come from the library's environment variables (``S3_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID`` ...); the global options override them. Every storage command runs the
async API once on a fresh event loop (uvloop's where it is installed, else asyncio's) on its
own :class:`~mpr_storage.Storage`.

Exit codes: 0 success; 1 failure, with one ``error: ...`` line on stderr (the traceback only
with ``--debug``); 2 usage error; 130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP;
141 when stdout was closed early. An interrupt cancels the running task, so the library's
atomic writes leave no partial file behind.

Modules: ``_main`` (entry point), ``_parser`` and ``_options`` (its global options), ``_base``
(errors, signals, context, helpers), ``_objects`` and ``_rm`` (object commands), ``_frames``
(frame caches), ``_progress`` (bars), ``_serve`` (the embedded server: the ``server`` command)
and ``_demo``.
"""

from __future__ import annotations

from ._main import main
from ._parser import build_parser

__all__ = ["build_parser", "main"]
