"""Key validation and the key -> path mapping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mpr_storage import InvalidKeyError, LocalFileError
from mpr_storage._keys import KeyMapper, check_key

SAFE_KEYS = [
    "a..b",
    "with space.jpg",
    "a+b.png",
    "c:d.jpg",
    "ünï/cödé ✓.png",
    "..a",
    "b..",
    "x/.hidden",
]
UNSAFE_KEYS = [
    "../x",
    "a/../../x",
    "/etc/passwd",
    "a/./b",
    "a//b",
    "..",
    ".",
    "",
    "a/b/..",
    "nul\x00.jpg",
]


@pytest.mark.parametrize("key", SAFE_KEYS)
def test_safe_keys_stay_inside(tmp_path: Path, key: str) -> None:
    path = KeyMapper(tmp_path).prepare(key)
    assert path == Path(os.path.realpath(tmp_path)).joinpath(*key.split("/"))
    assert path.parent.is_dir()


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_refused_before_any_write(tmp_path: Path, key: str) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InvalidKeyError):
        KeyMapper(dest).prepare(key)
    assert list(tmp_path.rglob("*")) == [dest]


def test_prefix_is_removed(tmp_path: Path) -> None:
    mapper = KeyMapper(tmp_path, "frames/tl-1/")
    assert (
        mapper.path_for("frames/tl-1/000001.jpg") == Path(os.path.realpath(tmp_path)) / "000001.jpg"
    )
    with pytest.raises(InvalidKeyError):
        mapper.path_for("frames/tl-1/")  # the prefix itself names no file
    with pytest.raises(InvalidKeyError):
        mapper.path_for("frames/tl-1/../../escape.jpg")


def test_symlinked_directory_leading_outside_is_refused(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "link").symlink_to(outside)
    with pytest.raises(InvalidKeyError, match="symlink"):
        KeyMapper(dest).prepare("link/evil.jpg")
    with pytest.raises(InvalidKeyError, match="symlink"):
        KeyMapper(dest).prepare("link/new/deeper/evil.jpg")  # checked before any mkdir
    assert list(outside.iterdir()) == []


def test_a_file_where_a_directory_is_needed_is_a_local_error(tmp_path: Path) -> None:
    (tmp_path / "meta").write_bytes(b"file")
    for key in ("meta/x.json", "meta/a/b/x.json"):
        with pytest.raises(LocalFileError) as info:
            KeyMapper(tmp_path).check(key)
        assert info.value.path == os.path.join(os.path.realpath(tmp_path), "meta")
        assert info.value.key == key
    assert (tmp_path / "meta").read_bytes() == b"file"


def test_check_key_limits() -> None:
    assert check_key("a" * 1024, operation="t") == "a" * 1024
    with pytest.raises(InvalidKeyError, match="1024"):
        check_key("é" * 513, operation="t")  # 1026 bytes in UTF-8
    for bad in ("", None, 3):
        with pytest.raises(InvalidKeyError):
            check_key(bad, operation="t")


def test_a_directory_is_ready_only_once_prepare_made_and_checked_it(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    (dest / "made-elsewhere").mkdir(parents=True)
    outside.mkdir()
    mapper = KeyMapper(dest)
    path = mapper.path_for("a/b/0001.jpg")
    assert not mapper.ready(path)
    assert mapper.prepare("a/b/0001.jpg") == path
    assert mapper.ready(path) and mapper.ready(mapper.path_for("a/b/0002.jpg"))
    assert not mapper.ready(mapper.path_for("a/0001.jpg"))  # its parent, not the directory
    # A directory that exists but was not prepared here is not ready: prepare checks it
    # (a symlink put there leads outside and is refused).
    assert not mapper.ready(mapper.path_for("made-elsewhere/0001.jpg"))
    (dest / "link").symlink_to(outside)
    assert not mapper.ready(mapper.path_for("link/0001.jpg"))
    with pytest.raises(InvalidKeyError, match="symlink"):
        mapper.prepare("link/0001.jpg")
