"""Which URLs a webhook may POST to (SSRF protection).

A webhook URL is user input that the worker will connect to. It must be `https`
(plain `http` only with `ALLOW_PRIVATE_HOSTS`, for development and tests), carry no
credentials, and its host must resolve to public addresses only. The host is checked
when the webhook is saved and again before every delivery, since DNS may change.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from mailsvc.kit.hosts import HostNotAllowedError, ensure_public_host

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"https": 443, "http": 80}


class TargetNotAllowedError(Exception):
    """The URL's scheme or host is not allowed; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int


def parse_target(url: str) -> Target:
    """The parts of an absolute http(s) URL; ValueError naming what is wrong."""
    if len(url) > MAX_URL_LENGTH or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("must be a URL without spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError("must be a valid URL") from exc
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError("must be an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials; the signature authenticates requests")
    if parts.fragment:
        raise ValueError("must not contain a fragment")
    return Target(parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme])


async def ensure_target_allowed(url: str, *, allow_private: bool) -> None:
    """Raise `TargetNotAllowedError` unless mailsvc may POST to `url` now."""
    try:
        target = parse_target(url)
    except ValueError as exc:
        raise TargetNotAllowedError(f"the URL {exc}") from exc
    if target.scheme != "https" and not allow_private:
        raise TargetNotAllowedError("the URL must use https")
    try:
        await ensure_public_host(target.host, target.port, allow_private=allow_private)
    except HostNotAllowedError as exc:
        raise TargetNotAllowedError(str(exc)) from exc
