"""Every problem `code` the API answers with, its status and when (the registry).

Clients branch on these codes; docs/api.md lists them, and tests/test_error_codes.py
keeps the code base, this registry and the docs equal. Re-exported by
`mailsvc.errors`, where the errors that carry them live.
"""

from __future__ import annotations

from typing import NamedTuple


class ErrorCode(NamedTuple):
    """What one stable `code` means and the status it comes with."""

    status: int
    when: str


# Every `code` the API answers with: clients branch on these, docs/api.md lists them
# (tests/test_error_codes.py keeps the code base, this registry and the docs equal).
ERROR_CODES: dict[str, ErrorCode] = {
    "bad_request": ErrorCode(400, "a request the server cannot use"),
    "invalid_body": ErrorCode(400, "the body cannot be read (e.g. not UTF-8, or a broken form)"),
    "tenant_required": ErrorCode(400, "a token granting several tenants, without `X-Tenant-ID`"),
    "oauth_state_invalid": ErrorCode(
        400, "an OAuth2 callback with an unknown, expired or used `state`"
    ),
    "invalid_cursor": ErrorCode(400, "a `cursor`, `since` or `Last-Event-ID` we did not issue"),
    "cursor_not_issued": ErrorCode(400, "a feed cursor past the newest event"),
    "http_error": ErrorCode(400, "another HTTP-level refusal (the `status` says which)"),
    "unauthorized": ErrorCode(401, "authentication failed"),
    "missing_token": ErrorCode(401, "no bearer token"),
    "invalid_token": ErrorCode(401, "a token that is expired, malformed or not ours"),
    "invalid_api_key": ErrorCode(401, "`POST /auth/login` with an unknown or revoked key"),
    "api_key_revoked": ErrorCode(401, "a token issued for an API key that has been revoked since"),
    "forbidden": ErrorCode(403, "authenticated, not allowed"),
    "tenant_not_granted": ErrorCode(403, "`X-Tenant-ID` names a tenant the token does not grant"),
    "insufficient_scope": ErrorCode(403, "the token lacks the route's scope"),
    "scope_not_held": ErrorCode(403, "a new API key asking for a scope the caller lacks"),
    "not_found": ErrorCode(404, "no such route or resource"),
    "account_not_found": ErrorCode(404, "no such account in this tenant"),
    "oauth_app_not_found": ErrorCode(404, "no such OAuth2 app in this tenant"),
    "message_not_found": ErrorCode(404, "no such message in this tenant"),
    "attachment_not_found": ErrorCode(404, "no such attachment of this message or draft"),
    "thread_not_found": ErrorCode(404, "no such thread in this tenant"),
    "mailbox_not_found": ErrorCode(404, "no such mailbox of this account"),
    "draft_not_found": ErrorCode(404, "no such draft in this tenant"),
    "outbox_not_found": ErrorCode(404, "no such outbox entry in this tenant"),
    "webhook_not_found": ErrorCode(404, "no such webhook in this tenant"),
    "api_key_not_found": ErrorCode(404, "no such API key of this tenant alone"),
    "message_gone_from_server": ErrorCode(
        404, "a download of a message the server has expunged meanwhile"
    ),
    "method_not_allowed": ErrorCode(405, "the path exists; `Allow` lists its methods"),
    "conflict": ErrorCode(409, "the resource's state does not allow the change"),
    "account_exists": ErrorCode(409, "an account with this email exists in the tenant"),
    "oauth_app_in_use": ErrorCode(409, "an OAuth2 app that accounts still use"),
    "mailbox_changed": ErrorCode(409, "the mailbox changed on the server (UIDVALIDITY)"),
    "no_trash_mailbox": ErrorCode(409, "a delete without a Trash mailbox to move to"),
    "move_unsupported": ErrorCode(409, "the IMAP server can neither MOVE nor COPY + EXPUNGE"),
    "expunge_unsupported": ErrorCode(409, "the IMAP server cannot expunge single messages"),
    "labels_not_supported": ErrorCode(409, "a label change on a server other than Gmail"),
    "idempotency_key_reused": ErrorCode(409, "an `Idempotency-Key` reused with another body"),
    "outbox_not_cancellable": ErrorCode(409, "a cancel of an entry no longer `queued`"),
    "outbox_not_retryable": ErrorCode(
        409, "a retry of an entry that is `sending`, `sent`, `bounced` or `cancelled`"
    ),
    "gone": ErrorCode(410, "the resource is gone"),
    "cursor_expired": ErrorCode(410, "changes after this cursor were removed by retention"),
    "payload_too_large": ErrorCode(413, "the request is too large"),
    "body_too_large": ErrorCode(413, "body above `MAX_REQUEST_BODY_BYTES`"),
    "attachment_too_large": ErrorCode(413, "a draft's attachments above `SEND_MAX_MESSAGE_BYTES`"),
    "unprocessable": ErrorCode(422, "a request the client must fix"),
    "validation_error": ErrorCode(
        422, "the body (or its JSON), query or a header does not match the schema"
    ),
    "oauth_app_incomplete": ErrorCode(
        422, "a `generic` OAuth2 app without endpoints, scopes or servers"
    ),
    "oauth_url_not_allowed": ErrorCode(422, "an OAuth2 token or userinfo URL that is not https"),
    "oauth_token_expired": ErrorCode(
        422, "OAuth2 tokens whose access token expired, without a refresh token"
    ),
    "oauth_grant_refused": ErrorCode(
        422, "the provider refused to refresh the given OAuth2 tokens"
    ),
    "credentials_required": ErrorCode(422, "a password account's update without `imap` and `smtp`"),
    "oauth_tokens_required": ErrorCode(
        422, "an OAuth2 account's address changed without new tokens"
    ),
    "invalid_query": ErrorCode(422, "a search query that cannot be parsed"),
    "invalid_mailbox": ErrorCode(422, "`mailbox` is neither a mailbox id nor a role"),
    "invalid_destination": ErrorCode(422, "a move needs exactly one of `mailbox_id`, `role`"),
    "invalid_keyword": ErrorCode(422, "an IMAP keyword that is not an atom"),
    "empty_update": ErrorCode(422, "a flag or label change that changes nothing"),
    "contradictory_filters": ErrorCode(422, "filters that exclude each other"),
    "invalid_event_type": ErrorCode(422, "`types` names an unknown event type"),
    "invalid_message": ErrorCode(422, "a message that cannot be sent as given"),
    "invalid_scope": ErrorCode(422, "a scope that does not exist"),
    "invalid_tenant": ErrorCode(422, "a tenant id that is not allowed"),
    "send_limit_exceeded": ErrorCode(422, "a message above the send limits"),
    "webhook_url_not_allowed": ErrorCode(422, "a webhook URL to a host that is not allowed"),
    "imap_login_failed": ErrorCode(422, "account check: the IMAP server refused the login"),
    "smtp_login_failed": ErrorCode(422, "account check: the SMTP server refused the login"),
    "imap_connect_failed": ErrorCode(422, "account check: the IMAP server cannot be reached"),
    "smtp_connect_failed": ErrorCode(422, "account check: the SMTP server cannot be reached"),
    "host_not_allowed": ErrorCode(422, "account check: a host that is not allowed"),
    "rate_limited": ErrorCode(429, "tenant over its limit; `Retry-After` says when to retry"),
    "internal_error": ErrorCode(500, "a bug; details are in the server log under the request id"),
    "mail_server_error": ErrorCode(502, "the account's mail server failed; nothing was changed"),
    "imap_refused": ErrorCode(502, "the IMAP server refused the change; nothing was changed"),
    "imap_unavailable": ErrorCode(502, "the IMAP server cannot be reached; nothing was changed"),
    "imap_login_refused": ErrorCode(502, "the IMAP server refused the stored login"),
    "oauth_provider_unavailable": ErrorCode(
        502, "the OAuth2 provider cannot be reached or answered garbage"
    ),
    "imap_unreadable": ErrorCode(502, "the IMAP server sent an answer that cannot be read"),
    "not_ready": ErrorCode(503, "`/ready` only; `checks` names the failing parts"),
    "search_rebuilding": ErrorCode(
        503, "the tenant's search index is being rebuilt; `Retry-After` says when to retry"
    ),
    "dependency_unavailable": ErrorCode(
        503, "PostgreSQL or Redis cannot be reached; `Retry-After` says when to retry"
    ),
}
