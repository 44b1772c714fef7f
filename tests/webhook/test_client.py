"""The HTTP client's rules, against the test receiver: no redirects, a bounded wait."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mailsvc.webhook.client import WebhookClient
from tests.webhook.receiver import Receiver


@pytest.fixture
async def webhook_client() -> AsyncIterator[WebhookClient]:
    client = WebhookClient(timeout_seconds=0.5)
    yield client
    await client.aclose()


async def test_a_2xx_answer_is_success(webhook_client: WebhookClient, receiver: Receiver) -> None:
    receiver.status = 204
    result = await webhook_client.post(receiver.url, body=b"{}", headers={})
    assert (result.ok, result.status_code, result.error) == (True, 204, None)


async def test_redirects_are_not_followed(
    webhook_client: WebhookClient, receiver: Receiver
) -> None:
    receiver.status = 307
    result = await webhook_client.post(receiver.url, body=b"{}", headers={})
    assert (result.ok, result.status_code) == (False, 307)
    assert result.error == "HTTP 307: redirects are not followed"
    assert len(receiver.requests) == 1


async def test_a_receiver_that_does_not_answer_in_time_is_an_error(
    webhook_client: WebhookClient, receiver: Receiver
) -> None:
    receiver.delay = 5
    result = await webhook_client.post(receiver.url, body=b"{}", headers={})
    assert (result.ok, result.status_code, result.error) == (False, None, "no answer within 0.5 s")


async def test_a_receiver_that_is_down_is_an_error(
    webhook_client: WebhookClient, receiver: Receiver
) -> None:
    await receiver.stop()
    result = await webhook_client.post(receiver.url, body=b"{}", headers={})
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None
    assert result.error.startswith("request failed: ConnectError")
