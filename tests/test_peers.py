"""Self-tests of the real-server test peers (tests/fixtures): Dovecot and the SMTP relay.

If these fail, every IMAP/SMTP test of the project is suspect: run them first.
"""

import asyncio
import imaplib
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage

import aioimaplib
import aiosmtplib
import pytest

from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.smtp_server import SmtpRelay

REQUIRED_CAPABILITIES = {"IDLE", "CONDSTORE", "QRESYNC", "SPECIAL-USE", "MOVE"}


def _message(*, to: str, subject: str, sender: str = "sender@example.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Hello from the test peers.\n")
    return message


@asynccontextmanager
async def _imap(
    dovecot: DovecotServer, user: TestMailUser, *, implicit_tls: bool = False
) -> AsyncIterator[aioimaplib.IMAP4]:
    """A logged-in aioimaplib client, logged out afterwards."""
    client: aioimaplib.IMAP4
    if implicit_tls:
        client = aioimaplib.IMAP4_SSL(
            host=dovecot.host,
            port=dovecot.imaps_port,
            ssl_context=ssl.create_default_context(cafile=str(dovecot.ca_cert_path)),
        )
    else:
        client = aioimaplib.IMAP4(host=dovecot.host, port=dovecot.imap_port)
    await client.wait_hello_from_server()
    response = await client.login(user.username, user.password)
    assert response.result == "OK", response
    try:
        yield client
    finally:
        await client.logout()


async def _inbox_count(dovecot: DovecotServer, user: TestMailUser) -> int:
    async with _imap(dovecot, user) as client:
        response = await client.select("INBOX")
        assert response.result == "OK", response
        exists: int | None = aioimaplib.extract_exists(response)
        assert exists is not None
        return exists


async def _inbox_subjects(dovecot: DovecotServer, user: TestMailUser) -> list[str]:
    async with _imap(dovecot, user) as client:
        await client.select("INBOX")
        response = await client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert response.result == "OK", response
        return [
            line.decode().removeprefix("Subject:").strip()
            for line in b"\r\n".join(response.lines).split(b"\r\n")
            if line.startswith(b"Subject:")
        ]


# -- Dovecot -------------------------------------------------------------------------


async def test_imap_login_on_plain_port_offers_sync_extensions(
    dovecot: DovecotServer, mail_user: TestMailUser
) -> None:
    client = aioimaplib.IMAP4(host=dovecot.host, port=dovecot.imap_port)
    await client.wait_hello_from_server()
    assert client.has_capability("STARTTLS")
    await client.login(mail_user.username, mail_user.password)
    # Dovecot only lists CONDSTORE/QRESYNC/MOVE/SPECIAL-USE after login.
    await client.protocol.capability()
    assert client.protocol.capabilities >= REQUIRED_CAPABILITIES
    await client.logout()


async def test_imaps_login_verifies_against_generated_ca(
    dovecot: DovecotServer, mail_user: TestMailUser
) -> None:
    async with _imap(dovecot, mail_user, implicit_tls=True) as client:
        assert (await client.noop()).result == "OK"


async def test_imaps_rejected_without_the_generated_ca(dovecot: DovecotServer) -> None:
    client = aioimaplib.IMAP4_SSL(
        host=dovecot.host, port=dovecot.imaps_port, ssl_context=ssl.create_default_context()
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        await client.wait_hello_from_server()


def _starttls_login(dovecot: DovecotServer, user: TestMailUser) -> str:
    context = ssl.create_default_context(cafile=str(dovecot.ca_cert_path))
    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10) as client:
        client.starttls(ssl_context=context)
        status, _ = client.login(user.username, user.password)
        return status


async def test_starttls_on_plain_port(dovecot: DovecotServer, mail_user: TestMailUser) -> None:
    # aioimaplib has no STARTTLS; the stdlib client proves the upgrade works.
    assert await asyncio.to_thread(_starttls_login, dovecot, mail_user) == "OK"


async def test_list_shows_special_use_mailboxes(
    dovecot: DovecotServer, mail_user: TestMailUser
) -> None:
    async with _imap(dovecot, mail_user) as client:
        response = await client.list('""', "*")
    assert response.result == "OK"
    listing = b"\n".join(response.lines).decode()
    for mailbox, attribute in [
        ("Sent", r"\Sent"),
        ("Drafts", r"\Drafts"),
        ("Trash", r"\Trash"),
        ("Junk", r"\Junk"),
        ("Archive", r"\Archive"),
    ]:
        assert any(
            attribute in line and line.endswith(f" {mailbox}") for line in listing.splitlines()
        ), listing


async def test_wrong_imap_password_fails(dovecot: DovecotServer, mail_user: TestMailUser) -> None:
    client = aioimaplib.IMAP4(host=dovecot.host, port=dovecot.imap_port)
    await client.wait_hello_from_server()
    response = await client.login(mail_user.username, "not-the-password")
    assert response.result == "NO"
    await client.logout()


async def test_login_with_email_address(dovecot: DovecotServer, mail_user: TestMailUser) -> None:
    renamed = TestMailUser(
        username=mail_user.email, password=mail_user.password, email=mail_user.email
    )
    async with _imap(dovecot, renamed) as client:
        assert (await client.noop()).result == "OK"


async def test_changed_password_applies_at_once(
    dovecot: DovecotServer, mail_user: TestMailUser
) -> None:
    async with _imap(dovecot, mail_user):
        pass
    updated = await asyncio.to_thread(dovecot.change_password, mail_user.username, "new-secret")
    async with _imap(dovecot, updated):
        pass
    client = aioimaplib.IMAP4(host=dovecot.host, port=dovecot.imap_port)
    await client.wait_hello_from_server()
    assert (await client.login(mail_user.username, mail_user.password)).result == "NO"
    await client.logout()


async def test_lmtp_delivery_lands_in_inbox(
    dovecot: DovecotServer, mail_user: TestMailUser
) -> None:
    message = _message(to=mail_user.email, subject="lmtp delivery")
    await dovecot.adeliver(mail_user.username, message.as_bytes())
    assert await _inbox_count(dovecot, mail_user) == 1


async def test_idle_session_gets_exists_push_after_delivery(
    dovecot: DovecotServer, mail_user: TestMailUser
) -> None:
    async with _imap(dovecot, mail_user) as client:
        await client.select("INBOX")
        idle = await client.idle_start(timeout=30)
        delivered_at = time.monotonic()
        await dovecot.adeliver(
            mail_user.username, _message(to=mail_user.email, subject="push").as_bytes()
        )
        pushed: list[bytes] = []
        while not any(line.endswith(b"EXISTS") for line in pushed):
            pushed.extend(await client.wait_server_push(timeout=10))
        latency = time.monotonic() - delivered_at
        client.idle_done()
        await asyncio.wait_for(idle, timeout=10)
    assert b"1 EXISTS" in pushed
    # inotify-driven: ~0.5 s in Dovecot 2.3; the polling fallback would take up to 5 s.
    assert latency < 3, f"IDLE push took {latency:.2f}s: is inotify exhausted?"


async def test_kick_drops_the_users_sessions(
    dovecot: DovecotServer, mail_user: TestMailUser
) -> None:
    connection_lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
    client = aioimaplib.IMAP4(
        host=dovecot.host, port=dovecot.imap_port, conn_lost_cb=connection_lost.set_result
    )
    await client.wait_hello_from_server()
    await client.login(mail_user.username, mail_user.password)
    assert await asyncio.to_thread(dovecot.kick, mail_user.username)
    await asyncio.wait_for(connection_lost, timeout=10)
    assert not await asyncio.to_thread(dovecot.kick, mail_user.username)


# -- SMTP relay ----------------------------------------------------------------------


async def test_smtp_starttls_auth_delivers_to_inbox(
    dovecot: DovecotServer, smtp_relay: SmtpRelay, mail_user: TestMailUser
) -> None:
    sender = dovecot.add_user(f"{mail_user.username}-sender", "sender-secret")
    message = _message(to=mail_user.email, subject="via relay", sender=sender.email)
    await aiosmtplib.send(
        message,
        hostname=smtp_relay.host,
        port=smtp_relay.port,
        username=sender.username,
        password=sender.password,
        start_tls=True,
        tls_context=ssl.create_default_context(cafile=str(smtp_relay.ca_cert_path)),
    )
    assert await _inbox_subjects(dovecot, mail_user) == ["via relay"]
    [received] = [m for m in smtp_relay.received if mail_user.email in m.rcpt_tos]
    assert received.mail_from == sender.email
    assert received.auth_username == sender.username


async def test_smtp_implicit_tls_and_plain_auth(
    dovecot: DovecotServer, smtp_relay: SmtpRelay, mail_user: TestMailUser
) -> None:
    await aiosmtplib.send(
        _message(to=mail_user.email, subject="implicit tls"),
        hostname=smtp_relay.host,
        port=smtp_relay.tls_port,
        username=mail_user.email,
        password=mail_user.password,
        use_tls=True,
        tls_context=ssl.create_default_context(cafile=str(smtp_relay.ca_cert_path)),
    )
    await aiosmtplib.send(
        _message(to=mail_user.email, subject="plain"),
        hostname=smtp_relay.host,
        port=smtp_relay.port,
        username=mail_user.username,
        password=mail_user.password,
        start_tls=False,
    )
    assert sorted(await _inbox_subjects(dovecot, mail_user)) == ["implicit tls", "plain"]


async def test_smtp_wrong_password_gets_535(smtp_relay: SmtpRelay, mail_user: TestMailUser) -> None:
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as error:
        await aiosmtplib.send(
            _message(to=mail_user.email, subject="never"),
            hostname=smtp_relay.host,
            port=smtp_relay.port,
            username=mail_user.username,
            password="not-the-password",
            start_tls=False,
        )
    assert error.value.code == 535


async def test_smtp_requires_auth(smtp_relay: SmtpRelay, mail_user: TestMailUser) -> None:
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as error:
        await aiosmtplib.send(
            _message(to=mail_user.email, subject="never"),
            hostname=smtp_relay.host,
            port=smtp_relay.port,
            start_tls=False,
        )
    assert error.value.code == 530


async def test_smtp_unknown_recipient_refused_at_rcpt(
    smtp_relay: SmtpRelay, mail_user: TestMailUser
) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as error:
        await aiosmtplib.send(
            _message(to="nobody-here@example.test", subject="never"),
            hostname=smtp_relay.host,
            port=smtp_relay.port,
            username=mail_user.username,
            password=mail_user.password,
            start_tls=False,
        )
    [refusal] = error.value.recipients
    assert refusal.code == 550


async def test_fail_next_scripts_data_replies_then_delivers(
    dovecot: DovecotServer, smtp_relay: SmtpRelay, mail_user: TestMailUser
) -> None:
    smtp_relay.fail_next("451 4.3.0 try again", times=2)
    smtp_relay.fail_next("550 5.1.1 no such user")

    async def send() -> None:
        await aiosmtplib.send(
            _message(to=mail_user.email, subject="eventually"),
            hostname=smtp_relay.host,
            port=smtp_relay.port,
            username=mail_user.username,
            password=mail_user.password,
            start_tls=False,
        )

    codes = []
    for _ in range(3):
        with pytest.raises(aiosmtplib.SMTPDataError) as error:
            await send()
        codes.append(error.value.code)
    assert codes == [451, 451, 550]
    assert await _inbox_count(dovecot, mail_user) == 0
    await send()
    assert await _inbox_subjects(dovecot, mail_user) == ["eventually"]
    assert smtp_relay.pending_failures == 0
