"""A failed TLS handshake says why: the certificate check's own words reach the error.

"127.1" reaches the test servers on 127.0.0.1, but is a name their certificate
(issued for `localhost` and 127.0.0.1) does not carry.
"""

from __future__ import annotations

import pytest

from mailsvc.imap.connection import connect_imap
from mailsvc.imap.errors import ImapConnectError
from mailsvc.kit.mailserver import MailServer, Security, tls_context
from mailsvc.smtp.client import SmtpConnectError, check_smtp_login
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.smtp_server import SmtpRelay

MISMATCHED_HOST = "127.1"
MISMATCH = (
    "TLS handshake failed: certificate verify failed: Hostname mismatch, "
    f"certificate is not valid for '{MISMATCHED_HOST}'."
)


@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS])
async def test_imap_tls_failure_names_the_certificate_problem(
    dovecot: DovecotServer, mail_user: TestMailUser, security: Security
) -> None:
    port = dovecot.imaps_port if security is Security.TLS else dovecot.imap_port
    server = MailServer(MISMATCHED_HOST, port, security, mail_user.username, mail_user.password)
    with pytest.raises(ImapConnectError) as caught:
        await connect_imap(server, io_timeout=5, tls=tls_context(dovecot.ca_cert_path))
    assert str(caught.value) == MISMATCH


@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS])
async def test_smtp_tls_failure_names_the_certificate_problem(
    smtp_relay: SmtpRelay, mail_user: TestMailUser, security: Security
) -> None:
    port = smtp_relay.tls_port if security is Security.TLS else smtp_relay.port
    server = MailServer(MISMATCHED_HOST, port, security, mail_user.username, mail_user.password)
    with pytest.raises(SmtpConnectError) as caught:
        await check_smtp_login(server, io_timeout=5, tls=tls_context(smtp_relay.ca_cert_path))
    assert str(caught.value) == MISMATCH
