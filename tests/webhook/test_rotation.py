"""`mailsvc keys rotate` re-seals webhook signing secrets too."""

from __future__ import annotations

import os
import uuid

import pytest
from fastapi import FastAPI

from mailsvc.kit.crypto import SecretBox, SecretDecryptionError
from mailsvc.models import Webhook
from mailsvc.runtime import Runtime
from mailsvc.webhook.credentials import open_secret, rotate_webhook_secrets
from tests.webhook.conftest import CreateWebhook, Headers
from tests.webhook.receiver import Receiver


async def test_rotation_reseals_a_webhook_secret_under_the_new_key(
    app: FastAPI, auth: Headers, receiver: Receiver, create_webhook: CreateWebhook
) -> None:
    created = await create_webhook(auth, receiver.url)
    state: Runtime = app.state.mailsvc
    old_key = state.settings.encryption_keys()[0]
    new_box = SecretBox(os.urandom(32), [old_key])
    async with state.sessionmaker.begin() as session:
        assert await rotate_webhook_secrets(session, new_box) >= 1
    async with state.sessionmaker() as session:
        webhook = await session.get(Webhook, uuid.UUID(created["id"]))
        assert webhook is not None
        assert not new_box.needs_rotation(webhook.secret)
        assert open_secret(new_box, webhook) == created["secret"]
        # Sealed under the new key: the old key alone no longer opens it.
        with pytest.raises(SecretDecryptionError):
            open_secret(SecretBox(old_key), webhook)
