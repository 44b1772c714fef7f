"""Sealing and opening an account's passwords, bound to tenant, account and server."""

from __future__ import annotations

import uuid
from typing import Literal

from mailsvc.kit.crypto import SecretBox, associated_data
from mailsvc.kit.mailserver import MailServer, Security
from mailsvc.models import Account

Purpose = Literal["imap", "smtp"]


def secret_context(tenant_id: str, account_id: uuid.UUID, purpose: Purpose) -> bytes:
    return associated_data("mailsvc.account", tenant_id, str(account_id), purpose)


def seal_password(
    box: SecretBox, *, tenant_id: str, account_id: uuid.UUID, purpose: Purpose, password: str
) -> str:
    return box.seal(password, context=secret_context(tenant_id, account_id, purpose))


def open_password(box: SecretBox, account: Account, purpose: Purpose) -> str:
    sealed = account.imap_secret if purpose == "imap" else account.smtp_secret
    if sealed is None:
        raise ValueError(f"account {account.id} has no {purpose} password (auth_type oauth2)")
    return box.open(sealed, context=secret_context(account.tenant_id, account.id, purpose))


def mail_server(box: SecretBox, account: Account, purpose: Purpose) -> MailServer:
    """The account's IMAP or SMTP endpoint with its decrypted password."""
    return MailServer(
        host=getattr(account, f"{purpose}_host"),
        port=getattr(account, f"{purpose}_port"),
        security=Security(getattr(account, f"{purpose}_security")),
        username=getattr(account, f"{purpose}_username"),
        password=open_password(box, account, purpose),
    )


def imap_server(box: SecretBox, account: Account) -> MailServer:
    """The account's IMAP endpoint with its decrypted password."""
    return mail_server(box, account, "imap")


def smtp_server(box: SecretBox, account: Account) -> MailServer:
    """The account's SMTP endpoint with its decrypted password."""
    return mail_server(box, account, "smtp")
