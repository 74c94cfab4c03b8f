"""mpr_storage.web's HTTP logic on its own: Range parsing, RFC 9110's order of conditions,
Content-Disposition (the wire is tested through the example app, test_example_handlers)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mpr_storage import ObjectInfo
from mpr_storage.web import _parse_range, _Plan, _plan_answer, _resolve_range

MODIFIED = datetime(2025, 4, 15, 12, 30, 5, 250_000, tzinfo=timezone.utc)
DATE = "Tue, 15 Apr 2025 12:30:05 GMT"  # MODIFIED, as Last-Modified says it (whole seconds)
EARLIER = "Tue, 15 Apr 2025 12:30:04 GMT"
INFO = ObjectInfo("a/b.webm", 1000, "abc123", MODIFIED, "video/webm")


@pytest.mark.parametrize(
    ("header", "spec"),
    [
        ("bytes=0-499", (0, 499)),
        ("bytes=500-", (500, None)),
        ("bytes=-200", (None, 200)),
        ("BYTES = 7 - 9 ", (7, 9)),
        ("bytes=0-0", (0, 0)),
        ("bytes=-0", (None, 0)),
        ("bytes=5-5,", (5, 5)),  # empty list elements don't count
        ("bytes=999999999999999999-", (999999999999999999, None)),
    ],
)
def test_one_range_is_parsed(header: str, spec: tuple[int | None, int | None]) -> None:
    assert _parse_range(header) == spec


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=5-2",  # last before first: invalid, the header is ignored
        "bytes=a-b",
        "bytes=+1-2",
        "bytes=1--2",
        "bytes=\u0661-\u0662",  # digits, but not ASCII ones
        "bytes=1" + "0" * 5000 + "-",  # int() would refuse it: ignored, not a 500
        "bytes=0-1,5-9",  # several ranges: answered whole (RFC 9110 allows it)
        "items=0-5",
        "bytes 0-5",
    ],
)
def test_other_range_headers_are_ignored(header: str | None) -> None:
    assert _parse_range(header) is None


@pytest.mark.parametrize(
    ("spec", "span"),
    [
        ((0, 499), (0, 500)),
        ((990, 2000), (990, 1000)),  # cut at the end
        ((999, None), (999, 1000)),
        ((None, 200), (800, 1000)),
        ((None, 5000), (0, 1000)),  # a suffix longer than the object: all of it
        ((1000, None), None),
        ((1000, 1005), None),
        ((None, 0), None),
    ],
)
def test_a_range_resolves_against_the_size(
    spec: tuple[int | None, int | None], span: tuple[int, int] | None
) -> None:
    assert _resolve_range(spec, 1000) == span


def plan(headers: dict[str, str], method: str = "GET", info: ObjectInfo = INFO) -> _Plan:
    return _plan_answer(method, headers, info)


def test_plain_and_ranged_requests() -> None:
    assert plan({}) == _Plan(200, 0, 1000)
    assert plan({"range": "bytes=100-199"}) == _Plan(206, 100, 200)
    assert plan({"range": "bytes=-1"}) == _Plan(206, 999, 1000)
    assert plan({"range": "bytes=1000-"}).status == 416
    assert plan({"range": "bytes=0-1,3-4"}) == _Plan(200, 0, 1000)
    assert plan({"range": "bytes=10-"}, method="HEAD") == _Plan(206, 10, 1000)
    assert plan({"range": "bytes=10-"}, method="POST") == _Plan(200, 0, 1000)


def test_an_empty_object_is_answered_whole_whatever_the_range() -> None:
    empty = ObjectInfo("e", 0, "d41d8cd98f00b204e9800998ecf8427e", MODIFIED)
    for header in ("bytes=0-", "bytes=-5", "bytes=3-4"):
        assert plan({"range": header}, info=empty) == _Plan(200, 0, 0)


def test_if_none_match_gives_304_with_weak_comparison() -> None:
    assert plan({"if-none-match": '"abc123"'}).status == 304
    assert plan({"if-none-match": 'W/"abc123"'}).status == 304
    assert plan({"if-none-match": '"x", "abc123"'}).status == 304
    assert plan({"if-none-match": "*"}).status == 304
    assert plan({"if-none-match": '"other"'}).status == 200
    assert plan({"if-none-match": '"abc123"', "range": "bytes=0-1"}).status == 304


def test_if_none_match_wins_over_if_modified_since() -> None:
    # RFC 9110 13.1.3: a recipient MUST ignore If-Modified-Since with If-None-Match.
    assert plan({"if-none-match": '"other"', "if-modified-since": DATE}).status == 200
    assert plan({"if-none-match": '"abc123"', "if-modified-since": EARLIER}).status == 304


def test_if_modified_since() -> None:
    assert plan({"if-modified-since": DATE}).status == 304  # same second: not modified
    assert plan({"if-modified-since": EARLIER}).status == 200
    assert plan({"if-modified-since": "not a date"}).status == 200
    assert plan({"if-modified-since": DATE}, method="HEAD").status == 304
    assert plan({"if-modified-since": DATE}, method="POST").status == 200


def test_if_match_and_if_unmodified_since_give_412() -> None:
    assert plan({"if-match": '"abc123"'}).status == 200
    assert plan({"if-match": 'W/"abc123"'}).status == 412  # strong comparison
    assert plan({"if-match": '"other"'}).status == 412
    assert plan({"if-unmodified-since": EARLIER}).status == 412
    assert plan({"if-unmodified-since": DATE}).status == 200
    # If-Match wins over If-Unmodified-Since.
    assert plan({"if-match": '"abc123"', "if-unmodified-since": EARLIER}).status == 200


def test_if_range_serves_the_range_only_while_it_holds() -> None:
    ranged = {"range": "bytes=10-19"}
    assert plan({**ranged, "if-range": '"abc123"'}) == _Plan(206, 10, 20)
    assert plan({**ranged, "if-range": '"other"'}) == _Plan(200, 0, 1000)
    assert plan({**ranged, "if-range": 'W/"abc123"'}) == _Plan(200, 0, 1000)  # weak: never
    assert plan({**ranged, "if-range": DATE}) == _Plan(206, 10, 20)
    assert plan({**ranged, "if-range": EARLIER}) == _Plan(200, 0, 1000)
    later = ObjectInfo(INFO.key, 1000, INFO.etag, MODIFIED + timedelta(seconds=1))
    assert plan({**ranged, "if-range": DATE}, info=later) == _Plan(200, 0, 1000)
    # A 416 under a failed If-Range is the whole object instead.
    assert plan({"range": "bytes=5000-", "if-range": '"other"'}) == _Plan(200, 0, 1000)
