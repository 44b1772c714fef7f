"""parse_dsn: RFC 3464 delivery status notifications as MTAs send them, and garbage."""

from __future__ import annotations

import base64
import time
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

import pytest

from mailsvc.mime.dsn import (
    MAX_RECIPIENTS,
    MAX_REPORT_BYTES,
    Bounce,
    BouncedRecipient,
    _status_text,
    parse_dsn,
)


def crlf(text: str) -> bytes:
    """A message written with `\\n` for readability, as CRLF bytes as IMAP serves it."""
    return text.replace("\n", "\r\n").encode("utf-8")


ORIGINAL_HEADER = """\
Return-Path: <alice@example.com>
From: Alice Example <alice@example.com>
To: nobody@example.org
Subject: Hello
Date: Mon, 03 Jun 2024 10:30:00 +0000
Message-ID: <fixed-id.1@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
"""

POSTFIX = crlf(
    f"""\
Return-Path: <>
Date: Mon,  3 Jun 2024 10:31:02 +0000 (UTC)
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: alice@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="8D2C1234567.1717410662/mx.example.com"
Content-Transfer-Encoding: 8bit
Message-Id: <20240603103102.8D2C1234568@mx.example.com>

This is a MIME-encapsulated message.

--8D2C1234567.1717410662/mx.example.com
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@example.org>: host mx.example.org[203.0.113.5] said: 550 5.1.1
    <nobody@example.org>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

--8D2C1234567.1717410662/mx.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 8D2C1234567
X-Postfix-Sender: rfc822; alice@example.com
Arrival-Date: Mon,  3 Jun 2024 10:31:01 +0000 (UTC)

Final-Recipient: rfc822; nobody@example.org
Original-Recipient: rfc822;Nobody@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address
    rejected: User unknown in virtual mailbox table

--8D2C1234567.1717410662/mx.example.com
Content-Description: Undelivered Message
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

{ORIGINAL_HEADER}
Hi Bob, grüße.

--8D2C1234567.1717410662/mx.example.com--
"""
)

EXIM = crlf(
    f"""\
Return-path: <>
From: Mail Delivery System <Mailer-Daemon@mail.example.net>
To: alice@example.com
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1sE6aA-0001Xy-3b@mail.example.net>
Date: Mon, 03 Jun 2024 10:31:02 +0000
Auto-Submitted: auto-replied
Content-Type: multipart/report; report-type=delivery-status; boundary=1717410662-eximdsn-1804289383
MIME-Version: 1.0

--1717410662-eximdsn-1804289383
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  spam-trap@example.net
    host mx.example.net [198.51.100.7]
    SMTP error from remote mail server after end of data:
    550 5.7.1 Message rejected as spam
  full@example.net
    host mx.example.net [198.51.100.7]
    SMTP error from remote mail server after RCPT TO:<full@example.net>:
    452 4.2.2 Mailbox full

--1717410662-eximdsn-1804289383
Content-type: message/delivery-status

Reporting-MTA: dns; mail.example.net

Action: failed
Final-Recipient: rfc822;spam-trap@example.net
Status: 5.0.0
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.7.1 Message rejected as spam

Action: failed
Final-Recipient: rfc822;full@example.net
Status: 4.2.2
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

--1717410662-eximdsn-1804289383
Content-type: message/rfc822

{ORIGINAL_HEADER}
Hi.

--1717410662-eximdsn-1804289383--
"""
)

GMAIL = crlf(
    f"""\
Delivered-To: alice@example.com
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: alice@example.com
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: <fixed-id.1@example.com>
In-Reply-To: <fixed-id.1@example.com>
X-Failed-Recipients: nobody@gmail.com
Message-ID: <66609d86.050a0220.abcd.1234.GMR@mx.google.com>
Date: Mon, 03 Jun 2024 03:31:02 -0700 (PDT)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000c5e8a1061a0bd0d2"; report-type=delivery-status

--000000000000c5e8a1061a0bd0d2
Content-Type: multipart/related; boundary="000000000000c5f0b3061a0bd0da"

--000000000000c5f0b3061a0bd0da
Content-Type: multipart/alternative; boundary="000000000000c5f0b4061a0bd0db"

--000000000000c5f0b4061a0bd0db
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to nobody@gmail.com because the address couldn't be found.

--000000000000c5f0b4061a0bd0db
Content-Type: text/html; charset="UTF-8"

<html><body><h1>Address not found</h1></body></html>

--000000000000c5f0b4061a0bd0db--
--000000000000c5f0b3061a0bd0da--
--000000000000c5e8a1061a0bd0d2
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; alice@example.com
Arrival-Date: Mon, 03 Jun 2024 03:31:00 -0700 (PDT)
X-Original-Message-ID: <fixed-id.1@example.com>

Final-Recipient: rfc822; nobody@gmail.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (142.250.102.27, the server for the domain gmail.com.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.
 550-5.1.1 Please try double-checking the recipient's email address for typos or
 550-5.1.1 unnecessary spaces. For more information, go to
 550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a640c23a62f3a-a6f0e1b3c2csi123 - gsmtp
Last-Attempt-Date: Mon, 03 Jun 2024 03:31:02 -0700 (PDT)

--000000000000c5e8a1061a0bd0d2
Content-Type: text/rfc822-headers

{ORIGINAL_HEADER}
--000000000000c5e8a1061a0bd0d2--
"""
)

DELAYED = crlf(
    f"""\
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: alice@example.com
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mx.example.com. Your message is delayed.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
Original-Envelope-Id: mailsvc-outbox-42
Arrival-Date: Mon,  3 Jun 2024 10:31:01 +0000 (UTC)

Final-Recipient: rfc822; slow@example.org
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.org[203.0.113.9]:25: Connection
    timed out
Will-Retry-Until: Mon, 8 Jun 2024 10:31:01 +0000 (UTC)

--B
Content-Type: text/rfc822-headers

{ORIGINAL_HEADER}
--B--
"""
)


def report(status: str, *, third: str = "", headers: str = "", cte: str = "") -> bytes:
    """A small report with `status` as its delivery-status part."""
    encoding = f"Content-Transfer-Encoding: {cte}\n" if cte else ""
    return crlf(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n"
        f"{headers}\n"
        "--b\nContent-Type: text/plain\n\nNotice.\n"
        f"--b\nContent-Type: message/delivery-status\n{encoding}\n{status}\n"
        f"{third}--b--\n"
    )


def test_postfix_bounce() -> None:
    assert parse_dsn(POSTFIX) == Bounce(
        original_message_id="<fixed-id.1@example.com>",
        recipients=(
            BouncedRecipient(
                final_recipient="nobody@example.org",
                action="failed",
                status="5.1.1",
                diagnostic="550 5.1.1 <nobody@example.org>: Recipient address rejected: "
                "User unknown in virtual mailbox table",
                original_recipient="Nobody@example.org",
            ),
        ),
        reporting_mta="mx.example.com",
    )
    bounce = parse_dsn(POSTFIX)
    assert bounce is not None
    assert bounce.is_permanent_failure


def test_exim_bounce_with_two_recipients() -> None:
    bounce = parse_dsn(EXIM)
    assert bounce is not None
    assert bounce.original_message_id == "<fixed-id.1@example.com>"
    assert [(item.final_recipient, item.action, item.status) for item in bounce.recipients] == [
        ("spam-trap@example.net", "failed", "5.0.0"),
        ("full@example.net", "failed", "4.2.2"),
    ]
    assert bounce.recipients[0].diagnostic == "550 5.7.1 Message rejected as spam"
    assert bounce.recipients[0].is_permanent_failure
    assert not bounce.recipients[1].is_permanent_failure
    assert bounce.is_permanent_failure


def test_gmail_failure_with_rfc822_headers() -> None:
    bounce = parse_dsn(GMAIL)
    assert bounce is not None
    assert bounce.original_message_id == "<fixed-id.1@example.com>"
    assert bounce.reporting_mta == "googlemail.com"
    (recipient,) = bounce.recipients
    assert (recipient.final_recipient, recipient.action, recipient.status) == (
        "nobody@gmail.com",
        "failed",
        "5.1.1",
    )
    assert recipient.diagnostic is not None
    assert recipient.diagnostic.startswith("550-5.1.1 The email account that you tried to reach")
    assert "\n" not in recipient.diagnostic
    assert len(recipient.diagnostic) <= 500
    assert bounce.is_permanent_failure


def test_delayed_delivery_is_not_a_permanent_failure() -> None:
    bounce = parse_dsn(DELAYED)
    assert bounce is not None
    assert bounce.original_message_id == "<fixed-id.1@example.com>"
    assert bounce.original_envelope_id == "mailsvc-outbox-42"
    (recipient,) = bounce.recipients
    assert (recipient.action, recipient.status) == ("delayed", "4.4.1")
    assert recipient.diagnostic == (
        "connect to mx.example.org[203.0.113.9]:25: Connection timed out"
    )
    assert not bounce.is_permanent_failure


def test_success_notification_is_read_but_is_no_failure() -> None:
    status = (
        "Reporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; a@x\nAction: delivered\nStatus: 2.0.0\n"
    )
    bounce = parse_dsn(report(status))
    assert bounce is not None
    assert bounce.recipients == (BouncedRecipient("a@x", "delivered", "2.0.0"),)
    assert not bounce.is_permanent_failure


def test_failed_with_a_transient_status_is_not_permanent() -> None:
    status = (
        "Reporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; a@x\nAction: failed\nStatus: 4.4.7\n"
    )
    bounce = parse_dsn(report(status))
    assert bounce is not None
    assert not bounce.is_permanent_failure


def test_field_names_and_values_are_read_loosely() -> None:
    status = (
        "reporting-mta: dns;mx\n\n"
        "FINAL-RECIPIENT: RFC822;<a@x>\n"
        "ACTION: Failed (bad mailbox)\n"
        "status: 5.1.1 (bad destination mailbox address)\n"
        "Status: 2.0.0\n"
        "diagnostic-code: SMTP;550 no\n"
    )
    bounce = parse_dsn(report(status))
    assert bounce is not None
    assert bounce.recipients == (BouncedRecipient("a@x", "failed", "5.1.1", "550 no"),)


@pytest.mark.parametrize(
    ("action", "status", "expected"),
    [
        ("exploded", "5.1.1", (None, "5.1.1")),
        ("failed", "5.1", ("failed", None)),
        ("failed", "9.1.1", ("failed", None)),
        ("failed", "5.1.1234", ("failed", None)),
        ("failed", "550", ("failed", None)),
        ("", "", (None, None)),
    ],
)
def test_malformed_action_and_status_read_as_none(
    action: str, status: str, expected: tuple[str | None, str | None]
) -> None:
    block = f"Final-Recipient: rfc822; a@x\nAction: {action}\nStatus: {status}\n"
    bounce = parse_dsn(report(f"Reporting-MTA: dns; mx\n\n{block}"))
    assert bounce is not None
    (recipient,) = bounce.recipients
    assert (recipient.action, recipient.status) == expected
    assert not bounce.is_permanent_failure


def test_status_part_encoded_in_base64() -> None:
    status = (
        "Reporting-MTA: dns; mx\r\n\r\n"
        "Final-Recipient: rfc822; a@x\r\nAction: failed\r\nStatus: 5.2.2\r\n"
    )
    encoded = base64.encodebytes(status.encode()).decode()
    bounce = parse_dsn(report(encoded, cte="base64"))
    assert bounce is not None
    assert bounce.recipients == (BouncedRecipient("a@x", "failed", "5.2.2"),)


def test_status_part_encoded_in_quoted_printable() -> None:
    status = (
        "Final-Recipient: rfc822; a@x\nAction: failed\nStatus: 5.2.2\n"
        "Diagnostic-Code: smtp; 552 gr=C3=BC=C3=9Fe\n"
    )
    bounce = parse_dsn(report(status, cte="quoted-printable"))
    assert bounce is not None
    assert bounce.recipients[0].diagnostic == "552 grüße"


def test_internationalized_report() -> None:
    raw = report(
        "Reporting-MTA: dns; mx\n\n"
        "Final-Recipient: utf-8; 用户@例子.广告\nAction: failed\nStatus: 5.1.1\n",
        third="--b\nContent-Type: message/global-headers\n\nMessage-ID: <g@x>\n\n",
    ).replace(b"message/delivery-status", b"message/global-delivery-status")
    raw = raw.replace(b"report-type=delivery-status", b"report-type=global-delivery-status")
    bounce = parse_dsn(raw)
    assert bounce is not None
    assert bounce.recipients[0].final_recipient == "用户@例子.广告"
    assert bounce.original_message_id == "<g@x>"


def test_diagnostic_in_a_wrong_charset_and_with_controls_is_made_safe() -> None:
    raw = report(
        "Final-Recipient: rfc822; a@x\nAction: failed\nStatus: 5.0.0\n"
        "Diagnostic-Code: smtp; 550 caf<latin-1 e> \x1b[31mred\x07 " + "long " * 300 + "\n"
    ).replace(b"<latin-1 e>", b"\xe9")
    bounce = parse_dsn(raw)
    assert bounce is not None
    diagnostic = bounce.recipients[0].diagnostic
    assert diagnostic is not None
    assert diagnostic.startswith("550 caf\ufffd [31mred long long")
    assert diagnostic.isprintable()
    assert len(diagnostic) == 500


def test_original_envelope_id_never_stands_in_for_the_message_id() -> None:
    status = (
        "Original-Envelope-Id: <env@x>\n\n"
        "Final-Recipient: rfc822; a@x\nAction: failed\nStatus: 5.0.0\n"
    )
    bounce = parse_dsn(report(status))
    assert bounce is not None
    assert bounce.original_message_id is None
    assert bounce.original_envelope_id == "<env@x>"


def test_report_without_per_message_block_still_reads_recipients() -> None:
    bounce = parse_dsn(report("Final-Recipient: rfc822; a@x\nAction: failed\nStatus: 5.0.0\n"))
    assert bounce is not None
    assert bounce.recipients[0].final_recipient == "a@x"
    assert bounce.reporting_mta is None


def test_returned_message_with_a_bad_message_id_gives_none() -> None:
    third = "--b\nContent-Type: text/rfc822-headers\n\nMessage-ID: <not an id>\n\n"
    bounce = parse_dsn(report("Final-Recipient: rfc822; a@x\nAction: failed\n", third=third))
    assert bounce is not None
    assert bounce.original_message_id is None


REPORT = "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff" * 1000,
        b"Subject: hello\r\n\r\nJust a message.\r\n",
        crlf(
            "Content-Type: multipart/mixed; boundary=b\n\n"
            "--b\nContent-Type: message/delivery-status\n\nAction: failed\n--b--\n"
        ),
        crlf(
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\n"
            "\n--b\n\nx\n--b--\n"
        ),
        crlf(
            "Content-Type: multipart/report; boundary=b\n\n"
            "--b\nContent-Type: message/delivery-status\n\n\n--b--\n"
        ),
        crlf(f"{REPORT}--b\nContent-Type: text/plain\n\nx\n--b--\n"),
        crlf("Content-Type: multipart/report; report-type=delivery-status\n\nno boundary\n"),
        crlf("Content-Type: text/plain\n\nFinal-Recipient: rfc822; a@x\nStatus: 5.1.1\n"),
        crlf(
            "Content-Type: multipart/report; report-type*=utf-8''delivery-status; boundary=b\n"
            "\n--b--\n"
        ),
    ],
)
def test_anything_but_a_delivery_status_report_is_none(raw: bytes) -> None:
    assert parse_dsn(raw) is None


@pytest.mark.parametrize("cut", [120, 400, 900, 1500, 2200, len(POSTFIX) - 10])
def test_truncated_reports_never_raise(cut: int) -> None:
    bounce = parse_dsn(POSTFIX[:cut])
    assert bounce is None or isinstance(bounce, Bounce)


def test_truncated_inside_the_status_part_keeps_what_was_read() -> None:
    cut = POSTFIX.index(b"Remote-MTA: dns; mx.example.org")
    bounce = parse_dsn(POSTFIX[:cut])
    assert bounce is not None
    assert bounce.recipients[0].status == "5.1.1"
    assert bounce.original_message_id is None


def test_recipients_are_capped() -> None:
    blocks = "\n".join(
        f"Final-Recipient: rfc822; r{index}@x\nAction: failed\nStatus: 5.1.1\n"
        for index in range(MAX_RECIPIENTS + 50)
    )
    bounce = parse_dsn(report(f"Reporting-MTA: dns; mx\n\n{blocks}"))
    assert bounce is not None
    assert len(bounce.recipients) == MAX_RECIPIENTS


def test_huge_report_is_read_within_its_bound_and_fast() -> None:
    attachment = "--b\nContent-Type: application/octet-stream\n\n" + ("A" * 76 + "\n") * 300_000
    raw = POSTFIX.replace(b"--8D2C1234567.1717410662/mx.example.com--", b"") + crlf(attachment)
    assert len(raw) > MAX_REPORT_BYTES * 10
    started = time.perf_counter()
    bounce = parse_dsn(raw)
    assert time.perf_counter() - started < 5
    assert bounce is not None
    assert bounce.recipients[0].final_recipient == "nobody@example.org"


def test_a_field_folded_over_many_lines_is_cheap() -> None:
    status = "Final-Recipient: rfc822; a@x\nDiagnostic-Code: x\n" + " y\n" * 100_000
    started = time.perf_counter()
    bounce = parse_dsn(report(status))
    assert time.perf_counter() - started < 2
    assert bounce is not None
    diagnostic = bounce.recipients[0].diagnostic
    assert diagnostic is not None
    assert diagnostic.startswith("x y y")
    assert diagnostic.endswith("…")
    assert len(diagnostic) == 500


def test_deeply_nested_returned_messages_never_raise() -> None:
    inner = "Message-ID: <deep@x>\n\nbody\n"
    for _ in range(2000):
        inner = f"Content-Type: message/rfc822\n\n{inner}"
    raw = report(
        "Final-Recipient: rfc822; a@x\nAction: failed\nStatus: 5.0.0\n", third=f"--b\n{inner}"
    )
    bounce = parse_dsn(raw)
    assert bounce is None or isinstance(bounce, Bounce)


def test_status_part_as_blocks_or_as_raw_text_reads_the_same() -> None:
    # The email package hands message/delivery-status over as a list of messages, one
    # per block; another parser (or policy) may leave the text as it is.
    text = "Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; a@x\r\nStatus: 5.1.1\r\n"
    parts = message_from_bytes(report(text), policy=compat32).get_payload()
    assert isinstance(parts, list)
    parsed = parts[1]
    assert isinstance(parsed, Message)
    as_text = Message()
    as_text["Content-Type"] = "message/delivery-status"
    as_text.set_payload(text)
    assert isinstance(parsed.get_payload(), list)
    assert _status_text(parsed).split() == _status_text(as_text).split()
