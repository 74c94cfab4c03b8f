"""The public surface is written once: `Storage` methods, module-level functions and sync twins
have the same parameters and docstrings for every public call, so they can't drift."""

from __future__ import annotations

import asyncio
import inspect
import pydoc
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import core.storage
import mpr_storage
from conftest import S3Target
from mpr_storage import InvalidKeyError, ObjectInfo, ObjectNotFoundError, Storage, sync

# The one list is ``mpr_storage.__all__``; the calls are the names in it that `Storage` defines
# as methods (each implementation bound once).
CALLS = [name for name in mpr_storage.__all__ if name in vars(Storage)]

# The names one surface has and the other has not: async-only types, and the sync module's own.
ASYNC_ONLY = {"Storage", "ObjectBody", "ProgressCallback", "ProviderProfile"}
SYNC_ONLY = {"RunningLoopError", "SyncObjectBody"}

# Where the blocking shape truly differs: (call, parameter or "return") whose annotation may.
SYNC_SHAPES = {
    ("get_s3_client", "return"),  # a boto3 client, not an aiobotocore one
    ("iter_objects", "return"),  # a generator, not an async iterator
    ("open_object", "return"),  # a context manager, not an async one
    ("download_many", "keys"),  # read on the calling thread: no async iterable
}


def params(func: Callable[..., Any], *, bound: bool = False) -> list[tuple[Any, ...]]:
    sig = inspect.signature(func, eval_str=True)
    found = [(p.name, p.kind, p.default, p.annotation) for p in sig.parameters.values()]
    return found[1:] if bound else found


def returns(func: Callable[..., Any]) -> Any:
    return inspect.signature(func, eval_str=True).return_annotation


def test_every_call_is_public_on_all_three_surfaces() -> None:
    assert len(CALLS) >= 20  # the list is read, not empty
    for name in CALLS:
        assert name in sync.__all__, name
        assert name in core.storage.__all__, name
        assert callable(getattr(Storage, name)), name
        assert getattr(core.storage, name) is getattr(sync, name), name


def test_every_public_method_of_storage_is_a_public_call() -> None:
    # A call bound on `Storage` but missing from the one list would have no module-level form.
    assert {name for name in vars(Storage) if not name.startswith("_")} == set(CALLS)


def test_every_public_function_is_a_call_but_the_pure_one() -> None:
    functions = {n for n in mpr_storage.__all__ if inspect.isfunction(getattr(mpr_storage, n))}
    assert functions - set(CALLS) == {"frame_cache_prefix"}  # no storage: the same everywhere
    assert sync.frame_cache_prefix is mpr_storage.frame_cache_prefix


def test_the_sync_names_derive_from_the_one_list() -> None:
    # ``sync.__all__`` stays a literal list: mypy reads only a literal ``__all__``, and
    # ``core.storage`` star-imports it. It must say what the one list says, in the same order.
    expected = [n for n in mpr_storage.__all__ if n not in ASYNC_ONLY]
    assert [n for n in sync.__all__ if n not in SYNC_ONLY] == expected
    assert SYNC_ONLY <= set(sync.__all__) and len(set(sync.__all__)) == len(sync.__all__)
    assert core.storage.__all__ == sync.__all__
    for name in expected:
        if name not in CALLS:  # a shared type, error or bucket: the very same object
            assert getattr(sync, name) is getattr(mpr_storage, name), name


@pytest.mark.parametrize("name", CALLS)
def test_the_three_surfaces_take_the_same_parameters(name: str) -> None:
    method = getattr(Storage, name)
    function = getattr(mpr_storage, name)
    blocking = getattr(sync, name)
    assert list(inspect.signature(method).parameters)[0] in ("self", "storage")
    assert params(function) == params(method, bound=True), name
    assert returns(function) == returns(method), name
    for ours, theirs in zip(params(blocking), params(function), strict=True):
        if (name, ours[0]) in SYNC_SHAPES:
            assert ours[:3] == theirs[:3], name
        else:
            assert ours == theirs, name
    if (name, "return") not in SYNC_SHAPES:
        assert returns(blocking) == returns(function), name


@pytest.mark.parametrize("name", CALLS)
def test_the_docstrings_come_from_one_source(name: str) -> None:
    text = inspect.getdoc(getattr(Storage, name))
    assert text, name
    assert inspect.getdoc(getattr(mpr_storage, name)) == text, name
    blocking = inspect.getdoc(getattr(sync, name)) or ""
    if name != "get_s3_client":  # the blocking client is a boto3 one, documented on its own
        assert blocking == f"Blocking form of :func:`mpr_storage.{name}`.\n\n{text}", name
    assert blocking.startswith(f"Blocking form of :func:`mpr_storage.{name}`.\n"), name


@pytest.mark.parametrize("name", CALLS)
def test_every_docstring_says_what_it_does_and_its_errors(name: str) -> None:
    text = inspect.getdoc(getattr(mpr_storage, name)) or ""
    summary = text.split("\n\n")[0]
    assert len(summary) > 20 and summary.rstrip().endswith((".", ")")), name
    if name != "get_s3_client":
        assert "\nRaises:\n" in text, name


def test_forms_are_async_or_blocking_as_their_surface_says() -> None:
    for name in CALLS:
        function, blocking = getattr(mpr_storage, name), getattr(sync, name)
        assert inspect.iscoroutinefunction(function) == (
            name not in ("iter_objects", "open_object")
        ), name
        assert not inspect.iscoroutinefunction(blocking), name
        assert function.__module__ == "mpr_storage", name
        assert blocking.__module__ == "mpr_storage.sync", name
        assert function.__name__ == blocking.__name__ == name
        assert function.__qualname__ == blocking.__qualname__ == name


def _unfolded(page: str) -> str:
    """A pydoc page on one line: Python 3.13 folds a long signature over several lines."""
    return re.sub(r"\s+\)", ")", re.sub(r"\(\s+", "(", re.sub(r"\s+", " ", page)))


def test_help_shows_the_real_signature() -> None:
    page = pydoc.render_doc(mpr_storage.prefetch_frames, renderer=pydoc.plaintext)
    flat = _unfolded(page)
    assert "prefetch_frames(timeline_id: str, dest_dir: str | os.PathLike[str], *," in flat
    line = flat[flat.index("prefetch_frames(") : flat.index(") -> ")]
    assert "storage:" not in line and "(storage" not in line
    assert "Fetch a timeline's whole frame cache" in page and "Raises:" in page
    page = pydoc.render_doc(core.storage.download_file, renderer=pydoc.plaintext)
    flat = _unfolded(page)
    line = flat[flat.index("download_file(") : flat.index(") -> ")]
    assert line.startswith("download_file(bucket: str, key: str, dest: str | os.PathLike[str]")
    assert "storage:" not in line
    # Path's home is pathlib._local on Python 3.13
    assert re.search(r"download_file\(.*\) -> pathlib(\._local)?\.Path", flat)
    assert "Blocking form of :func:`mpr_storage.download_file`." in page
    assert "renamed into place only when complete" in page


# --- the newly public calls, on each surface, against the servers ------------------------------


@pytest.fixture
def fresh_portal() -> Iterator[None]:
    """The loop thread starts anew, so its client reads this test's environment."""
    sync._portal.stop()
    yield
    sync._portal.stop()


async def test_stat_object_and_list_buckets(s3: S3Target, tmp_path: Path) -> None:
    src = tmp_path / "f.jpg"
    src.write_bytes(b"jpeg bytes")
    key = s3.key("f.jpg")
    async with Storage(s3.settings()) as st:
        uploaded = await st.upload_file(src, s3.bucket, key, content_type="image/jpeg")
        info = await st.stat_object(s3.bucket, key)
        assert (info.key, info.size, info.etag) == (key, 10, uploaded.etag)
        assert info.content_type == "image/jpeg" and info.last_modified is not None
        assert await mpr_storage.stat_object(s3.bucket, key) == info
        buckets = await st.list_buckets()
        assert s3.bucket in buckets and buckets == sorted(buckets)
        assert await mpr_storage.list_buckets() == buckets
        with pytest.raises(ObjectNotFoundError) as missing:
            await mpr_storage.stat_object(s3.bucket, s3.key("none.jpg"))
        assert missing.value.key == s3.key("none.jpg") and "stat_object" in str(missing.value)
        with pytest.raises(InvalidKeyError):
            await st.stat_object(s3.bucket, "")


def test_stat_object_and_list_buckets_blocking(
    s3: S3Target, tmp_path: Path, fresh_portal: None
) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"12345")
    key = s3.key("f.bin")
    uploaded = sync.upload_file(src, s3.bucket, key)
    info = sync.stat_object(s3.bucket, key)
    assert isinstance(info, ObjectInfo) and (info.size, info.etag) == (5, uploaded.etag)
    assert s3.bucket in core.storage.list_buckets()
    with pytest.raises(FileNotFoundError):
        sync.stat_object(s3.bucket, s3.key("none.bin"))


def _seed(s3: S3Target, tmp_path: Path, names: Iterable[str]) -> list[str]:
    src = tmp_path / "seed"
    src.write_bytes(b"x")
    return [sync.upload_file(src, s3.bucket, s3.key(n)).key for n in names]


def test_delete_objects_refuses_a_bare_str_on_both_surfaces(
    s3: S3Target, tmp_path: Path, fresh_portal: None
) -> None:
    keys = _seed(s3, tmp_path, ["a", "b"])
    with pytest.raises(TypeError, match="delete_objects"):
        sync.delete_objects(s3.bucket, keys[0])

    async def main() -> None:
        with pytest.raises(TypeError, match="delete_objects"):
            await mpr_storage.delete_objects(s3.bucket, keys[1])

    asyncio.run(main())
    assert [o.key for o in sync.list_objects(s3.bucket, s3.prefix)] == keys  # nothing deleted
    sync.delete_objects(s3.bucket, iter(keys))  # any other iterable is read up front
    assert sync.list_objects(s3.bucket, s3.prefix) == []
