"""``mpr-storage cat``: an object or a byte range of it to stdout, streamed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import S3Target
from mpr_storage import sync
from mpr_storage._cli import main
from mpr_storage._cli._base import UsageError
from mpr_storage._cli._cat import byte_range
from test_cli import cli_env, one_error_line


def cat(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, str]:
    code = main(["cat", *argv])
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


def test_range_syntax() -> None:
    assert byte_range("0-9") == (0, 10)
    assert byte_range("5-") == (5, None)
    assert byte_range("-3") == (-3, None)
    for bad in ("", "-", "9-3", "a-b", "-0", "5"):
        with pytest.raises(UsageError):
            byte_range(bad)


def test_cat_writes_the_object_or_a_range(
    s3: S3Target, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 7)
    key = s3.key("dir/clip ü+1.mp4")
    sync._portal.stop()  # the loop thread reads this test's environment
    sync.put_bytes(data, s3.bucket, key)
    assert cat(capsysbinary, s3.bucket, key) == (0, data, "")
    assert cat(capsysbinary, f"s3://{s3.bucket}/{key}") == (0, data, "")
    assert cat(capsysbinary, "--range", "10-19", s3.bucket, key) == (0, data[10:20], "")
    assert cat(capsysbinary, "--range", "-5", s3.bucket, key) == (0, data[-5:], "")
    big = f"{len(data) - 3}-{len(data) * 2}"  # an end past the object stops at its end
    assert cat(capsysbinary, "--range", big, s3.bucket, key) == (0, data[-3:], "")
    sync._portal.stop()


def test_cat_errors(s3: S3Target, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    missing = s3.key("none.bin")
    code, out, err = cat(capsysbinary, s3.bucket, missing)
    assert (code, out) == (1, b"")
    line = one_error_line(err)
    assert s3.bucket in line and missing in line
    key = s3.key("small.bin")
    main(["-q", "cat", s3.bucket, key])  # missing: an error line, nothing written
    capsysbinary.readouterr()
    sync._portal.stop()
    sync.put_bytes(b"0123456789", s3.bucket, key)
    sync._portal.stop()
    code, out, err = cat(capsysbinary, "--range", "10-20", s3.bucket, key)
    assert (code, out) == (1, b"") and "range" in one_error_line(err)
    for argv in (["--range", "x", s3.bucket, key], [s3.bucket], [f"s3://{s3.bucket}/"]):
        code, out, _ = cat(capsysbinary, *argv)
        assert (code, out) == (2, b""), argv


def test_cat_to_a_closed_pipe_ends_quietly(s3: S3Target) -> None:
    key = s3.key("big.bin")
    sync._portal.stop()
    sync.put_bytes(os.urandom(8 * 1024 * 1024), s3.bucket, key)
    sync._portal.stop()
    with subprocess.Popen(
        [sys.executable, "-m", "mpr_storage", "cat", s3.bucket, key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert len(proc.stdout.read(1000)) == 1000
        proc.stdout.close()  # the reader goes away, as `| head -c 1000` does
        err = proc.stderr.read()
        proc.wait(timeout=60)
    assert err == b""
    assert proc.returncode in (0, 141, -13)  # as a process killed by SIGPIPE
