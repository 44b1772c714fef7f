"""Re-seal stored account passwords and OAuth2 tokens under the current encryption key."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account.credentials import open_password, seal_password
from mailsvc.account.repository import AccountRepository, tenants_with_accounts
from mailsvc.kit.crypto import SecretBox
from mailsvc.oauth.secrets import open_tokens, seal_tokens


async def rotate_account_secrets(session: AsyncSession, box: SecretBox) -> int:
    """Re-seal every secret not under the current key; returns how many were re-sealed.

    Tenant by tenant, so even this operator task goes through tenant-scoped queries.
    """
    rotated = 0
    purposes: tuple[Literal["imap", "smtp"], ...] = ("imap", "smtp")
    for tenant_id in await tenants_with_accounts(session):
        for account in await AccountRepository(session, tenant_id).all_in_tenant():
            tokens = account.oauth_tokens
            if tokens is not None and box.needs_rotation(tokens):
                account.oauth_tokens = seal_tokens(
                    box, tenant_id=tenant_id, account_id=account.id, pair=open_tokens(box, account)
                )
                rotated += 1
            for purpose in purposes:
                column = f"{purpose}_secret"
                sealed = getattr(account, column)
                if sealed is not None and box.needs_rotation(sealed):
                    password = open_password(box, account, purpose)
                    setattr(
                        account,
                        column,
                        seal_password(
                            box,
                            tenant_id=tenant_id,
                            account_id=account.id,
                            purpose=purpose,
                            password=password,
                        ),
                    )
                    rotated += 1
    await session.flush()
    return rotated
