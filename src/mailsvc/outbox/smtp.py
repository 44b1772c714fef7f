"""SMTP client adapter over aiosmtplib."""

from __future__ import annotations

import ssl

import aiosmtplib

from mailsvc.kit.mailserver import MailServer, Security, safe_server_text


class SmtpError(Exception):
    """Root of the adapter's errors; the message is safe to show to a client."""


class SmtpConnectError(SmtpError):
    """The server could not be reached, timed out, or failed TLS."""


class SmtpAuthError(SmtpError):
    """The server refused the login."""


def _client(server: MailServer, *, io_timeout: float, tls: ssl.SSLContext) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        use_tls=server.security is Security.TLS,
        # False, not None: with "none" we must not upgrade on our own initiative.
        start_tls=server.security is Security.STARTTLS,
        tls_context=tls,
        timeout=io_timeout,
    )


async def check_smtp_login(server: MailServer, *, io_timeout: float, tls: ssl.SSLContext) -> None:
    """Connect, log in and quit; raises `SmtpConnectError` or `SmtpAuthError`."""
    client = _client(server, io_timeout=io_timeout, tls=tls)
    try:
        await client.connect()
    except ssl.SSLError as exc:
        raise SmtpConnectError(f"TLS handshake failed: {exc.reason or exc}") from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        reason = safe_server_text(str(exc)) or type(exc).__name__
        raise SmtpConnectError(f"cannot connect to {server.host}:{server.port}: {reason}") from exc
    try:
        await client.login(server.username, server.password)
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise SmtpAuthError(f"login refused: {exc.code} {safe_server_text(exc.message)}") from exc
    except aiosmtplib.SMTPException as exc:
        raise SmtpAuthError(f"login failed: {safe_server_text(str(exc))}") from exc
    except (OSError, TimeoutError) as exc:
        raise SmtpConnectError("connection lost during login") from exc
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
