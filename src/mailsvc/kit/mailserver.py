"""How to reach a mail server: shared by the IMAP and SMTP adapters."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path


class Security(StrEnum):
    """Transport security: implicit TLS, STARTTLS upgrade, or none (trusted networks)."""

    TLS = "tls"
    STARTTLS = "starttls"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class MailServer:
    """A server endpoint and the login for it. `repr` never shows a secret.

    With `access_token` set the login is OAuth2 (SASL XOAUTH2 or OAUTHBEARER, as the
    server offers) and `password` is unused.
    """

    host: str
    port: int
    security: Security
    username: str
    password: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)


@lru_cache(maxsize=8)
def tls_context(extra_ca_file: Path | None = None) -> ssl.SSLContext:
    """A verifying client context; `extra_ca_file` adds a private CA (MAIL_TLS_CA_FILE).

    Built once per CA file and shared: building one reads the system CA bundle from
    disk, which must not happen on the event loop for every connection.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if extra_ca_file is not None:
        context.load_verify_locations(cafile=str(extra_ca_file))
    return context


def tls_failure_reason(error: ssl.SSLError) -> str:
    """Why a handshake failed, in words: a failed certificate check says what failed
    (`certificate verify failed: Hostname mismatch, ...`), not only
    `CERTIFICATE_VERIFY_FAILED`. Server-influenced: pass it through `safe_server_text`."""
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"certificate verify failed: {error.verify_message}"
    return str(error.reason or error)
