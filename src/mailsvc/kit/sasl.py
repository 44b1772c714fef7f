"""SASL initial responses for logging in with an OAuth2 access token (PURE).

Two mechanisms carry a bearer token to IMAP and SMTP servers:

- XOAUTH2, Google's and Microsoft's own (developers.google.com/gmail/imap/xoauth2-protocol):
  ``user=<user>^Aauth=Bearer <token>^A^A``;
- OAUTHBEARER, the standard (RFC 7628): a GS2 header naming the user, then
  key/value pairs: ``n,a=<user>,^Ahost=<host>^Aport=<port>^Aauth=Bearer <token>^A^A``.

Both are sent base64-encoded as the initial response. On a refused token the server
sends a challenge with a JSON error; the client answers it (XOAUTH2: an empty line,
OAUTHBEARER: ``^A``, RFC 7628 §3.2.3) and then gets the final refusal.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

XOAUTH2 = "XOAUTH2"
OAUTHBEARER = "OAUTHBEARER"

# XOAUTH2 first: Google and Microsoft document it and it is what their servers
# handle most; OAUTHBEARER where a server offers only the standard one.
_PREFERENCE = (XOAUTH2, OAUTHBEARER)


def oauth_mechanism(offered: Iterable[str]) -> str | None:
    """The OAuth2 mechanism to use among those the server offers, or None."""
    names = {name.upper() for name in offered}
    return next((name for name in _PREFERENCE if name in names), None)


def _check(value: str, what: str) -> None:
    # ^A separates the fields and "," ends the GS2 header; a user or token carrying
    # them (or a line break) would let one field smuggle in another.
    if any(c in value for c in "\x01\r\n") or not value.isprintable():
        raise ValueError(f"{what} contains control characters")


def initial_response(mechanism: str, *, user: str, token: str, host: str, port: int) -> str:
    """The base64 initial response of `mechanism` for `user` with bearer `token`."""
    _check(user, "the user name")
    _check(token, "the access token")
    if mechanism == XOAUTH2:
        raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
    elif mechanism == OAUTHBEARER:
        # RFC 5801 §4: "," and "=" in the authzid are escaped as =2C and =3D.
        authzid = user.replace("=", "=3D").replace(",", "=2C")
        raw = f"n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    else:
        raise ValueError(f"not an OAuth2 mechanism: {mechanism}")
    return base64.b64encode(raw.encode()).decode("ascii")


def error_acknowledgement(mechanism: str) -> str:
    """What the client sends in answer to the server's error challenge."""
    return "AQ==" if mechanism == OAUTHBEARER else ""
