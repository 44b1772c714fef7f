"""Checks run before an account is stored: public hosts, working IMAP and SMTP logins."""

from __future__ import annotations

import asyncio

from mailsvc.config import Settings
from mailsvc.errors import FieldError, UnprocessableError
from mailsvc.kit.hosts import HostNotAllowedError, ensure_public_host
from mailsvc.kit.mailserver import MailServer, tls_context
from mailsvc.outbox.smtp import SmtpAuthError, SmtpError, check_smtp_login
from mailsvc.sync.imap import ImapAuthError, ImapError, check_imap_login


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


async def _imap_problem(server: MailServer, settings: Settings) -> tuple[str, str] | None:
    try:
        await check_imap_login(
            server,
            io_timeout=settings.mail_connect_timeout_seconds,
            tls=tls_context(settings.mail_tls_ca_file),
        )
    except ImapAuthError as exc:
        return "imap_login_failed", f"IMAP login failed: {exc}"
    except ImapError as exc:
        return "imap_connect_failed", f"IMAP connection failed: {exc}"
    return None


async def _smtp_problem(server: MailServer, settings: Settings) -> tuple[str, str] | None:
    try:
        await check_smtp_login(
            server,
            io_timeout=settings.mail_connect_timeout_seconds,
            tls=tls_context(settings.mail_tls_ca_file),
        )
    except SmtpAuthError as exc:
        return "smtp_login_failed", f"SMTP login failed: {exc}"
    except SmtpError as exc:
        return "smtp_connect_failed", f"SMTP connection failed: {exc}"
    return None


async def verify_logins(imap: MailServer, smtp: MailServer, settings: Settings) -> None:
    """Log in to both servers concurrently; 422 naming each server that failed and why."""
    imap_result, smtp_result = await asyncio.gather(
        _imap_problem(imap, settings), _smtp_problem(smtp, settings)
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
