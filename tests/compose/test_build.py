"""build_message: MIME structure, header encoding, wire format, envelope."""

# Russian and Chinese test text has letters that look like ASCII.
# ruff: noqa: RUF001

from __future__ import annotations

import email
import hashlib
import re
from datetime import datetime, timedelta, timezone
from email import policy
from email.header import decode_header, make_header
from email.utils import parseaddr

import pytest

from mailsvc.compose.build import (
    AttachmentSpec,
    CompositionError,
    Mailbox,
    build_message,
    new_message_id,
)
from mailsvc.mime import Address, parse_message
from tests.compose.samples import (
    DATE,
    MESSAGE_ID,
    RECIPIENT,
    assert_wire_format,
    build,
    composition,
    header_block,
    parse,
    structure,
    text_content,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40


def test_text_only_is_a_single_text_plain_part() -> None:
    built = build(text_body="Hi Bob.\nSee you.\n")
    message = parse(built.raw)
    assert structure(message) == ["text/plain"]
    assert text_content(message) == "Hi Bob.\nSee you.\n"
    assert message.get_content_charset() == "utf-8"
    assert_wire_format(built.raw)


def test_html_only_is_a_single_text_html_part() -> None:
    built = build(text_body=None, html_body="<p>Hi <b>Bob</b></p>")
    message = parse(built.raw)
    assert structure(message) == ["text/html"]
    assert text_content(message) == "<p>Hi <b>Bob</b></p>\n"


def test_text_and_html_are_alternatives_plain_first() -> None:
    message = parse(build(text_body="Hi", html_body="<p>Hi</p>").raw)
    assert structure(message) == ["multipart/alternative", "  text/plain", "  text/html"]


def test_no_body_at_all_gives_an_empty_text_part() -> None:
    message = parse(build(text_body=None).raw)
    assert structure(message) == ["text/plain"]
    assert text_content(message).strip() == ""


def test_header_fields_of_a_new_message() -> None:
    built = build(
        cc=(Mailbox("carol@example.net"),),
        reply_to=(Mailbox("replies@example.com", "Replies"),),
    )
    message = parse(built.raw)
    assert message["From"] == "Alice Example <alice@example.com>"
    assert message["To"] == "Bob <bob@example.org>"
    assert message["Cc"] == "carol@example.net"
    assert message["Reply-To"] == "Replies <replies@example.com>"
    assert message["Subject"] == "Hello"
    assert message["Message-ID"] == MESSAGE_ID
    assert message["Date"].datetime == DATE
    assert message["MIME-Version"] == "1.0"
    assert built.message_id == MESSAGE_ID
    for name in ("From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version"):
        assert len(message.get_all(name) or []) == 1, name
    assert message["In-Reply-To"] is None
    assert message["References"] is None


def test_message_id_is_accepted_without_brackets() -> None:
    built = build_message(composition(), message_id="bare.1@example.com", date=DATE)
    assert built.message_id == "<bare.1@example.com>"
    assert parse(built.raw)["Message-ID"] == "<bare.1@example.com>"


def test_date_keeps_its_offset() -> None:
    date = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    raw = build_message(composition(), message_id=MESSAGE_ID, date=date).raw
    assert b"Date: Tue, 02 Jan 2024 03:04:05 -0500\r\n" in raw


def test_bcc_is_only_in_the_envelope() -> None:
    built = build(
        to=(RECIPIENT, Mailbox("Carol@Example.net")),
        cc=(Mailbox("BOB@example.org"), Mailbox("dave@example.net")),
        bcc=(Mailbox("secret@example.com", "Secret"), Mailbox("carol@example.net")),
    )
    assert b"secret" not in built.raw.lower()
    assert parse(built.raw)["Bcc"] is None
    # Case-insensitively deduplicated, in to, cc, bcc order; domains are normalized.
    assert built.envelope_to == (
        "bob@example.org",
        "Carol@example.net",
        "dave@example.net",
        "secret@example.com",
    )
    assert built.envelope_from == "alice@example.com"


def test_bcc_only_message_has_no_to_header() -> None:
    built = build(to=(), bcc=(Mailbox("hidden@example.com"),))
    assert parse(built.raw)["To"] is None
    assert built.envelope_to == ("hidden@example.com",)


@pytest.mark.parametrize(
    "text",
    [
        "Zoë Ådne",
        "Привет мир",
        "测试邮件",
        "Emoji 😀🎉 and 👩‍👩‍👧 family",
        'Quotes "and" <angles>, commas; and (parens)',
        ("Grüße " * 60).strip(),
        "x" * 999,
    ],
)
def test_non_ascii_names_and_subjects_round_trip_through_rfc2047(text: str) -> None:
    name = text[:256].strip()
    built = build(from_=Mailbox("zoe@example.com", name), subject=text)
    assert_wire_format(built.raw)
    message = parse(built.raw)
    assert message["Subject"] == text
    assert message["From"].addresses[0].addr_spec == "zoe@example.com"
    # Python < 3.14 puts a space between adjacent encoded words of a display name
    # (CPython gh-128110), against RFC 2047 6.2; the compat32 decoder gets it right.
    raw_from = email.message_from_bytes(built.raw, policy=policy.compat32)["From"]
    encoded_name, address = parseaddr(raw_from)
    assert str(make_header(decode_header(encoded_name))) == name
    assert address == "zoe@example.com"
    parsed = parse_message(built.raw)
    assert parsed.subject == text
    assert parsed.from_[0].name == name
    assert not built.needs_smtputf8


def test_header_lines_are_folded_to_78_columns_where_possible() -> None:
    many = tuple(Mailbox(f"person{index}@example.com", f"Person {index}") for index in range(40))
    raw = build(to=many, subject="word " * 100).raw
    assert max(len(line) for line in header_block(raw).split(b"\r\n")) <= 78
    assert len(parse(raw)["To"].addresses) == 40


@pytest.mark.parametrize(
    "body",
    [
        "a" * 5000 + "\n",
        ("word " * 400 + "\n") * 3,
        "Ünïcödé " * 500 + "\n",
        "长" * 3000 + "\n",
        "no final newline " * 100,
    ],
)
def test_long_lines_are_encoded_so_no_line_exceeds_the_limit(body: str) -> None:
    built = build(text_body=body, html_body=f"<p>{body}</p>")
    assert_wire_format(built.raw)
    assert max(len(line) for line in built.raw.split(b"\r\n")) <= 78
    message = parse(built.raw)
    plain, html = message.iter_parts()
    assert plain["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert text_content(plain).rstrip("\n") == body.rstrip("\n")
    assert text_content(html).rstrip("\n") == f"<p>{body}</p>".rstrip("\n")


def test_line_ends_become_crlf_on_the_wire() -> None:
    built = build(text_body="one\ntwo\r\nthree\rfour\n")
    assert_wire_format(built.raw)
    assert b"\r\n\r\none\r\ntwo\r\nthree\r\nfour\r\n" in built.raw
    assert text_content(parse(built.raw)) == "one\ntwo\nthree\nfour\n"


def test_short_ascii_text_stays_readable_7bit() -> None:
    built = build(text_body="Plain words.\n")
    assert parse(built.raw)["Content-Transfer-Encoding"] == "7bit"
    assert b"\r\n\r\nPlain words.\r\n" in built.raw


def test_non_ascii_body_is_7bit_clean_on_the_wire() -> None:
    built = build(text_body="Grüße, Привет, 你好\n", html_body="<p>Grüße</p>")
    assert built.raw.isascii()
    plain, html = parse(built.raw).iter_parts()
    assert text_content(plain) == "Grüße, Привет, 你好\n"
    assert text_content(html) == "<p>Grüße</p>\n"


def test_attachments_wrap_the_body_in_multipart_mixed() -> None:
    built = build(
        text_body="See attached.",
        html_body="<p>See attached.</p>",
        attachments=(
            AttachmentSpec("report.pdf", "application/pdf", PDF),
            AttachmentSpec("notes.txt", "text/plain", "Ünïcode notes\n".encode()),
        ),
    )
    assert_wire_format(built.raw)
    message = parse(built.raw)
    assert structure(message) == [
        "multipart/mixed",
        "  multipart/alternative",
        "    text/plain",
        "    text/html",
        "  application/pdf",
        "  text/plain",
    ]
    attachments = list(message.iter_attachments())
    assert [part.get_filename() for part in attachments] == ["report.pdf", "notes.txt"]
    assert [part.get_content_disposition() for part in attachments] == ["attachment"] * 2
    payloads = [part.get_payload(decode=True) for part in attachments]
    assert [hashlib.sha256(data).hexdigest() for data in payloads if isinstance(data, bytes)] == [
        hashlib.sha256(PDF).hexdigest(),
        hashlib.sha256("Ünïcode notes\n".encode()).hexdigest(),
    ]


def test_non_ascii_filenames_use_rfc2231() -> None:
    filename = "Résumé – 履歴書 " + "long name " * 10 + ".pdf"
    built = build(attachments=(AttachmentSpec(filename, "application/pdf", PDF),))
    assert_wire_format(built.raw)
    assert b"filename*" in built.raw
    assert b"utf-8''R%C3%A9sum%C3%A9" in built.raw
    (attachment,) = parse(built.raw).iter_attachments()
    assert attachment.get_filename() == filename
    assert parse_message(built.raw).attachments[0].filename == filename


def test_inline_images_go_into_multipart_related_with_the_html() -> None:
    built = build(
        text_body="Logo below.",
        html_body='<p>Logo: <img src="cid:logo@example.com"></p>',
        attachments=(
            AttachmentSpec(
                "logo.png", "image/png", PNG, content_id="logo@example.com", inline=True
            ),
            AttachmentSpec("report.pdf", "application/pdf", PDF),
        ),
    )
    message = parse(built.raw)
    assert structure(message) == [
        "multipart/mixed",
        "  multipart/alternative",
        "    text/plain",
        "    multipart/related",
        "      text/html",
        "      image/png",
        "  application/pdf",
    ]
    related = next(
        part for part in message.walk() if part.get_content_type() == "multipart/related"
    )
    assert related.get_param("type") == "text/html"
    image = next(part for part in message.walk() if part.get_content_type() == "image/png")
    assert image["Content-ID"] == "<logo@example.com>"
    assert image.get_content_disposition() == "inline"
    assert image.get_payload(decode=True) == PNG


def test_html_only_with_inline_image_is_related_without_mixed() -> None:
    built = build(
        text_body=None,
        html_body='<img src="cid:logo">',
        attachments=(
            AttachmentSpec("logo.png", "image/png", PNG, content_id="<logo>", inline=True),
        ),
    )
    assert structure(parse(built.raw)) == ["multipart/related", "  text/html", "  image/png"]
    assert b"Content-ID: <logo>\r\n" in built.raw


def test_inline_part_without_html_is_an_inline_attachment() -> None:
    built = build(attachments=(AttachmentSpec("photo.png", "image/png", PNG, inline=True),))
    message = parse(built.raw)
    assert structure(message) == ["multipart/mixed", "  text/plain", "  image/png"]
    (photo,) = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert photo.get_content_disposition() == "inline"


def test_attached_eml_file_is_message_rfc822_byte_for_byte() -> None:
    eml = b"From: x@example.com\r\nSubject: old\r\n\r\nOld body \xe9\r\n"
    built = build(attachments=(AttachmentSpec("old.eml", "message/rfc822", eml),))
    assert eml in built.raw
    message = parse(built.raw)
    assert structure(message) == [
        "multipart/mixed",
        "  text/plain",
        "  message/rfc822",
        "    text/plain",
    ]
    attached = next(part for part in message.walk() if part.get_content_type() == "message/rfc822")
    assert attached["Content-Transfer-Encoding"] == "8bit"


def test_custom_headers_are_written_and_never_break_urls() -> None:
    url = "https://example.com/unsubscribe/" + "t0k3n" * 40
    built = build(
        headers={
            "List-Unsubscribe": f"<mailto:unsub@example.com?subject=stop>, <{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Campaign": "Été 2024",
        }
    )
    assert_wire_format(built.raw)
    assert f"\r\n <{url}>\r\n".encode() in built.raw
    message = parse(built.raw)
    assert message["List-Unsubscribe"] == f"<mailto:unsub@example.com?subject=stop>, <{url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["X-Campaign"] == "Été 2024"


def test_internationalized_addresses_need_smtputf8() -> None:
    built = build(
        from_=Mailbox("zoë@exämple.com", "Zoë"),
        to=(Mailbox("用户@例子.广告", "用户"), RECIPIENT),
        subject="Grüße",
    )
    assert built.needs_smtputf8
    assert_wire_format(built.raw, ascii_header=False)
    # Only the addresses themselves are UTF-8; names and subject stay encoded words.
    head = header_block(built.raw).decode("utf-8")
    assert "From: =?utf-8?q?Zo=C3=AB?= <zoë@exämple.com>\r\n" in head
    assert "To: =?utf-8?b?55So5oi3?= <用户@例子.广告>,\r\n Bob <bob@example.org>\r\n" in head
    assert "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" in head
    assert "".join(char for char in head if not char.isascii()) == "ëä用户例子广告"
    assert built.envelope_from == "zoë@exämple.com"
    assert built.envelope_to == ("用户@例子.广告", "bob@example.org")
    parsed = parse_message(built.raw)
    assert parsed.from_[0] == Address(name="Zoë", address="zoë@exämple.com")
    assert parsed.subject == "Grüße"


def test_internationalized_addresses_with_long_names_stay_within_line_limits() -> None:
    many = tuple(Mailbox(f"ä{index}@example.com", "😀" * 256) for index in range(5))
    built = build(from_=Mailbox("zoë@exämple.com", "😀" * 256), to=many)
    assert_wire_format(built.raw, ascii_header=False)
    assert max(len(line) for line in header_block(built.raw).split(b"\r\n")) <= 78 + 64
    assert [item.address for item in parse_message(built.raw).to] == [m.address for m in many]
    assert parse_message(built.raw).to[0].name == "😀" * 256


def test_a_non_ascii_bcc_alone_needs_smtputf8_but_keeps_the_header_ascii() -> None:
    built = build(bcc=(Mailbox("zoë@example.com"),))
    assert built.needs_smtputf8
    assert header_block(built.raw).isascii()
    assert "zoë@example.com" in built.envelope_to


def test_mailsvc_parser_reads_back_a_cjk_address() -> None:
    built = build(to=(Mailbox("用户@例子.广告", "用户"),))
    assert parse_message(built.raw).to == [Address(name="用户", address="用户@例子.广告")]


def test_ascii_addresses_do_not_need_smtputf8() -> None:
    assert not build(subject="Привет", from_=Mailbox("a@example.com", "Зоя")).needs_smtputf8


def test_mailsvc_parser_reads_back_what_it_writes() -> None:
    built = build(
        from_=Mailbox("zoe@example.com", "Zoë Ådne"),
        subject="Отчёт 📎",
        text_body="Plain text, Ünïcode.\n",
        html_body="<p>HTML text, Ünïcode.</p>",
        attachments=(AttachmentSpec("Bericht.pdf", "application/pdf", PDF),),
    )
    parsed = parse_message(built.raw)
    assert parsed.parse_errors == []
    assert parsed.message_id == MESSAGE_ID.strip("<>")
    assert parsed.subject == "Отчёт 📎"
    assert parsed.from_[0].name == "Zoë Ådne"
    assert parsed.to[0].address == "bob@example.org"
    assert parsed.text_body is not None
    assert parsed.text_body.strip() == "Plain text, Ünïcode."
    assert parsed.html_body is not None
    assert parsed.html_body.strip() == "<p>HTML text, Ünïcode.</p>"
    (attachment,) = parsed.attachments
    assert (attachment.filename, attachment.content_type) == ("Bericht.pdf", "application/pdf")
    assert abs(attachment.size - len(PDF)) <= 3
    assert parsed.date == DATE
    assert parsed.bcc == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"subject": "Hi\nX-Evil: 1"}, "subject"),
        ({"subject": "Hi\x00"}, "subject"),
        ({"from_": Mailbox("alice@example.com", "Alice\r\nBcc: x@example.com")}, "from.name"),
        ({"to": (RECIPIENT, Mailbox("c@example.com", "C\rD"))}, "to[1].name"),
        ({"to": (Mailbox("bob@example.org\r\nBcc: x@example.com"),)}, "to[0].address"),
        ({"cc": (Mailbox("not an address"),)}, "cc[0].address"),
        ({"headers": {"X-Tag": "a\r\nBcc: x@example.com"}}, "headers.X-Tag"),
        ({"headers": {"X-Tag\r\nBcc": "x@example.com"}}, "headers.X-Tag??Bcc"),
        ({"headers": {"Bcc": "x@example.com"}}, "headers.Bcc"),
        (
            {"attachments": (AttachmentSpec("a\r\nContent-Type: text/html", "text/plain", b""),)},
            "attachments[0].filename",
        ),
        (
            {"attachments": (AttachmentSpec("a.png", "image/png", b"", content_id="x>\r\n<y"),)},
            "attachments[0].content_id",
        ),
        (
            {"attachments": (AttachmentSpec("a", "text/plain\r\nX: y", b""),)},
            "attachments[0].content_type",
        ),
        ({"to": (), "cc": (), "bcc": ()}, "to"),
        ({"text_body": "nul \x00 inside"}, "text_body"),
    ],
)
def test_injection_and_invalid_values_are_refused_naming_the_field(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(CompositionError) as caught:
        build(**fields)
    assert caught.value.field == field


def test_naive_date_is_refused() -> None:
    with pytest.raises(CompositionError) as caught:
        build_message(composition(), message_id=MESSAGE_ID, date=datetime(2024, 1, 1))
    assert caught.value.field == "date"


@pytest.mark.parametrize(
    "message_id", ["", "<>", "no-at-sign", "<a b@example.com>", "<a@b>\r\nX: y"]
)
def test_bad_message_id_is_refused(message_id: str) -> None:
    with pytest.raises(CompositionError) as caught:
        build_message(composition(), message_id=message_id, date=DATE)
    assert caught.value.field == "message_id"


def test_new_message_id_is_random_on_the_senders_domain() -> None:
    first = new_message_id("alice@Mail.Example.COM")
    assert re.fullmatch(r"<[A-Za-z0-9_-]{24}@mail\.example\.com>", first)
    assert new_message_id("alice@mail.example.com") != first


@pytest.mark.parametrize(
    ("address", "domain"),
    [
        ("zoë@exämple.com", "xn--exmple-cua.com"),
        ("nobody", "mailsvc.invalid"),
        ("a@[127.0.0.1]", "mailsvc.invalid"),
    ],
)
def test_new_message_id_domain_is_always_ascii(address: str, domain: str) -> None:
    message_id = new_message_id(address)
    assert message_id.endswith(f"@{domain}>")
    assert build_message(composition(), message_id=message_id, date=DATE).message_id == message_id


def test_sender_display_name_is_optional() -> None:
    built = build(from_=Mailbox("alice@example.com"), to=(Mailbox("bob@example.org", " "),))
    assert b"From: alice@example.com\r\n" in built.raw
    assert b"To: bob@example.org\r\n" in built.raw
