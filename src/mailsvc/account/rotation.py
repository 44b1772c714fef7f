"""Re-seal stored account passwords under the current encryption key."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account.credentials import open_password, seal_password
from mailsvc.account.repository import AccountRepository, tenants_with_accounts
from mailsvc.kit.crypto import SecretBox


async def rotate_account_secrets(session: AsyncSession, box: SecretBox) -> int:
    """Re-seal every secret not under the current key; returns how many were re-sealed.

    Tenant by tenant, so even this operator task goes through tenant-scoped queries.
    """
    rotated = 0
    purposes: tuple[Literal["imap", "smtp"], ...] = ("imap", "smtp")
    for tenant_id in await tenants_with_accounts(session):
        for account in await AccountRepository(session, tenant_id).all_in_tenant():
            for purpose in purposes:
                column = f"{purpose}_secret"
                if box.needs_rotation(getattr(account, column)):
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
