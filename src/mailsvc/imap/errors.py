"""The IMAP adapter's errors; every message is safe to show to a client."""

from __future__ import annotations


class ImapError(Exception):
    """Root of the adapter's errors; the message is safe to show to a client."""


class ImapConnectError(ImapError):
    """The server could not be reached, timed out, failed TLS, or dropped the connection."""


class ImapAuthError(ImapError):
    """The server refused the login."""


class ImapCommandError(ImapError):
    """The server answered NO or BAD to a command."""


class ImapProtocolError(ImapError):
    """The server sent a response that cannot be read (a malformed UID set, say).

    What the command did on the server is unknown, so the work it was part of stops;
    the connection itself may still be usable.
    """
