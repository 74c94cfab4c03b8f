"""``mpr-storage cp``: server-side copies from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import S3Target
from mpr_storage import sync
from mpr_storage._cli import main
from test_cli import one_error_line, run, write

# Above the wire: the transports are compared by the tests of the layers below.
pytestmark = pytest.mark.one_transport


@pytest.fixture
def fresh_portal() -> Iterator[None]:
    """The sync API's loop thread starts anew, so its client reads this test's environment."""
    sync._portal.stop()
    yield
    sync._portal.stop()


def test_cp_copies_on_the_server(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str], fresh_portal: None
) -> None:
    data = write(tmp_path / "clip.mp4", 3000)
    src = s3.key("chunks/clip ü+1.mp4")
    assert main(["-q", "put", str(tmp_path / "clip.mp4"), s3.bucket, src]) == 0
    dest = s3.key("sources/copy.mp4")
    code, out, err = run(capsys, "cp", f"s3://{s3.bucket}/{src}", f"s3://mpr-media-out/{dest}")
    assert (code, err) == (0, "")
    assert out.startswith(f"copied s3://{s3.bucket}/{src} -> s3://mpr-media-out/{dest} (")
    # BUCKET KEY forms, and a DEST "directory" that keeps the file name.
    code, _, _ = run(capsys, "-q", "cp", s3.bucket, src, s3.bucket, s3.key("dir/"))
    assert code == 0
    code, _, _ = run(capsys, "-q", "cp", f"s3://{s3.bucket}/{src}", "mpr-media-out", s3.key("b"))
    assert code == 0
    for bucket, key in [
        ("mpr-media-out", dest),
        (s3.bucket, s3.key("dir/clip ü+1.mp4")),
        ("mpr-media-out", s3.key("b")),
    ]:
        out_path = sync.download_file(bucket, key, tmp_path / "back")
        assert out_path.read_bytes() == data


def test_cp_errors(s3: S3Target, capsys: pytest.CaptureFixture[str]) -> None:
    missing = s3.key("none.mp4")
    code, _, err = run(capsys, "cp", f"s3://{s3.bucket}/{missing}", f"s3://{s3.bucket}/x")
    assert code == 1
    line = one_error_line(err)
    assert s3.bucket in line and missing in line
    for argv in (
        ["cp", f"s3://{s3.bucket}/a"],
        ["cp", s3.bucket, "a", s3.bucket],
        ["cp", f"s3://{s3.bucket}/", f"s3://{s3.bucket}/b"],
        ["cp", "s3://a/b", "s3://c/d", "s3://e/f"],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert "cp" in err
