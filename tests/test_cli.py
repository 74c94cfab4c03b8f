"""The ``mpr-storage`` command line: in-process ``main([...])`` against the test servers, and
real subprocesses for ``python -m mpr_storage``, Ctrl-C, ``server`` and ``demo``."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import os
import pty
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import S3Target
from mpr_storage._cli import main

# Above the wire: the transports are compared by the tests of the layers below.
pytestmark = pytest.mark.one_transport

KiB = 1024
MiB = 1024 * KiB


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The whole stderr is a single ``error: ...`` line, without a traceback."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def write(path: Path, size: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: the test's (isolated) one plus ``extra``."""
    env = dict(os.environ)
    env.update(extra)
    env.pop("COLUMNS", None)
    return env


# --- in process, against moto and SeaweedFS ------------------------------------------------


def test_put_ls_get_round_trip(
    s3: S3Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = write(tmp_path / "clip.mp4", 300 * KiB + 7)
    key = s3.key("chunks/clip.mp4")
    code, out, err = run(capsys, "put", str(tmp_path / "clip.mp4"), s3.bucket, key)
    assert (code, err) == (0, "")
    assert f"s3://{s3.bucket}/{key}" in out and "300.0 KiB" in out
    # s3:// form, a key ending in '/' is a prefix for the file's name.
    code, out, _ = run(capsys, "put", str(tmp_path / "clip.mp4"), f"s3://{s3.bucket}/{s3.prefix}d/")
    assert code == 0 and f"{s3.prefix}d/clip.mp4" in out

    code, out, err = run(capsys, "ls", s3.bucket, s3.prefix)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[-1] for line in lines] == [key, s3.key("d/clip.mp4")]
    assert "300.0 KiB" in lines[0]

    code, out, _ = run(capsys, "ls", "--long", f"s3://{s3.bucket}/{s3.prefix}chunks/")
    assert code == 0
    assert str(300 * KiB + 7) in out and hashlib.md5(data).hexdigest() in out
    assert out.splitlines()[-1] == f"1 object, {300 * KiB + 7} bytes (300.0 KiB)"

    code, out, _ = run(capsys, "get", s3.bucket, key, str(tmp_path / "new" / "out.mp4"))
    assert code == 0 and "downloaded" in out
    assert (tmp_path / "new" / "out.mp4").read_bytes() == data
    (tmp_path / "dir").mkdir()
    assert main(["get", f"s3://{s3.bucket}/{key}", str(tmp_path / "dir")]) == 0
    assert (tmp_path / "dir" / "clip.mp4").read_bytes() == data
    monkeypatch.chdir(tmp_path / "dir")
    (tmp_path / "dir" / "clip.mp4").unlink()
    assert main(["get", f"s3://{s3.bucket}/{key}"]) == 0  # DEST defaults to the key's name
    assert (tmp_path / "dir" / "clip.mp4").read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["clip.mp4"]  # no temp file
    capsys.readouterr()


def test_ls_json_is_parsable(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, size in (("a.jpg", 10), ("b/c.jpg", 2000), ("ünï cödé+.png", 0)):
        write(tmp_path / "src" / name, size)
    assert main(["-q", "put", str(tmp_path / "src"), s3.bucket, s3.prefix]) == 0
    code, out, err = run(capsys, "ls", "--json", f"s3://{s3.bucket}/{s3.prefix}")
    assert (code, err) == (0, "")
    objects = json.loads(out)
    assert [(o["key"], o["size"]) for o in objects] == [
        (s3.key("a.jpg"), 10),
        (s3.key("b/c.jpg"), 2000),
        (s3.key("ünï cödé+.png"), 0),
    ]
    for o in objects:
        assert re.fullmatch(r"[0-9a-f]{32}", o["etag"])
        assert datetime.fromisoformat(o["last_modified"]).tzinfo is not None

    code, out, _ = run(capsys, "ls", "--json")
    buckets = {b["name"]: b for b in json.loads(out)}
    assert code == 0 and {s3.bucket, "mpr-media-in", "mpr-media-out"} <= set(buckets)
    code, out, _ = run(capsys, "ls")
    assert code == 0 and s3.bucket in out.split()
    code, out, _ = run(capsys, "ls", "--long", "--json")
    usage = {b["name"]: b for b in json.loads(out)}[s3.bucket]
    assert code == 0 and usage["objects"] >= 3 and usage["bytes"] >= 2010
    code, out, _ = run(capsys, "ls", "--long")
    assert code == 0 and re.search(rf"\d+ objects +[\d.]+ \w+  {s3.bucket}$", out, re.MULTILINE)
    code, out, _ = run(capsys, "ls", "--json", s3.bucket, s3.prefix + "nothing-here/")
    assert (code, json.loads(out)) == (0, [])


def test_presign_get_and_put(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write(tmp_path / "f.bin", 4 * KiB)
    key = s3.key("p/f.bin")
    assert main(["-q", "put", str(tmp_path / "f.bin"), s3.bucket, key]) == 0
    code, out, err = run(capsys, "presign", f"s3://{s3.bucket}/{key}", "--expires", "60")
    assert (code, err) == (0, "") and len(out.splitlines()) == 1
    assert "X-Amz-Expires=60" in out
    with urllib.request.urlopen(out.strip(), timeout=10) as response:
        assert response.read() == data

    put_key = s3.key("p/uploaded by url.bin")
    code, out, _ = run(capsys, "presign", "--put", s3.bucket, put_key)
    assert code == 0
    request = urllib.request.Request(
        out.strip(),
        data=b"via presigned PUT",
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},  # not urllib's form default
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert main(["-q", "get", s3.bucket, put_key, str(tmp_path / "back.bin")]) == 0
    assert (tmp_path / "back.bin").read_bytes() == b"via presigned PUT"


def test_get_to_stdout(s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "note.txt").write_text("hello from S3\n")
    key = s3.key("note.txt")
    assert main(["-q", "put", str(tmp_path / "note.txt"), s3.bucket, key]) == 0
    assert run(capsys, "get", s3.bucket, key, "-") == (0, "hello from S3\n", "")


def test_push_frames_then_prefetch_twice(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline = s3.prefix.rstrip("/")
    frames = tmp_path / "frames"
    for i in range(1, 41):
        write(frames / f"frame_{i:06d}.jpg", 1000 + i)
    code, out, err = run(capsys, "push-frames", timeline, str(frames), "--bucket", s3.bucket)
    assert (code, err) == (0, "")
    assert f"s3://{s3.bucket}/frames/{timeline}/" in out and "40 objects" in out
    code, out, _ = run(capsys, "ls", s3.bucket, f"frames/{timeline}/")
    assert code == 0 and len(out.splitlines()) == 40

    dest = tmp_path / "replay"
    code, out, err = run(capsys, "prefetch", timeline, str(dest), "--bucket", s3.bucket)
    assert (code, err) == (0, "") and "40 objects" in out and "skipped" not in out
    for i in range(1, 41):
        name = f"frame_{i:06d}.jpg"
        assert (dest / name).read_bytes() == (frames / name).read_bytes()
    code, out, _ = run(capsys, "prefetch", timeline, str(dest), "--bucket", s3.bucket)
    assert code == 0 and "0 objects" in out and "40 skipped" in out

    code, out, _ = run(
        capsys, "push-frames", timeline, str(frames), "--bucket", s3.bucket, "--skip-existing"
    )
    assert code == 0 and "40 skipped" in out


def test_put_directory_and_get_prefix(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = {"a.txt": 5, "sub/b.bin": 3000, "sub/deeper/c.bin": 1}
    for name, size in tree.items():
        write(tmp_path / "tree" / name, size)
    code, out, _ = run(capsys, "put", str(tmp_path / "tree"), f"s3://{s3.bucket}/{s3.prefix}tree")
    assert code == 0 and "3 objects" in out
    code, out, _ = run(capsys, "get", f"s3://{s3.bucket}/{s3.prefix}tree/", str(tmp_path / "copy"))
    assert code == 0 and "3 objects" in out
    for name in tree:
        assert (tmp_path / "copy" / name).read_bytes() == (tmp_path / "tree" / name).read_bytes()
    code, _, err = run(capsys, "get", f"s3://{s3.bucket}/{s3.prefix}empty/", str(tmp_path / "e"))
    assert code == 1 and "no objects" in one_error_line(err)


def test_rm(s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "src" / "x", 1)
    for name in ("k1", "k2", "k3", "sub/a", "sub/b/c"):
        assert main(["-q", "put", str(tmp_path / "src" / "x"), s3.bucket, s3.key(name)]) == 0

    def keys() -> list[str]:
        code, out, _ = run(capsys, "ls", "--json", s3.bucket, s3.prefix)
        assert code == 0
        return [o["key"].removeprefix(s3.prefix) for o in json.loads(out)]

    argv = ["rm", s3.bucket, s3.key("k1"), s3.key("k2"), s3.key("missing")]
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert out == f"deleted 2 objects from s3://{s3.bucket}, missing 1\n"
    assert keys() == ["k3", "sub/a", "sub/b/c"]
    # Twice in a row: nothing is left to delete, and it says so.
    assert run(capsys, *argv) == (0, f"deleted 0 objects from s3://{s3.bucket}, missing 3\n", "")
    assert main(["-q", "rm", f"s3://{s3.bucket}/{s3.key('k3')}"]) == 0
    code, out, _ = run(capsys, "rm", "--recursive", f"s3://{s3.bucket}/{s3.prefix}sub/")
    assert code == 0 and "deleted 2 objects" in out and "missing 0" in out
    assert keys() == []


def test_quiet_prints_nothing(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "f", 10)
    assert run(capsys, "--quiet", "put", str(tmp_path / "f"), s3.bucket, s3.key("f")) == (0, "", "")
    assert run(capsys, "get", "-q", s3.bucket, s3.key("f"), str(tmp_path / "g")) == (0, "", "")


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich treats stdout as an interactive terminal: progress bars are drawn."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")


def test_progress_bar_on_a_terminal(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str], terminal: None
) -> None:
    for i in range(30):
        write(tmp_path / "frames" / f"f{i:03d}.jpg", 2 * KiB)
    timeline = s3.prefix.rstrip("/")
    code, out, _ = run(
        capsys, "push-frames", timeline, str(tmp_path / "frames"), "--bucket", s3.bucket
    )
    assert code == 0
    assert "30/30 objects" in out and "60.0 KiB" in out and "eta" in out
    assert re.search(r"[\d.]+ [KMG]iB/s", out)  # the rate
    key = f"frames/{timeline}/f000.jpg"
    code, out, _ = run(capsys, "get", s3.bucket, key, str(tmp_path / "one.jpg"))
    assert code == 0 and "2.0/2.0 KiB" in out


def seed(s3: S3Target, tmp_path: Path, *names: str) -> None:
    """One upload of a tree: ``names`` under ``s3.prefix`` (1-byte bodies, see SeaweedFS)."""
    for name in names:
        write(tmp_path / "seed" / name, 1)
    assert main(["-q", "put", str(tmp_path / "seed"), s3.bucket, s3.prefix]) == 0


def listed(capsys: pytest.CaptureFixture[str], s3: S3Target) -> list[str]:
    code, out, _ = run(capsys, "ls", "--json", s3.bucket, s3.prefix)
    assert code == 0
    return [o["key"].removeprefix(s3.prefix) for o in json.loads(out)]


def test_rm_recursive_prefix_is_a_directory(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(s3, tmp_path, "tl-4/a.jpg", "tl-4/b.jpg", "tl-40/c.jpg", "tl-4x.jpg")
    code, out, err = run(capsys, "rm", "-r", f"s3://{s3.bucket}/{s3.prefix}tl-4")
    assert (code, err) == (0, "")
    assert out == f"deleted 2 objects from s3://{s3.bucket}, missing 0\n"
    assert listed(capsys, s3) == ["tl-40/c.jpg", "tl-4x.jpg"]
    # The raw-string match needs its flag.
    code, out, _ = run(capsys, "rm", "-r", "--raw-prefix", s3.bucket, s3.key("tl-4"))
    assert code == 0 and out.startswith("deleted 2 objects")
    assert listed(capsys, s3) == []


def test_rm_dry_run_lists_and_deletes_nothing(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(s3, tmp_path, *(f"d/{i:02d}.jpg" for i in range(12)))
    code, out, err = run(capsys, "rm", "-r", "--dry-run", f"s3://{s3.bucket}/{s3.prefix}d")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:-1] == [f"s3://{s3.bucket}/{s3.prefix}d/{i:02d}.jpg" for i in range(12)]
    assert lines[-1] == f"would delete 12 objects from s3://{s3.bucket}, missing 0"
    code, out, _ = run(capsys, "rm", "-n", s3.bucket, s3.key("d/00.jpg"), s3.key("nope"))
    assert code == 0 and out.splitlines() == [
        f"s3://{s3.bucket}/{s3.key('d/00.jpg')}",
        f"would delete 1 object from s3://{s3.bucket}, missing 1",
    ]
    assert len(listed(capsys, s3)) == 12


def test_rm_of_many_needs_yes_off_a_terminal(
    s3: S3Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(s3, tmp_path, *(f"d/{i:02d}.jpg" for i in range(12)))
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal: no question asked
    code, out, err = run(capsys, "rm", "-r", f"s3://{s3.bucket}/{s3.prefix}d/")
    assert code == 1 and out == ""
    line = one_error_line(err)
    assert "12 objects" in line and "--yes" in line
    assert len(listed(capsys, s3)) == 12
    # A whole bucket, however small a part of it is ours.
    code, out, err = run(capsys, "rm", "-r", f"s3://{s3.bucket}")
    assert code == 1 and f"all of s3://{s3.bucket}" in one_error_line(err)
    code, out, err = run(capsys, "rm", "-r", "--yes", f"s3://{s3.bucket}/{s3.prefix}d/")
    assert (code, err) == (0, "") and out.startswith("deleted 12 objects")
    assert listed(capsys, s3) == []
    # A handful needs no confirmation.
    seed(s3, tmp_path / "few", "a", "b")
    assert run(capsys, "rm", "-r", s3.bucket, s3.prefix)[0] == 0
    assert listed(capsys, s3) == []


def test_control_characters_are_escaped_for_humans(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "evil\tname\x9b31m\u202egpj.exe\x7f"
    key = s3.key(name)
    write(tmp_path / "f", 3)
    code, out, err = run(capsys, "put", str(tmp_path / "f"), s3.bucket, key)
    assert code == 0 and err == ""
    assert "\\t" in out and "\\x9b" in out and "\\u202e" in out and "\\x7f" in out
    code, out, _ = run(capsys, "ls", s3.bucket, s3.prefix)
    assert code == 0 and len(out.splitlines()) == 1
    assert out.rstrip("\n").endswith(s3.prefix + "evil\\tname\\x9b31m\\u202egpj.exe\\x7f")
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", out)
    assert "\t" not in out
    code, out, _ = run(capsys, "ls", "--json", s3.bucket, s3.prefix)
    assert code == 0 and [o["key"] for o in json.loads(out)] == [key]  # exact
    code, out, _ = run(capsys, "rm", "--dry-run", s3.bucket, key)
    assert code == 0 and "\u202e" not in out and "\\u202e" in out


def test_put_and_get_bars_move(
    s3: S3Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    terminal: None,
) -> None:
    monkeypatch.setenv("S3_MULTIPART_THRESHOLD", str(5 * MiB))
    monkeypatch.setenv("S3_MULTIPART_CHUNKSIZE", str(5 * MiB))
    data = write(tmp_path / "big.bin", 11 * MiB)
    key = s3.key("big.bin")

    def partial_steps(out: str) -> set[float]:
        """The byte counts the bar showed before the end (``5.0/11.0 MiB``)."""
        shown = {float(m) for m in re.findall(r"(?<![\d.])([\d.]+)/11\.0 MiB", out)}
        return {x for x in shown if x < 11.0}

    code, out, _ = run(capsys, "put", str(tmp_path / "big.bin"), s3.bucket, key)
    assert code == 0 and partial_steps(out), out  # one step per part at least
    code, out, _ = run(capsys, "get", s3.bucket, key, str(tmp_path / "back.bin"))
    assert code == 0 and partial_steps(out), out
    assert (tmp_path / "back.bin").read_bytes() == data


def test_prefetch_total_is_unknown_until_listed(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str], terminal: None
) -> None:
    timeline = s3.prefix.rstrip("/")
    for i in range(30):
        write(tmp_path / "frames" / f"f{i:03d}.jpg", 100)
    argv = ["push-frames", timeline, str(tmp_path / "frames"), "--bucket", s3.bucket]
    assert main(["-q", *argv]) == 0
    dest = str(tmp_path / "replay")
    # Two workers: the listing can't end before most frames are fetched.
    argv = ["--concurrency", "2", "prefetch", timeline, dest, "--bucket", s3.bucket]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "/? objects (listing...)" in out  # not "keys listed so far"
    assert "30/30 objects" in out
    assert set(re.findall(r"\d+/(\d+) objects", out)) == {"30"}  # known once, never changed


# --- errors --------------------------------------------------------------------------------


def test_missing_key_is_one_line_naming_bucket_and_key(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = s3.key("no such/key.mp4")
    for argv in (
        ["get", s3.bucket, key, str(tmp_path / "out.mp4")],
        ["get", f"s3://{s3.bucket}/{key}", str(tmp_path / "out.mp4")],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == ""
        line = one_error_line(err)
        assert f"s3://{s3.bucket}/{key}" in line and "no such key" in line
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temp file

    code, _, err = run(capsys, "--debug", "get", s3.bucket, key, str(tmp_path / "out.mp4"))
    assert code == 1 and "Traceback" in err and "ObjectNotFoundError" in err
    assert err.splitlines()[-1].startswith("error: ")


def test_missing_bucket_and_missing_cache(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "ls", "no-such-bucket-mpr-cli")
    assert code == 1 and "no-such-bucket-mpr-cli" in one_error_line(err)
    code, _, err = run(
        capsys, "prefetch", "no-such-timeline", str(tmp_path / "d"), "--bucket", s3.bucket
    )
    assert code == 1 and "no frame cache" in one_error_line(err)
    code, _, err = run(capsys, "put", str(tmp_path / "nope.bin"), s3.bucket, "k")
    assert code == 1 and "nope.bin" in one_error_line(err)
    (tmp_path / "empty").mkdir()
    code, _, err = run(
        capsys, "push-frames", "tl-empty", str(tmp_path / "empty"), "--bucket", s3.bucket
    )
    assert code == 1 and "no files" in one_error_line(err)


def test_dead_endpoint_fails_fast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("S3_CONNECT_TIMEOUT", "1")
    for argv in (
        ["ls"],
        ["ls", "mpr-media-in"],
        ["get", "mpr-media-in", "chunks/a.mp4", str(tmp_path / "a.mp4")],
        ["prefetch", "tl-1", str(tmp_path / "frames")],
    ):
        started = time.monotonic()
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == ""
        line = one_error_line(err)
        assert "127.0.0.1" in line or "reach" in line or "connect" in line, line
        assert time.monotonic() - started < 15
    assert not (tmp_path / "a.mp4").exists()


def test_endpoint_option_overrides_the_environment(
    s3: S3Target, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "1")
    code, _, _ = run(capsys, "ls", "--json", s3.bucket, s3.prefix)
    assert code == 1
    endpoint = s3.server.endpoint_url
    code, out, err = run(capsys, "--endpoint-url", endpoint, "ls", "--json", s3.bucket, s3.prefix)
    assert (code, json.loads(out), err) == (0, [], "")
    # global options work after the command too
    code, out, _ = run(capsys, "ls", s3.bucket, s3.prefix, "--json", "--endpoint-url", endpoint)
    assert (code, json.loads(out)) == (0, [])


def test_bad_credentials(
    seaweed: S3Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "1")
    write(tmp_path / "f", 10)
    for argv in (
        ["ls"],
        ["ls", seaweed.bucket],
        ["get", seaweed.bucket, seaweed.key("k"), str(tmp_path / "k")],
        ["put", str(tmp_path / "f"), seaweed.bucket, seaweed.key("f")],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == ""
        line = one_error_line(err)
        assert "access denied" in line and "not-the-secret" not in line


def test_config_error_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3_MAX_CONCURRENCY", "lots")
    code, _, err = run(capsys, "ls")
    assert code == 1 and "S3_MAX_CONCURRENCY" in one_error_line(err)
    monkeypatch.delenv("S3_MAX_CONCURRENCY")
    code, _, err = run(capsys, "--endpoint-url", "localhost:9000", "ls")
    assert code == 1 and "S3_ENDPOINT_URL" in one_error_line(err)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["get", "bucket"],
        ["get", "s3:///key"],
        ["get", "s3://b/k", "dest", "extra"],
        ["get", "bucket", "s3://b/k"],
        ["put", "f", "s3://b/k", "extra"],
        ["presign", "bucket"],
        ["presign", "s3://bucket/"],
        ["presign", "--expires", "0", "b", "k"],
        ["rm", "bucket"],
        ["rm", "s3://b/k", "plain-key"],
        ["rm", "s3://b/"],
        ["rm", "--raw-prefix", "s3://b/k"],
        ["ls", "s3://b/p", "extra"],
        ["--concurrency", "0", "ls"],
        ["server", "--port", "70000"],
        ["demo", "--frames", "0"],
    ],
)
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert "usage: mpr-storage" in err and "error:" in err and "Traceback" not in err


COMMANDS = ["ls", "get", "put", "presign", "rm", "prefetch", "push-frames", "server", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_everywhere(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and f"usage: mpr-storage {command}" in out and "--quiet" in out
    assert ("--endpoint-url" in out) == (command not in ("server", "demo"))


def test_top_level_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), command
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("mpr-storage ")


# --- real subprocesses ---------------------------------------------------------------------


def test_python_dash_m_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mpr_storage", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mpr-storage") and "push-frames" in result.stdout


def test_subprocess_error_is_one_line(s3: S3Target, tmp_path: Path) -> None:
    key = s3.key("missing.mp4")
    result = subprocess.run(
        [sys.executable, "-m", "mpr_storage", "get", f"s3://{s3.bucket}/{key}", "out.mp4"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=cli_env(),
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    line = one_error_line(result.stderr)
    assert f"s3://{s3.bucket}/{key}" in line and "no such key" in line
    assert list(tmp_path.iterdir()) == []


def rm_on_a_terminal(argv: list[str], answer: str) -> tuple[int, str, str]:
    """``mpr-storage rm ...`` with a pty as stdin, answering the question with ``answer``."""
    master, slave = pty.openpty()
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "mpr_storage", "rm", *argv],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        ) as proc:
            os.close(slave)
            slave = -1
            os.write(master, f"{answer}\n".encode())
            out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    return proc.returncode, out, err


def test_rm_asks_on_a_terminal(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(s3, tmp_path, *(f"d/{i:02d}.jpg" for i in range(12)))
    argv = ["-r", f"s3://{s3.bucket}/{s3.prefix}d"]
    code, out, err = rm_on_a_terminal(argv, "n")
    assert (code, out) == (1, ""), err
    assert f"delete 12 objects from s3://{s3.bucket}? [y/N]" in err
    assert "nothing was deleted" in err and len(listed(capsys, s3)) == 12
    # A whole bucket is asked about whatever its size (the answer here is no).
    code, out, err = rm_on_a_terminal(["-r", f"s3://{s3.bucket}"], "n")
    assert (code, out) == (1, "") and f"(all of s3://{s3.bucket})? [y/N]" in err
    assert len(listed(capsys, s3)) == 12
    code, out, err = rm_on_a_terminal(argv, "y")
    assert (code, err.count("[y/N]")) == (0, 1), err
    assert out == f"deleted 12 objects from s3://{s3.bucket}, missing 0\n"
    assert listed(capsys, s3) == []


def test_closed_stdout_ends_quietly(s3: S3Target, tmp_path: Path) -> None:
    seed(s3, tmp_path, *(f"k{i:02d}" for i in range(40)))
    for argv in (["ls", s3.bucket, s3.prefix], ["get", s3.bucket, s3.key("k00"), "-"]):
        with subprocess.Popen(
            [sys.executable, "-m", "mpr_storage", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()  # `| head` that is already gone
            err = proc.stderr.read().decode()
            proc.wait(timeout=60)
        assert proc.returncode in (0, 128 + signal.SIGPIPE), err
        assert err == ""


def test_local_errors_name_the_operation_and_path(
    s3: S3Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(s3, tmp_path, "a.jpg", "dir/b.jpg")
    (tmp_path / "file").write_text("in the way")
    dest = tmp_path / "file" / "sub" / "a.jpg"
    code, out, err = run(capsys, "get", s3.bucket, s3.key("a.jpg"), str(dest))
    line = one_error_line(err)
    assert code == 1 and out == ""
    assert f"get s3://{s3.bucket}/{s3.key('a.jpg')}" in line and str(tmp_path / "file") in line
    assert "not a directory" in line and "Errno" not in line
    code, _, err = run(capsys, "get", f"s3://{s3.bucket}/{s3.prefix}dir/", str(tmp_path / "file"))
    line = one_error_line(err)
    assert code == 1 and "get s3://" in line and str(tmp_path / "file") in line
    assert (tmp_path / "file").read_text() == "in the way"
    # The scheme hint keeps the host.
    monkeypatch.setenv("S3_ENDPOINT_URL", "http//host:8333")
    code, _, err = run(capsys, "ls")
    line = one_error_line(err)
    assert code == 1 and "S3_ENDPOINT_URL" in line and "http://host:8333" in line
    assert "http://http" not in line


class _SlowObject(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a 64 MiB object, dribbled at ~1 MiB/s."""

    size = 64 * MiB
    stop = threading.Event()

    def _head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(self.size))
        self.send_header("Content-Type", "video/mp4")
        self.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
        self.send_header("Last-Modified", "Tue, 15 Apr 2025 10:00:00 GMT")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._head()

    def do_GET(self) -> None:
        self._head()
        chunk = b"\0" * (64 * KiB)
        try:
            for _ in range(self.size // len(chunk)):
                if self.stop.is_set():
                    return
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            return

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def slow_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowObject)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _SlowObject.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
        _SlowObject.stop.clear()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupt_stops_cleanly_without_partial_file(
    slow_endpoint: str, tmp_path: Path, signum: signal.Signals
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    env = cli_env(
        S3_ENDPOINT_URL=slow_endpoint,
        AWS_ACCESS_KEY_ID="k",
        AWS_SECRET_ACCESS_KEY="s",
        S3_MAX_ATTEMPTS="1",
    )
    with subprocess.Popen(
        [sys.executable, "-m", "mpr_storage", "get", "b", "chunks/big.mp4", str(dest / "big.mp4")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            deadline = time.monotonic() + 30
            while not any(p.name.endswith(".part") and p.stat().st_size for p in dest.iterdir()):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the download never started"
                time.sleep(0.05)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 128 + signum, err
    assert err.strip() == "interrupted" and out == ""
    assert list(dest.iterdir()) == []  # the temp file was removed, no partial big.mp4


# --- server and demo (subprocesses) ----------------------------------------------------------


class _Lines:
    """Reads a process's stdout on a thread, so tests can wait for a line with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in {self.lines}") from None
            if line is None:
                raise AssertionError(f"output ended without {text!r}: {self.lines}")
            self.lines.append(line)

    def rest(self) -> list[str]:
        self._thread.join(30)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return self.lines


@contextlib.contextmanager
def _cli_process(argv: list[str], **popen: Any) -> Iterator[tuple[subprocess.Popen[str], _Lines]]:
    """``argv`` (the CLI) in a child process, its stdout read line by line; on the way out it
    is killed if still running and its output read to the end (``lines.rest()``)."""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    ) as proc:
        lines = _Lines(proc)
        try:
            yield proc, lines
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            lines.rest()


def _exports(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        match = re.fullmatch(r"export (\w+)=(\S+)", line)
        if match:
            found[match.group(1)] = match.group(2).strip("'")
    return found


def _process_gone(pid: int) -> bool:
    """Gone, or a zombie that whoever inherited it has not reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] in "ZX"
    except OSError:  # gone meanwhile, or no /proc (then kill(0) was the answer)
        return sys.platform == "linux"


@pytest.mark.slow
def test_server_command_on_seaweedfs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, tmp = tmp_path / "data", tmp_path / "tmp"
    tmp.mkdir()
    argv = [
        sys.executable, "-m", "mpr_storage", "server",
        "--port", "0", "--data-dir", str(data_dir), "--bucket", "extra-bucket",
    ]  # fmt: skip
    server_env = cli_env(S3_BUCKET_OUT="my-artifacts", TMPDIR=str(tmp))
    with _cli_process(argv, env=server_env) as (proc, lines):
        lines.wait_for("Press Ctrl-C to stop.")
        env = _exports(lines.lines)
        pid = int(re.search(r"pid (\d+)", "\n".join(lines.lines)).group(1))  # type: ignore[union-attr]
        assert env["S3_BUCKET_IN"] == "mpr-media-in" and env["S3_BUCKET_OUT"] == "my-artifacts"
        assert env["S3_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert env["S3_PROVIDER"] == "seaweedfs"
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code, out, _ = run(capsys, "ls", "--json")
        assert code == 0
        assert {"mpr-media-in", "my-artifacts", "extra-bucket"} <= {
            b["name"] for b in json.loads(out)
        }
        (tmp_path / "f.txt").write_text("persisted")
        assert main(["-q", "put", str(tmp_path / "f.txt"), "s3://my-artifacts/f.txt"]) == 0
        assert (data_dir / "store").is_dir()
        proc.send_signal(signal.SIGHUP)  # the terminal closed: stop as for Ctrl-C
        proc.wait(timeout=30)
        rest = lines.rest()
        assert proc.stderr is not None
        assert proc.stderr.read() == ""
    assert proc.returncode == 0, rest
    assert rest[-1] == "stopped."
    wait_gone(pid)
    # SeaweedFS's own log files are in the server's directory, not in the temp directory.
    assert list(tmp.iterdir()) == []
    assert any(p.name.startswith("weed.") for p in (data_dir / "logs").iterdir())


def wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not _process_gone(pid):
        assert time.monotonic() < deadline, f"pid {pid} is still running"
        time.sleep(0.05)


@pytest.mark.slow
def test_server_dies_with_the_cli(tmp_path: Path) -> None:
    """kill -9 of the CLI (no chance to clean up): the kernel stops its SeaweedFS."""
    argv = ["server", "--kind", "seaweedfs", "--port", "0", "--data-dir", str(tmp_path / "d")]
    with _cli_process([sys.executable, "-m", "mpr_storage", *argv], env=cli_env()) as (proc, lines):
        lines.wait_for("Press Ctrl-C to stop.")
        pid = int(re.search(r"pid (\d+)", "\n".join(lines.lines)).group(1))  # type: ignore[union-attr]
        assert not _process_gone(pid)
        proc.kill()
        proc.wait(timeout=30)
    wait_gone(pid)


@pytest.mark.slow
def test_demo_server_and_temp_dirs_go_on_sighup(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    argv = ["demo", "--keep", "--kind", "seaweedfs", "--frames", "5", "--video-mib", "1"]
    with _cli_process(
        [sys.executable, "-m", "mpr_storage", *argv], cwd=tmp_path, env=cli_env(TMPDIR=str(tmp))
    ) as (proc, lines):
        lines.wait_for("Press Ctrl-C to stop.")
        assert [p.name.split("-")[1] for p in tmp.iterdir()] == ["seaweedfs"]
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=30)
        rest = lines.rest()
        assert proc.stderr is not None
        assert proc.stderr.read() == ""
    assert proc.returncode == 0, rest
    assert "server stopped" in rest[-1]
    assert list(tmp.iterdir()) == []  # the server's data, its logs, the demo's files: gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]


@pytest.mark.slow
def test_server_falls_back_to_moto(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script = (
        "import sys, mpr_storage._server as s\n"
        "s.find_weed = lambda: None\n"
        "from mpr_storage._cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = [sys.executable, "-c", script, "server", "--port", "0"]
    with _cli_process(argv, env=cli_env()) as (proc, lines):
        lines.wait_for("Press Ctrl-C to stop.", timeout=30)
        text = "\n".join(lines.lines)
        assert "SeaweedFS is not installed" in text and "in memory" in text
        env = _exports(lines.lines)
        assert env["S3_PROVIDER"] == "generic"
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code, out, _ = run(capsys, "ls")
        assert code == 0 and "mpr-media-in" in out and "mpr-media-out" in out
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.stderr is not None
        assert proc.stderr.read() == ""
    assert proc.returncode == 0


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mpr_storage", "demo", "--frames", "150"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env=cli_env(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "summary: demo done in" in out
    for step in ("upload chunk", "push frames", "replay 1 prefetch", "replay 2 prefetch"):
        assert step in out
    assert "150 skipped" in out and "same bytes" in out
    assert re.search(r"http://127\.0\.0\.1:\d+/mpr-media-in/chunks/\d{4}-\d\d-\d\d/", out)
    assert "s3://mpr-media-out: 150 objects" in out
    assert time.monotonic() - started < 60
    assert list(tmp_path.iterdir()) == []  # nothing left in the working directory
