"""Mailbox names on the wire: modified UTF-7 (RFC 3501 5.1.3) and quoted strings."""

from __future__ import annotations

import base64

from mailsvc.imap.errors import ImapProtocolError

UNREADABLE = "\ufffd"
"""Ends the name of a mailbox whose name the server did not send in valid modified
UTF-7 (see `decode_mailbox`); such a name cannot be sent back (`encode` refuses it)."""


def decode(name: str) -> str:
    """Modified UTF-7 (RFC 3501 5.1.3) to text; names that are not valid stay as sent."""
    if "&" not in name:
        return name
    out: list[str] = []
    i = 0
    while i < len(name):
        char = name[i]
        if char != "&":
            out.append(char)
            i += 1
            continue
        end = name.find("-", i)
        if end < 0:
            return name
        chunk = name[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
            try:
                out.append(base64.b64decode(padded, validate=True).decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                return name
        i = end + 1
    return "".join(out)


def decode_mailbox(raw: str) -> str:
    """A listed mailbox name as text, for a name that round-trips only.

    A name is kept as decoded when `encode` gives back exactly what the server sent
    and it holds no control character (PostgreSQL stores no NUL; CR and LF cannot be
    sent in a quoted string). Any other name (bad base64, an unterminated `&`,
    non-canonical or raw 8-bit text, U+0000) could not be SELECTed by its decoded
    form, so it gets a stand-in: the name as sent, control characters replaced,
    ending in `UNREADABLE`. Listing it keeps the mailbox visible; selecting it
    fails in `encode`, which the sync records as the mailbox's error.
    """
    decoded = decode(raw)
    readable = UNREADABLE not in decoded and not any(
        ord(c) < 0x20 or ord(c) == 0x7F for c in decoded
    )
    if readable and encode(decoded) == raw:
        return decoded
    shown = "".join(UNREADABLE if ord(c) < 0x20 or ord(c) == 0x7F else c for c in raw)
    return shown + UNREADABLE


def encode(name: str) -> str:
    """Text to modified UTF-7 for commands (inverse of `decode`).

    Raises `ImapProtocolError` for a stand-in name of `decode_mailbox`: what the
    server calls that mailbox is not known.
    """
    if UNREADABLE in name:
        raise ImapProtocolError(
            f"mailbox name {name[:200]!r} was not valid modified UTF-7 "
            "(RFC 3501 5.1.3) as the server listed it; it cannot be selected"
        )
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode()
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def quote(text: str) -> str:
    """An IMAP quoted string; refuses CR/LF/NUL, which would end the command line."""
    if any(c in text for c in "\r\n\0"):
        raise ValueError("CR, LF and NUL cannot be sent in a quoted string")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
