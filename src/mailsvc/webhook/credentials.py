"""Sealing and opening a webhook's signing secret, bound to its tenant and webhook."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.crypto import SecretBox, associated_data
from mailsvc.models import Webhook
from mailsvc.webhook.repository import WebhookRepository, tenants_with_webhooks


def _context(tenant_id: str, webhook_id: uuid.UUID) -> bytes:
    return associated_data("mailsvc.webhook", tenant_id, str(webhook_id), "signing")


def seal_secret(box: SecretBox, *, tenant_id: str, webhook_id: uuid.UUID, secret: str) -> str:
    """The secret encrypted for storage, bound to its tenant and webhook."""
    return box.seal(secret, context=_context(tenant_id, webhook_id))


def open_secret(box: SecretBox, webhook: Webhook) -> str:
    """The webhook's signing secret (raises `SecretDecryptionError` without its key)."""
    return box.open(webhook.secret, context=_context(webhook.tenant_id, webhook.id))


async def rotate_webhook_secrets(session: AsyncSession, box: SecretBox) -> int:
    """Re-seal every signing secret not under the current key; how many were."""
    rotated = 0
    for tenant_id in await tenants_with_webhooks(session):
        for webhook in await WebhookRepository(session, tenant_id).all_in_tenant():
            if box.needs_rotation(webhook.secret):
                webhook.secret = seal_secret(
                    box,
                    tenant_id=tenant_id,
                    webhook_id=webhook.id,
                    secret=open_secret(box, webhook),
                )
                rotated += 1
    await session.flush()
    return rotated
