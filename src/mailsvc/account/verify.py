"""Checks run before an account is stored: public hosts, working IMAP and SMTP logins."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mailsvc.config import Settings
from mailsvc.errors import FieldError, UnprocessableError
from mailsvc.imap.connection import check_imap_login
from mailsvc.imap.errors import ImapAuthError, ImapError
from mailsvc.kit.hosts import HostNotAllowedError, ensure_public_host
from mailsvc.kit.mailserver import MailServer, tls_context
from mailsvc.smtp.client import SmtpAuthError, SmtpError, check_smtp_login


async def ensure_hosts_allowed(imap: MailServer, smtp: MailServer, settings: Settings) -> None:
    """422 `host_not_allowed` if either host is private and that is not allowed."""
    for field, server in (("imap", imap), ("smtp", smtp)):
        try:
            await ensure_public_host(
                server.host, server.port, allow_private=settings.allow_private_hosts
            )
        except HostNotAllowedError as exc:
            raise UnprocessableError(
                f"{field.upper()} {exc}",
                code="host_not_allowed",
                errors=[FieldError(field=f"body.{field}.host", message=str(exc))],
            ) from exc


async def _login_problem(
    protocol: str,
    check: Callable[..., Awaitable[None]],
    auth_error: type[Exception],
    connect_error: type[Exception],
    server: MailServer,
    settings: Settings,
) -> tuple[str, str] | None:
    """(code, message) when the login to `server` fails, else None."""
    try:
        await check(
            server,
            io_timeout=settings.mail_connect_timeout_seconds,
            tls=tls_context(settings.mail_tls_ca_file),
        )
    except auth_error as exc:
        return f"{protocol.lower()}_login_failed", f"{protocol} login failed: {exc}"
    except connect_error as exc:
        return f"{protocol.lower()}_connect_failed", f"{protocol} connection failed: {exc}"
    return None


async def verify_logins(imap: MailServer, smtp: MailServer, settings: Settings) -> None:
    """Log in to both servers concurrently; 422 naming each server that failed and why."""
    imap_result, smtp_result = await asyncio.gather(
        _login_problem("IMAP", check_imap_login, ImapAuthError, ImapError, imap, settings),
        _login_problem("SMTP", check_smtp_login, SmtpAuthError, SmtpError, smtp, settings),
    )
    failures = [
        (field, result)
        for field, result in (("imap", imap_result), ("smtp", smtp_result))
        if result is not None
    ]
    if not failures:
        return
    raise UnprocessableError(
        "; ".join(message for _, (_, message) in failures),
        code=failures[0][1][0],
        errors=[FieldError(field=f"body.{field}", message=msg) for field, (_, msg) in failures],
    )
