"""Listing windows (start_after, limit) and one level of common prefixes, on both servers and
both transports, with the LIST requests counted by the proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import BucketNotFoundError, Storage, sync
from s3proxy import FaultProxy
from test_objects import SPECIAL_KEYS

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])


async def _seed(s3: S3Target, tmp_path: Path, names: list[str]) -> list[str]:
    src = tmp_path / "seed"
    src.write_bytes(b"x")
    async with Storage(s3.settings()) as st:
        return [(await st.upload_file(src, s3.bucket, s3.key(n))).key for n in names]


FRAMES = [f"frames/{i:06d}.jpg" for i in range(30)]


@PATHS
async def test_a_window_costs_one_list_request(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    keys = await _seed(s3, tmp_path, [*FRAMES, "frames/notes.txt"])
    prefix = s3.key("frames/")
    async with Storage(s3.settings(endpoint_url=proxy.url, fast_path=fast_path)) as st:
        proxy.reset()
        window = await st.list_objects(s3.bucket, prefix, start_after=keys[4], limit=10)
        assert [o.key for o in window] == keys[5:15]
        assert all(o.size == 1 for o in window)
        assert proxy.count(lists_only=True) == proxy.count() == 1
        assert "max-keys=10" in proxy.requests[0].query
        assert "start-after=" in proxy.requests[0].query
        # A window that reaches the end of the listing: what is there, still one request.
        proxy.reset()
        tail = [o.key async for o in st.iter_objects(s3.bucket, prefix, start_after=keys[27])]
        assert tail == keys[28:] and proxy.count() == 1
        # start_after need not exist; limit alone is the first keys.
        proxy.reset()
        first = await st.list_objects(s3.bucket, prefix, limit=3)
        assert [o.key for o in first] == keys[:3] and proxy.count() == 1
        between = await st.list_objects(s3.bucket, prefix, start_after=keys[9] + "~", limit=2)
        assert [o.key for o in between] == keys[10:12]
        # Suffixes filter the window: the limit counts matching objects.
        jpgs = await st.list_objects(s3.bucket, prefix, suffixes=".txt", start_after=keys[3])
        assert [o.key for o in jpgs] == [keys[-1]]
        proxy.reset()
        assert await st.list_objects(s3.bucket, prefix, limit=0) == []
        assert proxy.count() == 0


@PATHS
async def test_a_window_larger_than_a_page_reads_on(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    """Pages after the first continue from their token (start_after is sent only first)."""
    keys = await _seed(s3, tmp_path, FRAMES[:8])
    async with Storage(s3.settings(fast_path=fast_path)) as st:
        transport = await st.transport()
        page = await transport.list_page(
            s3.bucket, s3.prefix, None, max_keys=3, start_after=keys[1]
        )
        assert [o.key for o in page.objects] == keys[2:5] and page.next_token
        page = await transport.list_page(s3.bucket, s3.prefix, page.next_token, max_keys=3)
        assert [o.key for o in page.objects] == keys[5:8]


async def test_bad_limit_is_refused(storage: Storage, s3: S3Target) -> None:
    for bad in (-1, True, 2.5):
        with pytest.raises(ValueError, match="limit"):
            await storage.list_objects(s3.bucket, s3.prefix, limit=bad)  # type: ignore[arg-type]


NESTED = [
    "frames/tl-2/000001.jpg",
    "frames/tl-1/000001.jpg",
    "frames/tl-1/000002.jpg",
    "frames/tl 3+ü/000001.jpg",
    "frames/readme.txt",
    "frames/tl-1/deeper/x.jpg",
    "other/a.jpg",
]


@PATHS
async def test_list_prefixes_gives_one_level_sorted(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    await _seed(s3, tmp_path, NESTED)
    async with Storage(s3.settings(endpoint_url=proxy.url, fast_path=fast_path)) as st:
        proxy.reset()
        found = await st.list_prefixes(s3.bucket, s3.key("frames/"))
        assert found == [s3.key(p) for p in ("frames/tl 3+ü/", "frames/tl-1/", "frames/tl-2/")]
        assert proxy.count() == 1 and "delimiter=%2F" in proxy.requests[0].query
        assert await st.list_prefixes(s3.bucket, s3.prefix) == [
            s3.key("frames/"),
            s3.key("other/"),
        ]
        assert await st.list_prefixes(s3.bucket, s3.key("frames/tl-1/")) == [
            s3.key("frames/tl-1/deeper/")
        ]
        assert await st.list_prefixes(s3.bucket, s3.key("nothing/")) == []
        # Another delimiter: the levels are cut there.
        assert await st.list_prefixes(s3.bucket, s3.key("frames/tl"), delimiter="-") == [
            s3.key("frames/tl-")
        ]
        with pytest.raises(ValueError, match="delimiter"):
            await st.list_prefixes(s3.bucket, s3.prefix, delimiter="")
        with pytest.raises(BucketNotFoundError) as missing:
            await st.list_prefixes("no-such-bucket-here", "")
        assert "list_prefixes" in str(missing.value)


@PATHS
async def test_list_prefixes_reads_every_page(
    s3: S3Target, tmp_path: Path, fast_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _seed(s3, tmp_path, [f"p{i}/f.jpg" for i in range(5)])
    async with Storage(s3.settings(fast_path=fast_path)) as st:
        transport = await st.transport()
        pages = []
        real = transport.list_page

        async def small_pages(*args: object, **kwargs: object) -> object:
            kwargs["max_keys"] = 2
            page = await real(*args, **kwargs)  # type: ignore[arg-type]
            pages.append(page)
            return page

        monkeypatch.setattr(transport, "list_page", small_pages)
        found = await st.list_prefixes(s3.bucket, s3.prefix)
    assert found == [s3.key(f"p{i}/") for i in range(5)]
    assert len(pages) == 3


@pytest.fixture
def fresh_portal() -> Iterator[None]:
    sync._portal.stop()
    yield
    sync._portal.stop()


def test_window_and_prefixes_on_the_other_surfaces(
    s3: S3Target, tmp_path: Path, fresh_portal: None
) -> None:
    import asyncio

    keys = asyncio.run(_seed(s3, tmp_path, ["a/1.jpg", "a/2.jpg", "a/3.jpg", "b/1.jpg"]))
    assert [o.key for o in sync.list_objects(s3.bucket, s3.prefix, start_after=keys[0])] == keys[1:]
    assert [o.key for o in sync.iter_objects(s3.bucket, s3.prefix, limit=2)] == keys[:2]
    assert sync.list_prefixes(s3.bucket, s3.prefix) == [s3.key("a/"), s3.key("b/")]

    async def main() -> None:
        window = [o.key async for o in mpr_storage.iter_objects(s3.bucket, s3.prefix, limit=1)]
        assert window == keys[:1]
        got = await mpr_storage.list_objects(s3.bucket, s3.prefix, start_after=keys[2])
        assert [o.key for o in got] == keys[3:]
        assert await mpr_storage.list_prefixes(s3.bucket, s3.prefix) == [
            s3.key("a/"),
            s3.key("b/"),
        ]

    asyncio.run(main())


async def test_fast_and_botocore_listings_agree(s3: S3Target, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    names = [*SPECIAL_KEYS, "x%2Fy.jpg", "plus+and space.png"]
    async with Storage(s3.settings()) as fast, Storage(s3.settings(fast_path=False)) as slow:
        for name in names:
            await fast.upload_file(tmp_path / "f", s3.bucket, s3.key(name))
        a = await fast.list_objects(s3.bucket, s3.prefix)
        b = await slow.list_objects(s3.bucket, s3.prefix)
    assert [(o.key, o.size, o.etag) for o in a] == [(o.key, o.size, o.etag) for o in b]
    assert sorted(o.key for o in a) == sorted(s3.key(n) for n in names)
    assert all(o.last_modified is not None and o.last_modified.tzinfo is not None for o in a)
    assert [o.last_modified for o in a] == [o.last_modified for o in b]
