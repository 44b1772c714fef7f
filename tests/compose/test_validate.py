"""The checks of user input: header injection, addresses, custom headers, attachments."""

from __future__ import annotations

import pytest

from mailsvc.compose.model import AttachmentSpec, Composition, Mailbox, OriginalMessage
from mailsvc.compose.validate import (
    MAX_CUSTOM_HEADERS,
    CompositionError,
    check_address,
    check_attachment,
    check_attachments,
    check_body,
    check_composition,
    check_content_id,
    check_content_type,
    check_custom_header,
    check_custom_headers,
    check_header_value,
    check_mailbox,
    check_message_id,
    check_recipients,
)


def test_composition_error_is_a_value_error_naming_the_field() -> None:
    error = CompositionError("to[1].address", "bad")
    assert isinstance(error, ValueError)
    assert (error.field, error.message, str(error)) == (
        "to[1].address",
        "bad",
        "to[1].address: bad",
    )


@pytest.mark.parametrize(
    "value",
    [
        "a\rb",
        "a\nb",
        "a\r\nBcc: x@example.com",
        "a\x00b",
        "a\x1bb",
        "a\x7fb",
        "a\x85b",  # NEL, a C1 line break
        "a\u2028b",
        "a\u2029b",
        "a\ud800b",  # a lone surrogate cannot be encoded
    ],
)
def test_header_value_refuses_line_breaks_and_controls(value: str) -> None:
    with pytest.raises(CompositionError) as caught:
        check_header_value("subject", value)
    assert caught.value.field == "subject"


@pytest.mark.parametrize(
    "value", ["plain", "tab\tinside", "Zoë 测试 😀", "zero\u200dwidth joiner", ""]
)
def test_header_value_allows_tab_and_any_printable_text(value: str) -> None:
    assert check_header_value("subject", value) == value


def test_header_value_length_is_bounded() -> None:
    assert check_header_value("f", "x" * 10, max_chars=10) == "x" * 10
    with pytest.raises(CompositionError, match="longer than 10"):
        check_header_value("f", "x" * 11, max_chars=10)


def test_address_is_normalized() -> None:
    assert check_address("to[0].address", "Bob@Example.ORG") == "Bob@example.org"


@pytest.mark.parametrize(
    "address",
    [
        "",
        "bob",
        "bob@",
        "@example.org",
        "bob@@example.org",
        "bob@example.org\r\n",
        "a b@example.org",
    ],
)
def test_bad_address_is_refused_with_its_field(address: str) -> None:
    with pytest.raises(CompositionError) as caught:
        check_address("cc[2].address", address)
    assert caught.value.field == "cc[2].address"


def test_mailbox_drops_blank_names_and_names_fields() -> None:
    assert check_mailbox("to[0]", Mailbox("a@example.com", "  ")) == Mailbox("a@example.com")
    assert check_mailbox("to[0]", Mailbox("a@example.com", " A ")) == Mailbox("a@example.com", "A")
    with pytest.raises(CompositionError) as caught:
        check_mailbox("to[0]", Mailbox("a@example.com", "A\nB"))
    assert caught.value.field == "to[0].name"
    with pytest.raises(CompositionError) as caught:
        check_mailbox("to[0]", Mailbox("a@example.com", "x" * 257))
    assert caught.value.field == "to[0].name"


def test_recipients_need_at_least_one() -> None:
    with pytest.raises(CompositionError) as caught:
        check_recipients((), (), (), limit=10)
    assert caught.value.field == "to"
    assert check_recipients((), (), (Mailbox("A@Example.com"),), limit=10) == (
        (),
        (),
        (Mailbox("A@example.com"),),
    )


@pytest.mark.parametrize(
    ("to", "cc", "bcc", "field"), [(3, 0, 0, "to"), (1, 2, 0, "cc"), (1, 1, 1, "bcc")]
)
def test_recipient_limit_names_the_list_that_crosses_it(
    to: int, cc: int, bcc: int, field: str
) -> None:
    def mailboxes(count: int) -> tuple[Mailbox, ...]:
        return tuple(Mailbox(f"r{index}@example.com") for index in range(count))

    check_recipients(mailboxes(2), (), (), limit=2)
    with pytest.raises(CompositionError, match="more than 2 recipients") as caught:
        check_recipients(mailboxes(to), mailboxes(cc), mailboxes(bcc), limit=2)
    assert caught.value.field == field


def test_recipient_errors_name_the_item() -> None:
    with pytest.raises(CompositionError) as caught:
        check_recipients(
            (Mailbox("a@example.com"),), (Mailbox("b@example.com"), Mailbox("nope")), (), limit=5
        )
    assert caught.value.field == "cc[1].address"


@pytest.mark.parametrize(
    "name",
    [
        "X-Campaign",
        "x-mailer-id",
        "X-Priority",
        "List-Unsubscribe",
        "list-unsubscribe-post",
        "List-Id",
        "Auto-Submitted",
        "Precedence",
        "Importance",
        "Keywords",
        "Comments",
        "Organization",
    ],
)
def test_allowed_custom_headers(name: str) -> None:
    assert check_custom_header(name, "  value  ") == (name, "value")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Subject", "set by mailsvc"),
        ("from", "set by mailsvc"),
        ("BCC", "set by mailsvc"),
        ("Message-ID", "set by mailsvc"),
        ("References", "set by mailsvc"),
        ("MIME-Version", "set by mailsvc"),
        ("Content-Type", "set by mailsvc"),
        ("Content-Transfer-Encoding", "set by mailsvc"),
        ("Resent-From", "set by mailsvc"),
        ("Return-Path", "set by mailsvc"),
        ("Received", "set by mailsvc"),
        ("Sender", "set by mailsvc"),
        ("DKIM-Signature", "set by mailsvc"),
        ("ARC-Seal", "set by mailsvc"),
        ("Disposition-Notification-To", "set by mailsvc"),
        ("User-Agent", "only X-"),
        ("Foo", "only X-"),
        ("X-Foo:", "letters, digits and hyphens"),
        ("X Foo", "letters, digits and hyphens"),
        ("-X-Foo", "letters, digits and hyphens"),
        ("X-Föö", "letters, digits and hyphens"),
        ("X-" + "a" * 63, "letters, digits and hyphens"),
        ("", "letters, digits and hyphens"),
    ],
)
def test_refused_custom_header_names(name: str, message: str) -> None:
    with pytest.raises(CompositionError, match=message) as caught:
        check_custom_header(name, "value")
    assert caught.value.field.startswith("headers.")


def test_custom_header_field_name_is_made_printable() -> None:
    with pytest.raises(CompositionError) as caught:
        check_custom_header("X-A\r\nBcc", "v")
    assert caught.value.field == "headers.X-A??Bcc"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a\r\nBcc: victim@example.com", "control character"),
        ("a\nb", "control character"),
        ("   ", "must not be empty"),
        ("x" * 901, "cannot fold"),
        ("word " * 500, "longer than 2000"),
    ],
)
def test_refused_custom_header_values(value: str, message: str) -> None:
    with pytest.raises(CompositionError, match=message) as caught:
        check_custom_header("X-Tag", value)
    assert caught.value.field == "headers.X-Tag"


def test_custom_headers_refuse_a_name_given_twice_in_any_case() -> None:
    assert check_custom_headers({"X-A": "1", "X-B": "2"}) == {"X-A": "1", "X-B": "2"}
    with pytest.raises(CompositionError, match="twice") as caught:
        check_custom_headers({"X-Tag": "1", "x-tag": "2"})
    assert caught.value.field == "headers.x-tag"


def test_custom_header_count_is_bounded() -> None:
    headers = {f"X-H{index}": "v" for index in range(MAX_CUSTOM_HEADERS + 1)}
    with pytest.raises(CompositionError) as caught:
        check_custom_headers(headers)
    assert caught.value.field == "headers"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/pdf", "application/pdf"),
        (" Image/PNG ", "image/png"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", None),
        ("text/x-c++src", None),
    ],
)
def test_content_types(value: str, expected: str | None) -> None:
    assert check_content_type("f", value) == (expected or value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "pdf",
        "application/",
        "/pdf",
        "a/b/c",
        "text/plain; charset=utf-8",
        "text /plain",
        "tëxt/plain",
    ],
)
def test_bad_content_types(value: str) -> None:
    with pytest.raises(CompositionError) as caught:
        check_content_type("attachments[0].content_type", value)
    assert caught.value.field == "attachments[0].content_type"


@pytest.mark.parametrize(
    ("value", "expected"), [("logo@example.com", "logo@example.com"), ("<logo>", "logo")]
)
def test_content_ids(value: str, expected: str) -> None:
    assert check_content_id("f", value) == expected


@pytest.mark.parametrize("value", ["", "<>", "a b", "a>b", "<<a>>", "ü@x", "a\r\nb", "x" * 251])
def test_bad_content_ids(value: str) -> None:
    with pytest.raises(CompositionError):
        check_content_id("f", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a.b@example.com", "<a.b@example.com>"),
        (" <a@b> ", "<a@b>"),
        ("<x@[127.0.0.1]>", "<x@[127.0.0.1]>"),
    ],
)
def test_message_ids(value: str, expected: str) -> None:
    assert check_message_id("message_id", value) == expected


@pytest.mark.parametrize(
    "value", ["", "<>", "abc", "@example.com", "a@", "<a b@c>", "<a@b>>", "ä@b"]
)
def test_bad_message_ids(value: str) -> None:
    with pytest.raises(CompositionError) as caught:
        check_message_id("message_id", value)
    assert caught.value.field == "message_id"


def test_attachment_is_normalized() -> None:
    checked = check_attachment(
        "attachments[0]",
        AttachmentSpec(" a.png ", "Image/PNG", b"x", content_id="<logo>", inline=True),
    )
    assert checked == AttachmentSpec("a.png", "image/png", b"x", content_id="logo", inline=True)


@pytest.mark.parametrize(
    ("attachment", "field"),
    [
        (AttachmentSpec("", "text/plain", b""), "attachments[3].filename"),
        (AttachmentSpec("a\nb.txt", "text/plain", b""), "attachments[3].filename"),
        (AttachmentSpec("x" * 256, "text/plain", b""), "attachments[3].filename"),
        (AttachmentSpec("a", "multipart/mixed", b""), "attachments[3].content_type"),
        (AttachmentSpec("a", "message/partial", b""), "attachments[3].content_type"),
        (AttachmentSpec("a", "text/plain", b"", content_id="a b"), "attachments[3].content_id"),
    ],
)
def test_refused_attachments(attachment: AttachmentSpec, field: str) -> None:
    with pytest.raises(CompositionError) as caught:
        check_attachment("attachments[3]", attachment)
    assert caught.value.field == field


def test_message_rfc822_can_be_attached() -> None:
    attachment = AttachmentSpec("a.eml", "message/rfc822", b"Subject: x\r\n\r\ny")
    assert check_attachment("attachments[0]", attachment) == attachment


def test_content_ids_must_be_unique() -> None:
    attachments = [
        AttachmentSpec("a.png", "image/png", b"", content_id="logo"),
        AttachmentSpec("b.png", "image/png", b"", content_id="<logo>"),
    ]
    with pytest.raises(CompositionError, match="twice") as caught:
        check_attachments(attachments)
    assert caught.value.field == "attachments[1].content_id"


def test_bodies_refuse_nul_and_unencodable_text() -> None:
    assert check_body("text_body", None) is None
    assert check_body("html_body", "<p>ok \t ü</p>") == "<p>ok \t ü</p>"
    for body in ("a\x00b", "a\udcffb"):
        with pytest.raises(CompositionError) as caught:
            check_body("text_body", body)
        assert caught.value.field == "text_body"


def test_composition_is_normalized_throughout() -> None:
    composition = Composition(
        from_=Mailbox("Alice@Example.COM", "  "),
        to=(Mailbox("bob@EXAMPLE.org", "Bob"),),
        reply_to=(Mailbox("r@Example.com"),),
        subject="Hi",
        attachments=(AttachmentSpec("a.txt", "TEXT/plain", b"a"),),
        headers={"X-Tag": " v "},
    )
    checked = check_composition(composition)
    assert checked.from_ == Mailbox("Alice@example.com")
    assert checked.to == (Mailbox("bob@example.org", "Bob"),)
    assert checked.reply_to == (Mailbox("r@example.com"),)
    assert checked.attachments[0].content_type == "text/plain"
    assert checked.headers == {"X-Tag": "v"}
    assert check_composition(checked) == checked


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"from_": Mailbox("nope")}, "from.address"),
        ({"reply_to": (Mailbox("r@example.com"), Mailbox("bad"))}, "reply_to[1].address"),
        ({"subject": "x" * 1001}, "subject"),
        ({"html_body": "\x00"}, "html_body"),
        ({"forward_of": OriginalMessage(), "reply_to_original": OriginalMessage()}, "forward_of"),
    ],
)
def test_composition_errors_name_the_field(fields: dict[str, object], field: str) -> None:
    values: dict[str, object] = {
        "from_": Mailbox("a@example.com"),
        "to": (Mailbox("b@example.com"),),
    }
    values.update(fields)
    with pytest.raises(CompositionError) as caught:
        check_composition(Composition(**values))  # type: ignore[arg-type]
    assert caught.value.field == field


def test_composition_recipient_limit_is_the_callers() -> None:
    composition = Composition(
        from_=Mailbox("a@example.com"), to=tuple(Mailbox(f"r{i}@example.com") for i in range(3))
    )
    check_composition(composition)
    with pytest.raises(CompositionError, match="more than 2"):
        check_composition(composition, recipient_limit=2)
