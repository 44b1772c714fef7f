"""Mailbox names on the wire: modified UTF-7 (RFC 3501 5.1.3) and quoted strings."""

from __future__ import annotations

import base64


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


def encode(name: str) -> str:
    """Text to modified UTF-7 for commands (inverse of `decode`)."""
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
