"""Endpoint URLs: checked with a message that says how to fix one, sent without userinfo."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from ._errors import ConfigError

__all__ = ["check_endpoint_url", "without_userinfo"]


def without_userinfo(url: str) -> str:
    """``url`` without its userinfo: requests are signed, never sent with a password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def check_endpoint_url(value: str, env: str) -> None:
    """Raise :class:`ConfigError` naming ``env`` unless ``value`` is an http(s) URL with a valid
    host and port; the message says how to write it."""
    if any(c.isspace() or not c.isprintable() for c in value):
        # urlsplit drops tabs and newlines where aiohttp and botocore would not
        raise ConfigError(
            f"{env}={_hide_userinfo(value)!r} has an invalid host name: it holds a space or a "
            "control character"
        )
    try:
        parts = urlsplit(value)
        parts.hostname  # noqa: B018 - Python 3.11+ checks a bracketed IPv6 address here
    except ValueError:
        raise ConfigError(
            f"{env}={_hide_userinfo(value)!r} has an invalid host name: not an IPv6 address"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # "http//host", "http:/host", "https:host": a mistyped scheme, not a host name.
        typo = re.match(r"(?i)^(https?)(?::/{0,2}|/{1,2})(?!/)(.+)$", value)
        scheme, rest = (typo[1].lower(), typo[2]) if typo else ("http", value.split("://")[-1])
        raise ConfigError(
            f"{env}={_hide_userinfo(value)!r} is not an http(s) URL; write it with a scheme, "
            f"e.g. {scheme}://{_hide_userinfo(rest) or 'localhost:9000'}"
        )
    shown = _hide_userinfo(value)
    try:
        port = parts.port
    except ValueError:  # "host:99999", "host:abc"
        port = 0
    if port == 0:
        raise ConfigError(f"{env}={shown!r} has an invalid port: write a number from 1 to 65535")
    host = parts.hostname or ""
    if parts.netloc.rpartition("@")[2].startswith("["):
        valid = _is_ipv6(host)
    else:
        valid = all(c.isalnum() or c in "-._" for c in host)
    if not valid:
        raise ConfigError(
            f"{env}={shown!r} has an invalid host name {host!r}: letters, digits, '-', '.' "
            "and '_' only, or an IPv6 address in brackets"
        )


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _hide_userinfo(text: str) -> str:
    """``text`` (a URL, maybe mistyped) with what stands before an ``@`` hidden."""
    if "@" not in text:
        return text
    head, _, host = text.rpartition("@")
    return f"{head[: head.rfind('/') + 1]}***@{host}"
