"""Webhook signatures, the Standard Webhooks scheme (https://www.standardwebhooks.com).

PURE: no I/O. A secret is `whsec_` followed by the base64 of 32 random bytes; those
bytes are the HMAC-SHA256 key. A request is signed over
`f"{webhook_id}.{timestamp}.{body}"` (the `Webhook-Id` and `Webhook-Timestamp`
headers and the raw body, joined with dots) and the signature travels as
`Webhook-Signature: v1,<base64 of the HMAC>`. The Standard Webhooks libraries verify
it as it is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 32


def generate_secret() -> str:
    """A new signing secret, `whsec_<base64>`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("not a webhook signing secret") from exc


def signature(secret: str, *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `Webhook-Signature` header value for one request."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str, *, webhook_id: str, timestamp: int, body: bytes, event_type: str
) -> dict[str, str]:
    """Every header of a webhook request."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "mailsvc-webhooks",
        "Webhook-Id": webhook_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": signature(
            secret, webhook_id=webhook_id, timestamp=timestamp, body=body
        ),
        "Mailsvc-Event-Type": event_type,
    }
