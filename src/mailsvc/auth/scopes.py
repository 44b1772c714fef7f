"""The permissions a token can carry."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    ACCOUNTS_READ = "accounts:read"
    ACCOUNTS_WRITE = "accounts:write"
    MAIL_READ = "mail:read"
    MAIL_WRITE = "mail:write"
    MAIL_SEND = "mail:send"
    WEBHOOKS = "webhooks:manage"


ALL_SCOPES: tuple[str, ...] = tuple(scope.value for scope in Scope)
