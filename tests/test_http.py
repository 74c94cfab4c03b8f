"""The fast path's signer: every signature equals botocore's for the same request and time."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

import pytest
from botocore import auth as botocore_auth
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from mpr_storage import StorageSettings
from mpr_storage._http import SignedRequests
from mpr_storage._sigv4 import UNSIGNED_PAYLOAD, SigV4

KEYS = [
    "frames/job-1/tl/frame_000001.jpg",
    "a key with spaces/and+plus=eq&amp;.png",
    "unicode/é漢字🎞.jpg",
    "percent%2Fencoded%20already",
    "tilde~and-under_score.dots...",
    "double//slash/./dot/../x",
    "quote'\"<>#?[]@!$()*,;",
    "",
]


class _BotocoreSigner(S3SigV4Auth):  # type: ignore[misc]
    def payload(self, request: AWSRequest) -> str:
        return str(request.context["payload_hash"])


def _botocore_authorization(
    creds: ReadOnlyCredentials,
    region: str,
    method: str,
    url: str,
    amz_date: str,
    payload_hash: str,
    extra: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: when)
    request = AWSRequest(method=method, url=url, headers=dict(extra))
    request.context["payload_hash"] = payload_hash
    _BotocoreSigner(creds, "s3", region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


class _Fast:
    """The fast transport's request builder with a fixed signer (no network)."""

    def __init__(self, endpoint: str, creds: ReadOnlyCredentials, region: str, virtual: bool):
        settings = StorageSettings(
            endpoint_url=endpoint, region=region, addressing_style="virtual" if virtual else "path"
        )
        self._transport = SignedRequests(settings, endpoint, None, None)
        self._signer = SigV4(creds, region)

    def _request(self, *args: Any) -> Any:
        return self._transport._request(*args, signer=self._signer)


def _fast(endpoint: str, creds: ReadOnlyCredentials, region: str, virtual: bool) -> _Fast:
    return _Fast(endpoint, creds, region, virtual)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(
    ("endpoint", "virtual"),
    [
        ("http://127.0.0.1:9000", False),
        ("https://S3.Example.COM", True),
        ("https://s3.example.com:443/base/path", False),
        ("http://[::1]:8333", False),
    ],
)
@pytest.mark.parametrize("token", [None, "session/token+="])
def test_get_signature_matches_botocore(
    key: str, endpoint: str, virtual: bool, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    fast = _fast(endpoint, creds, "eu-west-3", virtual)
    url, headers = fast._request("GET", "mpr-media-out", key, "", UNSIGNED_PAYLOAD)
    expected = _botocore_authorization(
        creds, "eu-west-3", "GET", str(url), headers["x-amz-date"], UNSIGNED_PAYLOAD, {},
        monkeypatch,
    )  # fmt: skip
    assert headers["authorization"] == expected["authorization"]
    assert headers["host"] == botocore_auth._host_from_url(str(url))
    assert headers.get("x-amz-security-token") == token
    if virtual and key:
        assert url.host == "mpr-media-out.s3.example.com"


def test_put_with_extra_headers_and_list_query_match_botocore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    creds = ReadOnlyCredentials("AK", "SK", None)
    fast = _fast("http://localhost:8333", creds, "us-east-1", False)
    extra = {"Content-Type": "image/jpeg", "Content-MD5": "  1B2M2Y8Asg  TpNNdXTwA== "}
    payload = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    url, headers = fast._request("PUT", "b", "k/x y.jpg", "", payload, extra)
    expected = _botocore_authorization(
        creds, "us-east-1", "PUT", str(url), headers["x-amz-date"], payload, extra, monkeypatch
    )
    assert headers["authorization"] == expected["authorization"]

    query = "continuation-token=a%2Fb%3D&encoding-type=url&list-type=2&prefix=fr%20ames%2F"
    url, headers = fast._request("GET", "b", "", query, UNSIGNED_PAYLOAD)
    expected = _botocore_authorization(
        creds, "us-east-1", "GET", str(url), headers["x-amz-date"], UNSIGNED_PAYLOAD, {},
        monkeypatch,
    )  # fmt: skip
    assert headers["authorization"] == expected["authorization"]


def test_signing_key_follows_the_date(monkeypatch: pytest.MonkeyPatch) -> None:
    creds = ReadOnlyCredentials("AK", "SK", None)
    signer = SigV4(creds, "us-east-1")
    seen: dict[str, Any] = {}
    for when in (1_700_000_000.2, 1_700_000_000.9, 1_700_086_400.5):  # same second, next day
        monkeypatch.setattr("mpr_storage._sigv4.time.time", lambda when=when: when)
        headers = signer.headers("GET", "h", "/b/k", "", UNSIGNED_PAYLOAD)
        url = "http://h/b/k"
        expected = _botocore_authorization(
            creds, "us-east-1", "GET", url, headers["x-amz-date"], UNSIGNED_PAYLOAD, {},
            monkeypatch,
        )  # fmt: skip
        assert headers["authorization"] == expected["authorization"]
        seen[headers["x-amz-date"]] = headers["authorization"]
    assert sorted(seen) == ["20231114T221320Z", "20231115T221320Z"]


def test_keys_are_sent_percent_encoded_as_signed() -> None:
    creds = ReadOnlyCredentials("AK", "SK", None)
    fast = _fast("http://127.0.0.1:9000", creds, "us-east-1", False)
    for key in KEYS:
        url, _ = fast._request("GET", "b", key, "", UNSIGNED_PAYLOAD)
        assert url.raw_path == "/b/" + quote(key, safe="/~")
