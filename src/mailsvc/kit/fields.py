"""Field types shared by request bodies: hosts, ports, printable text (they become the schema)."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from mailsvc.kit.addresses import EmailAddress

# Matched with fullmatch: `$` would also match before a final newline, letting
# "abc\n" through while the schema's pattern (ECMA `$`: the very end) refuses it.
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
# IPv4 addresses are hostnames by the rule above (digit labels); a separate digits-and-
# dots rule would only add empty labels (".0.1"), which name resolution cannot encode.
_IP_LITERAL = re.compile(r"[0-9A-Fa-f:]+")
# _check_host's rule as an OpenAPI pattern (the 253-character bound is maxLength).
HOST_PATTERN = (
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
    r"|[0-9A-Fa-f:]{1,45})$"
)


def _check_host(value: str) -> str:
    if not (_HOSTNAME.fullmatch(value) or (_IP_LITERAL.fullmatch(value) and len(value) <= 45)):
        raise ValueError("must be a hostname or an IP address")
    return value.lower()


def check_printable(value: str) -> str:
    # CR/LF would let a value smuggle extra header lines into IMAP commands or mail.
    if any(not ch.isprintable() for ch in value):
        raise ValueError("must not contain control characters")
    return value


# check_printable's rule, as far as a portable pattern can say it: no C0 or C1 control
# character. Python's printable also excludes format, separator and unassigned
# characters, which the descriptions state in words.
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
PRINTABLE_DESCRIPTION = (
    "Printable text: no control, format, private-use or unassigned characters, and no "
    "separator but the space."
)

# kit.addresses refuses an address above 254 characters (RFC 5321's path limit).
AccountAddress = Annotated[
    EmailAddress, Field(max_length=254, json_schema_extra={"format": "email"})
]
Host = Annotated[
    str,
    Field(min_length=1, max_length=253, json_schema_extra={"pattern": HOST_PATTERN}),
    AfterValidator(_check_host),
]
Username = Annotated[
    str,
    Field(
        min_length=1,
        max_length=320,
        description=PRINTABLE_DESCRIPTION,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
    ),
    AfterValidator(check_printable),
]
Password = Annotated[SecretStr, Field(min_length=1, max_length=4096)]


def _refuse_non_integers(value: object) -> object:
    # Lax int would take `true` and "993"; the schema's `integer` takes neither (it
    # does take 993.0, which lax int turns into 993, so StrictInt would be too strict).
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer")
    return value


# After the bounds, so they stay on the integer's schema (`minimum`, `maximum`).
JSON_INTEGER = BeforeValidator(_refuse_non_integers)
Port = Annotated[int, Field(ge=1, le=65535), JSON_INTEGER]


def _check_http_url(value: str) -> str:
    check_printable(value)
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    if parts.fragment:
        raise ValueError("must not have a fragment")
    return value


HttpUrl = Annotated[
    str,
    Field(min_length=8, max_length=2048, json_schema_extra={"format": "uri"}),
    AfterValidator(_check_http_url),
]
"""An absolute http(s) URL without a fragment, kept exactly as given."""
