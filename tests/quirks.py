"""Provider quirks, emulated by a loopback proxy in front of the test server.

:class:`QuirkProxy` is a :class:`~s3proxy.FaultProxy` (counting, fault injection) that also
rewrites answers the way other S3 implementations write them:

- ``gcs``: Google Cloud Storage's XML API (listing namespace, ETags in literal quotes);
- ``echo_encoding=False``: a server that ignores ``encoding-type=url`` (keys come back raw);
- ``list_body``: a 200 LIST answer whose body is not an S3 listing (a gateway's page);
- ``bucket_region``: AWS for a bucket in another region (``AuthorizationHeaderMalformed``; a
  HEAD gets ``head_status``, 400 or 301, without a body);
- ``public``: a public bucket behind a gateway that signs unsigned requests for the server;
- ``generations``: short-lived credentials whose session token names a generation; a token
  older than ``token_lifetime`` seconds is answered with ``400 ExpiredToken``.

Requests that the proxy re-signs (public gateway, session tokens, which SeaweedFS rejects:
it only knows its own static keys) are signed again with botocore's signer for the server.
"""

from __future__ import annotations

import re
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, unquote_plus
from xml.sax.saxutils import escape

from aiohttp import web
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mpr_storage._server import LocalS3Server
from s3proxy import FaultProxy, Seen

GCS_NAMESPACE = b"http://doc.s3.amazonaws.com/2006-03-01"
_XMLNS = re.compile(rb'xmlns="[^"]*"')
_ETAG = re.compile(rb"<ETag>(?:&quot;|&#34;|\")?([^<&\"]*)(?:&quot;|&#34;|\")?</ETag>")
_ENCODED = re.compile(rb"<(Key|Prefix|StartAfter|Delimiter)>([^<]*)</\1>")
_SCOPE_REGION = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/s3/aws4_request")
_UNSIGNED_DROP = {
    "host",
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
}


class QuirkProxy(FaultProxy):
    """``with QuirkProxy(server, gcs=True) as proxy:`` then point the client at ``proxy.url``."""

    def __init__(
        self,
        server: LocalS3Server,
        *,
        gcs: bool = False,
        echo_encoding: bool = True,
        list_body: bytes | None = None,
        bucket_region: str | None = None,
        head_status: int = 400,
        public: bool = False,
        generations: Path | None = None,
        token_lifetime: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(server.endpoint_url, ssl_context=ssl_context)
        self.server = server
        self.gcs = gcs
        self.echo_encoding = echo_encoding
        self.list_body = list_body
        self.bucket_region = bucket_region
        self.head_status = head_status
        self.public = public
        self.generations = generations
        self.token_lifetime = token_lifetime
        self.refused_region = 0
        self.expired = 0

    # --- what tests use -------------------------------------------------------------------

    def signed(self) -> list[Seen]:
        """Requests that carried a signature (header or query string)."""
        return [
            s
            for s in self.requests
            if "authorization" in s.headers or "X-Amz-Signature=" in s.query
        ]

    # --- hooks ----------------------------------------------------------------------------

    async def intercept(self, request: web.BaseRequest, body: bytes) -> web.Response | None:
        if self.bucket_region is not None:
            found = _SCOPE_REGION.search(request.headers.get("Authorization", ""))
            if found is not None and found.group(1) != self.bucket_region:
                self.refused_region += 1
                return self._wrong_region(request, found.group(1))
        token = request.headers.get("X-Amz-Security-Token")
        if self.generations is not None and token is not None and self._stale(token):
            self.expired += 1
            return _xml_error(400, "ExpiredToken", "The provided token has expired.")
        return None

    def upstream_headers(
        self, request: web.BaseRequest, body: bytes, headers: dict[str, str]
    ) -> dict[str, str]:
        unsigned = "Authorization" not in request.headers
        has_token = "X-Amz-Security-Token" in request.headers
        if (self.public and unsigned) or (self.generations is not None and has_token):
            return self._resign(request, body, headers)
        return headers

    def rewrite(
        self, request: web.BaseRequest, status: int, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        path, _, query = request.raw_path.partition("?")
        listing = Seen(request.method, path, query, status).is_list and status == 200
        if listing and self.list_body is not None:
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            return status, {**headers, "Content-Type": "text/html"}, self.list_body
        if listing and not self.echo_encoding and b"<EncodingType>url</EncodingType>" in body:
            body = body.replace(b"<EncodingType>url</EncodingType>", b"")
            body = _ENCODED.sub(_decoded, body)
        if listing and self.gcs:
            body = _XMLNS.sub(b'xmlns="' + GCS_NAMESPACE + b'"', body, count=1)
            body = _ETAG.sub(rb'<ETag>"\1"</ETag>', body)
        return status, headers, body

    # --- helpers --------------------------------------------------------------------------

    def _wrong_region(self, request: web.BaseRequest, region: str) -> web.Response:
        assert self.bucket_region is not None
        header = {"x-amz-bucket-region": self.bucket_region}
        if request.method == "HEAD":
            return web.Response(status=self.head_status, headers=header)
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><Error>'
            "<Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is "
            f"malformed; the region '{region}' is wrong; expecting '{self.bucket_region}'"
            f"</Message><Region>{self.bucket_region}</Region><RequestId>proxy</RequestId></Error>"
        )
        return web.Response(
            status=400, body=xml.encode(), content_type="application/xml", headers=header
        )

    def _stale(self, token: str) -> bool:
        assert self.generations is not None
        issued = read_generations(self.generations)
        generation = int(token.rpartition("-")[2]) if token.startswith("generation-") else -1
        if generation not in issued:
            return True
        return time.time() > issued[generation] + self.token_lifetime

    def _resign(
        self, request: web.BaseRequest, body: bytes, headers: dict[str, str]
    ) -> dict[str, str]:
        """Sign the request again for the server with its own static keys."""
        kept = {k: v for k, v in headers.items() if k.lower() not in _UNSIGNED_DROP}
        path, _, query = request.raw_path.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))  # signed in canonical form
        aws = AWSRequest(request.method, self.upstream + path, kept, body, params=params)
        creds = Credentials(self.server.access_key_id, self.server.secret_access_key)
        S3SigV4Auth(creds, "s3", "us-east-1").add_auth(aws)
        return dict(aws.headers.items())


def _decoded(match: re.Match[bytes]) -> bytes:
    name, text = match.group(1), match.group(2).decode()
    return b"<%s>%s</%s>" % (name, escape(unquote_plus(text)).encode(), name)


def _xml_error(status: int, code: str, message: str) -> web.Response:
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>proxy</RequestId></Error>"
    )
    return web.Response(status=status, body=xml.encode(), content_type="application/xml")


# --- short-lived credentials from a credential_process -------------------------------------

CREDENTIAL_PROCESS = """\
import datetime, json, sys, time
counter, key, secret, lifetime = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
with open(counter, "a+") as f:
    f.seek(0)
    generation = len(f.read().splitlines()) + 1
    f.write(f"{generation} {time.time()}\\n")
# botocore refreshes credentials 15 minutes before they expire: these need it after `lifetime`.
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
    seconds=15 * 60 + lifetime
)
print(json.dumps({
    "Version": 1,
    "AccessKeyId": key,
    "SecretAccessKey": secret,
    "SessionToken": f"generation-{generation}",
    "Expiration": expires.isoformat(),
}))
"""


def write_credential_process(
    root: Path, server: LocalS3Server, *, refresh_after: float = 1.0
) -> tuple[Path, Path]:
    """Write a credential process and an AWS config file whose default profile uses it.

    Returns ``(config_file, generations_file)``; each run of the process appends one line,
    ``<generation> <issued at>``, to the generations file."""
    root.mkdir(parents=True, exist_ok=True)
    script = root / "credential_process.py"
    script.write_text(CREDENTIAL_PROCESS)
    generations = root / "generations.txt"
    generations.write_text("")
    config = root / "aws-config"
    args = [
        sys.executable,
        str(script),
        str(generations),
        server.access_key_id,
        server.secret_access_key,
        str(refresh_after),
    ]
    config.write_text(f"[default]\ncredential_process = {' '.join(args)}\n")
    return config, generations


def read_generations(path: Path) -> dict[int, float]:
    """``{generation: issued at (time.time())}`` of every credential the process printed."""
    issued: dict[int, float] = {}
    for line in path.read_text().splitlines():
        number, _, at = line.partition(" ")
        if at:
            issued[int(number)] = float(at)
    return issued
