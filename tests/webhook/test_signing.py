"""Signatures (the Standard Webhooks scheme), URL rules and the retry schedule: pure."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from mailsvc.config import Settings
from mailsvc.webhook.deliverer import backoff
from mailsvc.webhook.signing import generate_secret, signature, signed_headers
from mailsvc.webhook.target import parse_target

# The example of the Standard Webhooks specification and its reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_matches_the_standard_webhooks_example() -> None:
    assert (
        signature(SPEC_SECRET, webhook_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY)
        == SPEC_SIGNATURE
    )


def test_a_new_secret_is_32_random_bytes_behind_the_prefix() -> None:
    secrets = {generate_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_the_headers_carry_id_timestamp_signature_and_type() -> None:
    headers = signed_headers(
        SPEC_SECRET,
        webhook_id=SPEC_ID,
        timestamp=SPEC_TIMESTAMP,
        body=SPEC_BODY,
        event_type="message.created",
    )
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": "mailsvc-webhooks",
        "Webhook-Id": SPEC_ID,
        "Webhook-Timestamp": str(SPEC_TIMESTAMP),
        "Webhook-Signature": SPEC_SIGNATURE,
        "Mailsvc-Event-Type": "message.created",
    }


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("https://hooks.example.com/in", ("https", "hooks.example.com", 443)),
        ("https://hooks.example.com:8443/in?x=1", ("https", "hooks.example.com", 8443)),
        ("http://127.0.0.1:9000/", ("http", "127.0.0.1", 9000)),
        ("https://[2001:db8::1]/in", ("https", "2001:db8::1", 443)),
    ],
)
def test_urls_are_parsed(url: str, parts: tuple[str, str, int]) -> None:
    target = parse_target(url)
    assert (target.scheme, target.host, target.port) == parts


@pytest.mark.parametrize(
    "url",
    [
        "hooks.example.com/in",
        "ftp://hooks.example.com/in",
        "https://user:secret@hooks.example.com/in",
        "https://hooks.example.com/in#part",
        "https://hooks.example.com/in put",
        "https://hooks.example.com:99999/",
        "https:///in",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="must"):
        parse_target(url)


def test_retries_back_off_exponentially_with_jitter_up_to_the_cap() -> None:
    settings = Settings.model_construct(webhook_retry_base_seconds=5, webhook_retry_max_seconds=60)
    for attempts, nominal in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (12, 60)]:
        delays = {backoff(attempts, settings) for _ in range(50)}
        assert all(
            timedelta(seconds=nominal * 0.8) <= delay <= timedelta(seconds=nominal * 1.2)
            for delay in delays
        )
        assert len(delays) > 1
