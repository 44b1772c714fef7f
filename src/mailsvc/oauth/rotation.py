"""Re-seal OAuth2 apps' client secrets under the current encryption key."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.crypto import SecretBox
from mailsvc.oauth.repository import OAuthAppRepository, tenants_with_oauth_apps
from mailsvc.oauth.secrets import open_client_secret, seal_client_secret


async def rotate_client_secrets(session: AsyncSession, box: SecretBox) -> int:
    """Re-seal every client secret not under the current key; returns how many."""
    rotated = 0
    for tenant_id in await tenants_with_oauth_apps(session):
        for app in await OAuthAppRepository(session, tenant_id).all_in_tenant():
            if box.needs_rotation(app.client_secret):
                app.client_secret = seal_client_secret(
                    box, tenant_id=tenant_id, app_id=app.id, secret=open_client_secret(box, app)
                )
                rotated += 1
    await session.flush()
    return rotated
