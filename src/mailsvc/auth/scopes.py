"""The permissions a token can carry."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    """A permission; `mailsvc apikey create` grants every one unless `--scopes` narrows it.

    A scope added later reaches only keys created after it: stored keys keep the
    scopes they were created with.
    """

    ACCOUNTS_READ = "accounts:read"
    ACCOUNTS_WRITE = "accounts:write"
    MAIL_READ = "mail:read"
    MAIL_WRITE = "mail:write"
    MAIL_SEND = "mail:send"
    WEBHOOKS = "webhooks:manage"
    # Create, list and revoke the tenant's own API keys (`/api/keys`).
    KEYS_MANAGE = "keys:manage"


ALL_SCOPES: tuple[str, ...] = tuple(scope.value for scope in Scope)
