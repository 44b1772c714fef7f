"""build_message for replies and forwards: threading, subjects, quotes, attached originals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailsvc.compose.build import AttachmentSpec, CompositionError, Mailbox, OriginalMessage
from mailsvc.compose.reply import FORWARD_SEPARATOR
from mailsvc.mime import parse_message
from tests.compose.samples import (
    assert_wire_format,
    build,
    parse,
    structure,
    text_content,
)

ORIGINAL = OriginalMessage(
    message_id="<orig.42@example.org>",
    references=("<root.1@example.com>", "<mid.2@example.org>"),
    subject="Quarterly report",
    from_=(Mailbox("bob@example.org", "Bob Builder"),),
    to=(Mailbox("alice@example.com", "Alice Example"),),
    date=datetime(2024, 5, 31, 16, 45, tzinfo=UTC),
    text_body="Numbers attached.\n\n> Earlier question?\n<script>alert(1)</script>\n",
)
ORIGINAL_RAW = (
    b"From: Bob Builder <bob@example.org>\r\n"
    b"To: alice@example.com\r\n"
    b"Subject: Quarterly report\r\n"
    b"Message-ID: <orig.42@example.org>\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; h=from:to:subject; bh=abc=;"
    b" b=" + b"A" * 200 + b"\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xfc\xdfe, numbers attached.\r\n"
)


def test_reply_threads_under_the_original() -> None:
    built = build(reply_to_original=ORIGINAL, subject=None)
    message = parse(built.raw)
    assert message["In-Reply-To"] == "<orig.42@example.org>"
    assert message["References"].split() == [
        "<root.1@example.com>",
        "<mid.2@example.org>",
        "<orig.42@example.org>",
    ]
    assert message["Subject"] == "Re: Quarterly report"
    parsed = parse_message(built.raw)
    assert parsed.in_reply_to == "orig.42@example.org"
    assert parsed.references == ["root.1@example.com", "mid.2@example.org", "orig.42@example.org"]


def test_reply_references_are_capped_keeping_root_and_nearest() -> None:
    references = tuple(f"<ref.{index}@example.com>" for index in range(60))
    original = OriginalMessage(message_id="orig@example.com", references=references)
    built = build(reply_to_original=original)
    ids = parse(built.raw)["References"].split()
    assert len(ids) == 21
    assert ids[0] == "<ref.0@example.com>"
    assert ids[1] == "<ref.41@example.com>"  # the last 20: ref.41..ref.59 and orig
    assert ids[-1] == "<orig@example.com>"
    assert_wire_format(built.raw)


def test_reply_drops_unusable_original_ids() -> None:
    original = OriginalMessage(
        message_id="has space@example.com",
        references=("<ok@example.com>", "<bad\x00id@example.com>", "<ünï@example.com>"),
    )
    message = parse(build(reply_to_original=original).raw)
    assert message["In-Reply-To"] is None
    assert message["References"] == "<ok@example.com>"


def test_reply_to_original_without_ids_has_no_threading_headers() -> None:
    message = parse(build(reply_to_original=OriginalMessage(subject="Hi")).raw)
    assert message["In-Reply-To"] is None
    assert message["References"] is None
    assert message["Subject"] == "Re: Hello"


@pytest.mark.parametrize(
    ("subject", "original_subject", "expected"),
    [
        (None, "Quarterly report", "Re: Quarterly report"),
        (None, "RE: Quarterly report", "RE: Quarterly report"),
        (None, "AW: Bericht", "AW: Bericht"),
        (None, "Fwd: Quarterly report", "Re: Fwd: Quarterly report"),
        (None, None, "Re:"),
        ("My own subject", "Quarterly report", "Re: My own subject"),
        ("Sv: already prefixed", "x", "Sv: already prefixed"),
        (None, "Line\r\nbreak", "Re: Line break"),
    ],
)
def test_reply_subject(subject: str | None, original_subject: str | None, expected: str) -> None:
    original = OriginalMessage(message_id="o@example.org", subject=original_subject)
    message = parse(build(reply_to_original=original, subject=subject).raw)
    assert message["Subject"] == expected


def test_quoted_reply_appends_attribution_and_quote_to_both_bodies() -> None:
    built = build(
        reply_to_original=ORIGINAL,
        quote_original=True,
        text_body="Thanks!\n",
        html_body="<html><body><p>Thanks!</p></body></html>",
    )
    plain, html = parse(built.raw).iter_parts()
    assert text_content(plain) == (
        "Thanks!\n"
        "\n"
        "On Fri, 31 May 2024 16:45:00 +0000, Bob Builder <bob@example.org> wrote:\n"
        "> Numbers attached.\n"
        ">\n"
        ">> Earlier question?\n"
        "> <script>alert(1)</script>\n"
    )
    html_text = text_content(html)
    assert html_text.startswith("<html><body><p>Thanks!</p><div class=")
    assert html_text.endswith("</blockquote></div>\n</body></html>\n")
    assert '<blockquote type="cite"' in html_text
    assert "Bob Builder &lt;bob@example.org&gt; wrote:" in html_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert "<script>" not in html_text
    assert_wire_format(built.raw)


def test_quote_without_bodies_makes_a_text_body() -> None:
    built = build(reply_to_original=ORIGINAL, quote_original=True, text_body=None)
    message = parse(built.raw)
    assert structure(message) == ["text/plain"]
    assert text_content(message).startswith("On Fri, 31 May 2024 16:45:00 +0000, Bob Builder")


def test_quote_into_html_only_leaves_it_html_only() -> None:
    built = build(
        reply_to_original=ORIGINAL, quote_original=True, text_body=None, html_body="<p>Thanks</p>"
    )
    message = parse(built.raw)
    assert structure(message) == ["text/html"]
    assert text_content(message).startswith('<p>Thanks</p>\n<div class="mailsvc_quote">')


def test_quote_of_an_original_without_text_changes_nothing() -> None:
    original = OriginalMessage(message_id="o@example.org", text_body="  \n")
    built = build(reply_to_original=original, quote_original=True, text_body="Thanks!\n")
    assert text_content(parse(built.raw)) == "Thanks!\n"


def test_forward_inline_puts_the_original_into_the_bodies() -> None:
    built = build(
        forward_of=ORIGINAL,
        forward_inline=True,
        subject=None,
        text_body="FYI.\n",
        html_body="<p>FYI.</p>",
    )
    message = parse(built.raw)
    assert message["Subject"] == "Fwd: Quarterly report"
    assert message["In-Reply-To"] is None
    plain, html = message.iter_parts()
    assert text_content(plain) == (
        "FYI.\n"
        "\n"
        f"{FORWARD_SEPARATOR}\n"
        "From: Bob Builder <bob@example.org>\n"
        "Date: Fri, 31 May 2024 16:45:00 +0000\n"
        "Subject: Quarterly report\n"
        "To: Alice Example <alice@example.com>\n"
        "\n"
        "Numbers attached.\n"
        "\n"
        "> Earlier question?\n"
        "<script>alert(1)</script>\n"
    )
    assert "From: Bob Builder &lt;bob@example.org&gt;<br>" in text_content(html)
    assert "<script>" not in text_content(html)


@pytest.mark.parametrize(
    ("original_subject", "expected"),
    [("Report", "Fwd: Report"), ("Fw: Report", "Fw: Report"), ("WG: Bericht", "WG: Bericht")],
)
def test_forward_subject(original_subject: str, expected: str) -> None:
    original = OriginalMessage(subject=original_subject, text_body="x")
    assert parse(build(forward_of=original, subject=None).raw)["Subject"] == expected


def test_forward_as_attachment_keeps_the_original_bytes() -> None:
    original = OriginalMessage(
        message_id="orig.42@example.org", subject="Quarterly report", raw=ORIGINAL_RAW
    )
    built = build(forward_of=original, subject=None, text_body="See attached.\n")
    assert ORIGINAL_RAW in built.raw
    message = parse(built.raw)
    assert structure(message) == [
        "multipart/mixed",
        "  text/plain",
        "  message/rfc822",
        "    text/plain",
    ]
    attached = next(part for part in message.walk() if part.get_content_type() == "message/rfc822")
    assert attached["Content-Transfer-Encoding"] == "8bit"
    assert attached.get_filename() == "Quarterly report.eml"
    assert attached.get_content_disposition() == "attachment"
    inner = attached.get_content()
    assert inner["Message-ID"] == "<orig.42@example.org>"
    assert inner.get_content() == "Grüße, numbers attached.\r\n"
    parsed = parse_message(built.raw)
    assert parsed.subject == "Fwd: Quarterly report"
    assert [item.content_type for item in parsed.attachments] == ["message/rfc822"]
    assert parsed.attachments[0].size == len(ORIGINAL_RAW)


def test_forward_as_attachment_normalizes_bare_line_feeds() -> None:
    original = OriginalMessage(subject="x", raw=b"Subject: x\n\nbody\n")
    built = build(forward_of=original)
    assert b"Subject: x\r\n\r\nbody\r\n" in built.raw
    assert_wire_format(built.raw)
    attached = next(
        part for part in parse(built.raw).walk() if part.get_content_type() == "message/rfc822"
    )
    assert attached["Content-Transfer-Encoding"] == "7bit"


def test_forward_without_raw_falls_back_to_inline() -> None:
    built = build(forward_of=ORIGINAL, forward_inline=False, text_body=None)
    message = parse(built.raw)
    assert structure(message) == ["text/plain"]
    assert text_content(message).startswith(FORWARD_SEPARATOR)


def test_forward_as_attachment_with_other_attachments() -> None:
    original = OriginalMessage(subject="x/y: z?", raw=ORIGINAL_RAW)
    built = build(
        forward_of=original,
        attachments=(AttachmentSpec("a.txt", "text/plain", b"a"),),
    )
    message = parse(built.raw)
    assert structure(message) == [
        "multipart/mixed",
        "  text/plain",
        "  text/plain",
        "  message/rfc822",
        "    text/plain",
    ]
    filenames = [part.get_filename() for part in message.iter_attachments()]
    assert filenames == ["a.txt", "x y z.eml"]


def test_reply_and_forward_at_once_is_refused() -> None:
    with pytest.raises(CompositionError) as caught:
        build(reply_to_original=ORIGINAL, forward_of=ORIGINAL)
    assert caught.value.field == "forward_of"
