"""`deliver` against the real relay (aiosmtpd delivering into Dovecot): every outcome.

The relay's scripts (tests/fixtures/smtp_server.py) make it refuse, drop or stall at
a chosen step; everything else is a real SMTP conversation over loopback.
"""

import asyncio
import logging
import re
import secrets
import ssl
from collections.abc import AsyncIterator, Sequence
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from mailsvc.kit.mailserver import MailServer, Security, tls_context
from mailsvc.outbox.delivery import DeliveryResult, Outcome, SmtpReply, deliver
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.imap_client import imap_session
from tests.fixtures.net import free_port
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually

IO_TIMEOUT = 10.0
UNKNOWN = "nobody-here@example.test"


@pytest.fixture
async def relay(smtp_relay: SmtpRelay) -> AsyncIterator[SmtpRelay]:
    """The session's relay; after the test, every client connection must be gone."""
    yield smtp_relay

    async def all_closed() -> bool:
        return smtp_relay.open_connections == 0

    await eventually(all_closed, what="every SMTP connection closed")


@pytest.fixture
def sender(mail_user: TestMailUser) -> TestMailUser:
    return mail_user


@pytest.fixture
def recipient(dovecot: DovecotServer) -> TestMailUser:
    return dovecot.add_user(f"rcpt-{secrets.token_hex(6)}", secrets.token_urlsafe(12))


def _account(
    relay: SmtpRelay,
    user: TestMailUser,
    *,
    security: Security = Security.STARTTLS,
    password: str | None = None,
    port: int | None = None,
) -> MailServer:
    default_port = relay.tls_port if security is Security.TLS else relay.port
    return MailServer(
        host=relay.host,
        port=default_port if port is None else port,
        security=security,
        username=user.username,
        password=user.password if password is None else password,
    )


def _message(sender: TestMailUser, to: Sequence[str], *, body: str = "Hello.\n") -> bytes:
    message = EmailMessage()
    message["From"] = sender.email
    message["To"] = ", ".join(to)
    message["Subject"] = "outbox delivery"
    message["Message-ID"] = make_msgid(domain="example.test")
    message.set_content(body)
    return message.as_bytes()


def _message_id(message: bytes) -> str:
    match = re.search(rb"^Message-ID: (<[^>]+>)", message, re.MULTILINE)
    assert match is not None
    return match.group(1).decode()


async def _send(
    relay: SmtpRelay,
    sender: TestMailUser,
    recipients: Sequence[str],
    message: bytes,
    *,
    server: MailServer | None = None,
    io_timeout: float = IO_TIMEOUT,
    tls: ssl.SSLContext | None = None,
    smtputf8: bool = False,
) -> DeliveryResult:
    return await deliver(
        server or _account(relay, sender),
        envelope_from=sender.email,
        recipients=recipients,
        message=message,
        io_timeout=io_timeout,
        tls=tls or tls_context(relay.ca_cert_path),
        smtputf8=smtputf8,
    )


def _inbox_message_ids(dovecot: DovecotServer, user: TestMailUser) -> set[str]:
    with imap_session(dovecot, user) as client:
        status, selected = client.select("INBOX", readonly=True)
        assert status == "OK", selected
        if selected[0] == b"0":
            return set()
        status, fetched = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert status == "OK", fetched
    return {
        found.decode()
        for item in fetched
        if isinstance(item, tuple)
        for found in re.findall(rb"<[^>]+>", item[1])
    }


async def _inbox(dovecot: DovecotServer, user: TestMailUser) -> set[str]:
    return await asyncio.to_thread(_inbox_message_ids, dovecot, user)


async def _said_quit(relay: SmtpRelay, user: TestMailUser) -> bool:
    """Whether every connection `user` logged in on ended with QUIT."""

    async def gone() -> bool:
        return any(hangup.auth_username == user.username for hangup in relay.hangups)

    await eventually(gone, what=f"{user.username}'s connection closed")
    return all(
        hangup.said_quit for hangup in relay.hangups if hangup.auth_username == user.username
    )


def _received_by(relay: SmtpRelay, user: TestMailUser) -> list[bytes]:
    return [m.data for m in relay.received if user.email in m.rcpt_tos]


# -- delivered -------------------------------------------------------------------------


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.TLS, Security.NONE])
async def test_delivered_lands_in_the_inbox(
    dovecot: DovecotServer,
    relay: SmtpRelay,
    sender: TestMailUser,
    recipient: TestMailUser,
    security: Security,
) -> None:
    # Lines that need dot-stuffing, and bare LFs that must go out as CRLF.
    message = _message(sender, [recipient.email], body=".leading dot\n.\n..\nend\n")
    result = await _send(
        relay,
        sender,
        [recipient.email],
        message,
        server=_account(relay, sender, security=security),
    )
    assert result == DeliveryResult(Outcome.DELIVERED, reply=SmtpReply(250, "2.0.0 OK: delivered"))
    assert await _inbox(dovecot, recipient) == {_message_id(message)}
    [received] = [m for m in relay.received if recipient.email in m.rcpt_tos]
    assert received.data == message.replace(b"\n", b"\r\n")
    assert received.mail_from == sender.email
    assert f"SIZE={len(received.data)}" in received.mail_options
    assert await _said_quit(relay, sender)


async def test_smtputf8_is_requested_when_offered(
    dovecot: DovecotServer, relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    message = _message(sender, [recipient.email], body="Grüße aus Köln\n")
    message = message.replace(b"Subject: outbox delivery", "Subject: Grüße".encode())
    result = await _send(relay, sender, [recipient.email], message, smtputf8=True)
    assert result.outcome is Outcome.DELIVERED, result
    [received] = [m for m in relay.received if recipient.email in m.rcpt_tos]
    assert {"SMTPUTF8", "BODY=8BITMIME"} <= set(received.mail_options)
    assert await _inbox(dovecot, recipient) == {_message_id(message)}


# -- refused by the server ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [("451 4.3.0 try again later", Outcome.RETRY), ("550 5.7.1 message refused", Outcome.FAILED)],
)
async def test_reply_to_the_final_dot_decides(
    dovecot: DovecotServer,
    relay: SmtpRelay,
    sender: TestMailUser,
    recipient: TestMailUser,
    reply: str,
    outcome: Outcome,
) -> None:
    relay.fail_next(reply)
    result = await _send(relay, sender, [recipient.email], _message(sender, [recipient.email]))
    code, text = reply.split(" ", 1)
    assert result == DeliveryResult(outcome, reply=SmtpReply(int(code), text))
    assert await _inbox(dovecot, recipient) == set()
    assert await _said_quit(relay, sender)


async def test_wrong_password_fails_with_535(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    result = await _send(
        relay,
        sender,
        [recipient.email],
        _message(sender, [recipient.email]),
        server=_account(relay, sender, password="not-the-password"),
    )
    assert result.outcome is Outcome.FAILED
    assert result.reply is not None
    assert result.reply.code == 535
    assert result.error == f"login refused: {result.reply}"


async def test_temporary_auth_failure_is_retry(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    relay.fail_next_auth("454 4.7.0 temporary authentication failure", times=2)
    result = await _send(relay, sender, [recipient.email], _message(sender, [recipient.email]))
    assert result.outcome is Outcome.RETRY
    assert result.reply == SmtpReply(454, "4.7.0 temporary authentication failure")
    # One refusal ends the login: the same password is not tried through LOGIN too.
    assert relay.pending_failures == 1


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("451 4.3.2 sender check unavailable", Outcome.RETRY),
        ("550 5.7.1 not your address", Outcome.FAILED),
    ],
)
async def test_mail_from_refusal(
    relay: SmtpRelay,
    sender: TestMailUser,
    recipient: TestMailUser,
    reply: str,
    outcome: Outcome,
) -> None:
    relay.fail_next_mail(reply)
    result = await _send(relay, sender, [recipient.email], _message(sender, [recipient.email]))
    code, text = reply.split(" ", 1)
    assert result == DeliveryResult(outcome, reply=SmtpReply(int(code), text))
    assert _received_by(relay, recipient) == []
    assert await _said_quit(relay, sender)


# -- recipients --------------------------------------------------------------------------


async def test_unknown_recipient_among_known_ones_is_delivered_to_the_rest(
    dovecot: DovecotServer, relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    message = _message(sender, [UNKNOWN, recipient.email])
    result = await _send(relay, sender, [UNKNOWN, recipient.email], message)
    assert result.outcome is Outcome.DELIVERED
    assert list(result.refused_recipients) == [UNKNOWN]
    assert result.refused_recipients[UNKNOWN].code == 550
    assert result.deferred_recipients == ()
    assert await _inbox(dovecot, recipient) == {_message_id(message)}
    [received] = [m for m in relay.received if recipient.email in m.rcpt_tos]
    assert received.rcpt_tos == (recipient.email,)


async def test_transiently_refused_recipient_is_deferred_not_failed(
    dovecot: DovecotServer,
    relay: SmtpRelay,
    sender: TestMailUser,
    recipient: TestMailUser,
) -> None:
    busy = dovecot.add_user(f"busy-{secrets.token_hex(6)}", "busy-secret")
    relay.refuse_recipient(busy.email, "450 4.2.1 mailbox busy")
    result = await _send(
        relay, sender, [busy.email, recipient.email], _message(sender, [busy.email])
    )
    assert result.outcome is Outcome.DELIVERED
    assert result.refused_recipients == {busy.email: SmtpReply(450, "4.2.1 mailbox busy")}
    assert result.deferred_recipients == (busy.email,)
    assert await _inbox(dovecot, busy) == set()


async def test_all_recipients_unknown_fails(relay: SmtpRelay, sender: TestMailUser) -> None:
    other = "nobody-either@example.test"
    result = await _send(relay, sender, [UNKNOWN, other], _message(sender, [UNKNOWN, other]))
    assert result.outcome is Outcome.FAILED
    assert set(result.refused_recipients) == {UNKNOWN, other}
    assert result.reply == result.refused_recipients[UNKNOWN]
    assert result.reply.code == 550
    assert await _said_quit(relay, sender)


async def test_all_refused_with_one_temporarily_is_retry(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    relay.refuse_recipient(recipient.email, "451 4.3.0 recipient check unavailable")
    result = await _send(
        relay, sender, [UNKNOWN, recipient.email], _message(sender, [recipient.email])
    )
    assert result.outcome is Outcome.RETRY
    assert result.reply == SmtpReply(451, "4.3.0 recipient check unavailable")
    assert set(result.refused_recipients) == {UNKNOWN, recipient.email}


async def test_421_to_one_recipient_retries_the_whole_send(
    dovecot: DovecotServer, relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    closing = dovecot.add_user(f"closing-{secrets.token_hex(6)}", "closing-secret")
    relay.refuse_recipient(closing.email, "421 4.3.2 service shutting down")
    result = await _send(
        relay, sender, [recipient.email, closing.email], _message(sender, [recipient.email])
    )
    assert result.outcome is Outcome.RETRY
    assert result.reply == SmtpReply(421, "4.3.2 service shutting down")
    assert _received_by(relay, recipient) == []


# -- what the server cannot take -----------------------------------------------------------


async def test_message_over_the_size_limit_fails_unsent(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    relay.limit_size(1000)
    message = _message(sender, [recipient.email], body=("x" * 70 + "\n") * 30)
    result = await _send(relay, sender, [recipient.email], message)
    assert result.outcome is Outcome.FAILED
    assert result.reply is None
    assert result.error is not None
    assert "accepts at most 1000" in result.error
    assert _received_by(relay, recipient) == []


async def test_smtputf8_not_offered_fails_unsent(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    relay.withhold_smtputf8()
    result = await _send(
        relay, sender, [recipient.email], _message(sender, [recipient.email]), smtputf8=True
    )
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert "SMTPUTF8" in result.error
    assert _received_by(relay, recipient) == []


# -- connection failures -------------------------------------------------------------------


async def test_nothing_listening_is_retry(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    port = free_port()
    result = await _send(
        relay,
        sender,
        [recipient.email],
        _message(sender, [recipient.email]),
        server=_account(relay, sender, port=port),
    )
    assert result.outcome is Outcome.RETRY
    assert result.reply is None
    assert result.error is not None
    assert result.error.startswith(f"cannot connect to {relay.host}:{port}")


@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS])
async def test_untrusted_certificate_is_retry(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser, security: Security
) -> None:
    result = await _send(
        relay,
        sender,
        [recipient.email],
        _message(sender, [recipient.email]),
        server=_account(relay, sender, security=security),
        tls=ssl.create_default_context(),
    )
    assert result.outcome is Outcome.RETRY
    assert result.error is not None
    assert result.error.startswith("TLS handshake failed: certificate verify failed")


async def test_implicit_tls_to_a_plain_port_is_retry(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    result = await _send(
        relay,
        sender,
        [recipient.email],
        _message(sender, [recipient.email]),
        server=_account(relay, sender, security=Security.TLS, port=relay.port),
    )
    assert result.outcome is Outcome.RETRY
    assert result.error is not None
    assert result.error.startswith("TLS handshake failed")


async def test_drop_at_the_data_command_is_retry(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    relay.drop_at_data_command()
    result = await _send(relay, sender, [recipient.email], _message(sender, [recipient.email]))
    assert result.outcome is Outcome.RETRY
    assert result.reply is None
    assert result.error is not None
    assert result.error.startswith("connection lost during DATA")
    assert _received_by(relay, recipient) == []


# -- ambiguous: the message went out, its reply did not come back ---------------------------


async def test_drop_after_the_final_dot_is_ambiguous(
    dovecot: DovecotServer, relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    relay.drop_after_data()
    result = await _send(relay, sender, [recipient.email], _message(sender, [recipient.email]))
    assert result.outcome is Outcome.AMBIGUOUS
    assert result.reply is None
    assert result.error is not None
    assert result.error.startswith("connection lost after the message was sent")
    assert await _inbox(dovecot, recipient) == set()


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.TLS])
async def test_reply_lost_after_acceptance_is_ambiguous_and_delivered(
    dovecot: DovecotServer,
    relay: SmtpRelay,
    sender: TestMailUser,
    recipient: TestMailUser,
    security: Security,
) -> None:
    relay.drop_after_data(deliver=True)
    message = _message(sender, [recipient.email])
    result = await _send(
        relay,
        sender,
        [recipient.email],
        message,
        server=_account(relay, sender, security=security),
    )
    assert result.outcome is Outcome.AMBIGUOUS
    # What the caller's check before a retry will find.
    assert await _inbox(dovecot, recipient) == {_message_id(message)}


async def test_no_reply_to_the_final_dot_in_time_is_ambiguous(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    stall = relay.stall_after_data()
    result = await _send(
        relay, sender, [recipient.email], _message(sender, [recipient.email]), io_timeout=2.0
    )
    assert result.outcome is Outcome.AMBIGUOUS
    assert result.error == "no reply to the end of the message within 2 s"
    assert stall.holding.is_set()
    assert await asyncio.to_thread(stall.client_gone.wait, 30)


async def test_cancellation_closes_the_connection_and_propagates(
    relay: SmtpRelay, sender: TestMailUser, recipient: TestMailUser
) -> None:
    stall = relay.stall_after_data()
    attempt = asyncio.create_task(
        _send(relay, sender, [recipient.email], _message(sender, [recipient.email]))
    )
    assert await asyncio.to_thread(stall.holding.wait, 30)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    assert await asyncio.to_thread(stall.client_gone.wait, 30)


# -- secrets and misuse ----------------------------------------------------------------------


async def test_password_appears_in_no_result_and_no_log(
    caplog: pytest.LogCaptureFixture,
    relay: SmtpRelay,
    sender: TestMailUser,
    recipient: TestMailUser,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-Password-" + secrets.token_hex(8)
    message = _message(sender, [recipient.email])
    results = [
        await _send(
            relay,
            sender,
            [recipient.email],
            message,
            server=_account(relay, sender, password=wrong),
        ),
        await _send(
            relay,
            sender,
            [recipient.email],
            message,
            server=_account(relay, sender, password=wrong, port=free_port()),
        ),
    ]
    relay.fail_next("550 5.7.1 refused")
    results.append(await _send(relay, sender, [recipient.email], message))
    relay.drop_after_data()
    results.append(await _send(relay, sender, [recipient.email], message))
    assert [r.outcome for r in results] == [
        Outcome.FAILED,
        Outcome.RETRY,
        Outcome.FAILED,
        Outcome.AMBIGUOUS,
    ]
    for secret in (wrong, sender.password):
        assert not any(secret in repr(result) for result in results)
        assert not any(secret in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("recipients", "smtputf8"),
    [
        ([], False),
        ([""], False),
        (["two words@example.test"], False),
        (["a@example.test>\r\nRSET"], False),
        (["jörg@example.test"], False),
    ],
)
async def test_an_envelope_the_caller_should_have_refused_raises(
    recipients: list[str], smtputf8: bool
) -> None:
    server = MailServer(
        host="127.0.0.1", port=free_port(), security=Security.NONE, username="u", password="p"
    )
    with pytest.raises(ValueError, match=r"."):
        await deliver(
            server,
            envelope_from="sender@example.test",
            recipients=recipients,
            message=b"Subject: x\r\n\r\nx\r\n",
            io_timeout=IO_TIMEOUT,
            tls=ssl.create_default_context(),
            smtputf8=smtputf8,
        )
