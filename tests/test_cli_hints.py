"""The CLI as a new user meets it: a prefix given where a key is expected gets a hint, `rm`
speaks JSON like `ls`, and `get` of a prefix says what it leaves beside the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import S3Target
from mpr_storage._cli import main
from s3proxy import FaultProxy
from test_cli import listed, one_error_line, run, seed

# Above the wire: the transports are compared by the tests of the layers below.
pytestmark = pytest.mark.one_transport


def test_rm_of_a_prefix_without_recursive_says_how_many_and_deletes_nothing(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(s3, tmp_path, "tl-4/a.jpg", "tl-4/b.jpg", "tl-4/sub/c.jpg", "one.jpg")
    for prefix in ("tl-4", "tl-4/"):
        code, out, err = run(capsys, "rm", s3.bucket, s3.key(prefix), s3.key("one.jpg"))
        line = one_error_line(err)
        assert code == 1 and out == ""
        assert f"s3://{s3.bucket}/{s3.key(prefix)}" in line and "prefix holding 3 objects" in line
        assert "rm -r" in line and "nothing was deleted" in line
    assert listed(capsys, s3) == ["one.jpg", "tl-4/a.jpg", "tl-4/b.jpg", "tl-4/sub/c.jpg"]
    # a key that is neither: missing, as before
    code, out, _ = run(capsys, "rm", s3.bucket, s3.key("nothing-here"))
    assert code == 0 and "missing 1" in out


def test_get_of_a_prefix_without_its_slash_hints_at_the_slash(
    s3: S3Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(s3, tmp_path, "clip/a.jpg", "clip/b.jpg")
    url = f"s3://{s3.bucket}/{s3.key('clip')}"
    for dest in (str(tmp_path / "out"), "-"):
        code, out, err = run(capsys, "get", url, dest)
        line = one_error_line(err)
        assert code == 1 and out == ""
        assert f"the prefix {url}/ holds objects" in line and f"get {url}/ fetches them" in line
    assert not (tmp_path / "out").exists()
    code, _, err = run(capsys, "get", f"s3://{s3.bucket}/{s3.key('nope')}", str(tmp_path / "x"))
    assert code == 1 and "no such key" in one_error_line(err)
    assert "holds objects" not in err  # a plain missing key: no hint


def test_get_help_and_readme_tell_of_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ".mpr-manifest.json" in out and "diff -r" in out
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "`get` of a prefix" in readme and ".mpr-manifest.json" in readme


def test_rm_json_lists_deleted_missing_and_failed(
    s3: S3Target,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(s3, tmp_path, "k1", "k2", "k3")
    url = f"s3://{s3.bucket}/"
    code, out, err = run(capsys, "rm", "--json", s3.bucket, s3.key("k1"), s3.key("gone"))
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "deleted": [url + s3.key("k1")],
        "missing": [url + s3.key("gone")],
        "failed": [],
    }
    code, out, _ = run(capsys, "rm", "--json", "-n", s3.bucket, s3.key("k2"))
    assert code == 0 and json.loads(out)["would_delete"] == [url + s3.key("k2")]
    monkeypatch.setenv("S3_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "1")
    for method in ("POST", "DELETE"):  # batched and one by one: every delete refused
        proxy.fail(100, status=403, code="AccessDenied", method=method, target="any")
    code, out, _ = run(capsys, "rm", "--json", s3.bucket, s3.key("k2"), s3.key("k3"))
    got = json.loads(out)
    assert code == 1 and got["deleted"] == [] and got["missing"] == []
    assert [f["url"] for f in got["failed"]] == [url + s3.key("k2"), url + s3.key("k3")]
    assert all("AccessDenied" in f["error"] or "denied" in f["error"] for f in got["failed"])
    proxy.reset()
    assert listed(capsys, s3) == ["k2", "k3"]
