"""Sealing an account's OAuth2 tokens and an app's client secret (kit/crypto.py).

Each sealed value is bound to its tenant, row and purpose as associated data, so a
ciphertext copied into another row or tenant does not open.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from mailsvc.kit.crypto import SecretBox, SecretDecryptionError, associated_data
from mailsvc.models import Account, OAuthApp


@dataclass(frozen=True, slots=True)
class TokenPair:
    """An account's access token and (if the provider issued one) refresh token."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)


def _tokens_context(tenant_id: str, account_id: uuid.UUID) -> bytes:
    return associated_data("mailsvc.account", tenant_id, str(account_id), "oauth2")


def _client_secret_context(tenant_id: str, app_id: uuid.UUID) -> bytes:
    return associated_data("mailsvc.oauth_app", tenant_id, str(app_id), "client_secret")


def seal_tokens(box: SecretBox, *, tenant_id: str, account_id: uuid.UUID, pair: TokenPair) -> str:
    plain = json.dumps({"access_token": pair.access_token, "refresh_token": pair.refresh_token})
    return box.seal(plain, context=_tokens_context(tenant_id, account_id))


def open_tokens(box: SecretBox, account: Account) -> TokenPair:
    """The account's tokens; raises `SecretDecryptionError` if they cannot be opened."""
    if account.oauth_tokens is None:
        raise SecretDecryptionError("the account has no OAuth2 tokens")
    plain = box.open(account.oauth_tokens, context=_tokens_context(account.tenant_id, account.id))
    stored = json.loads(plain)
    return TokenPair(access_token=stored["access_token"], refresh_token=stored["refresh_token"])


def seal_client_secret(box: SecretBox, *, tenant_id: str, app_id: uuid.UUID, secret: str) -> str:
    return box.seal(secret, context=_client_secret_context(tenant_id, app_id))


def open_client_secret(box: SecretBox, app: OAuthApp) -> str:
    return box.open(app.client_secret, context=_client_secret_context(app.tenant_id, app.id))
